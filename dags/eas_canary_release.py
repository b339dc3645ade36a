"""Canary release with metric gates, built from the YAML plan next to this file."""

from pathlib import Path

from airflow_eas.dags import build_rollout_dag

dag = build_rollout_dag(Path(__file__).with_suffix(".yaml"))
