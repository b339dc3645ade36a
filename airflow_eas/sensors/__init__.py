"""Airflow sensors of the EAS provider (deferrable; see :mod:`airflow_eas.sensors.eas`)."""

from airflow_eas.sensors.eas import EasBaseSensor, EasMetricsSensor, EasServiceReadySensor

__all__ = ["EasBaseSensor", "EasMetricsSensor", "EasServiceReadySensor"]
