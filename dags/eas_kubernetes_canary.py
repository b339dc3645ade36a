"""Canary release of a model on a Kubernetes cluster: the YAML plan next to this file, a kubernetes connection."""

from pathlib import Path

from airflow_eas.dags import build_rollout_dag

dag = build_rollout_dag(Path(__file__).with_suffix(".yaml"))
