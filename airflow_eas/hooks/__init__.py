"""Airflow hooks of the EAS provider."""

from airflow_eas.hooks.eas import EasHook

__all__ = ["EasHook"]
