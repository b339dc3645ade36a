"""The Kubernetes platform: EAS services on a cluster (Deployments, Services, HTTPRoutes, Leases)."""

from airflow_eas.platform.kubernetes.config import ClusterSettings
from airflow_eas.platform.kubernetes.platform import KubernetesPlatform

__all__ = ["ClusterSettings", "KubernetesPlatform"]
