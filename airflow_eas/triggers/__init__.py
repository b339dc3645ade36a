"""Triggers of the EAS provider (see :mod:`airflow_eas.triggers.eas`)."""

from airflow_eas.triggers.eas import EasBaseTrigger, EasMetricsTrigger, EasServiceReadyTrigger

__all__ = ["EasBaseTrigger", "EasMetricsTrigger", "EasServiceReadyTrigger"]
