"""Airflow operators of the EAS provider (see :mod:`airflow_eas.operators.eas`)."""

from airflow_eas.operators.base import EasBaseOperator
from airflow_eas.operators.eas import (
    EasAcquireLeaseOperator,
    EasDeleteServiceOperator,
    EasDeployServiceOperator,
    EasPromoteOperator,
    EasReleaseLeaseOperator,
    EasRollbackOperator,
    EasScaleOperator,
    EasTrafficShiftOperator,
    EasWarmUpOperator,
)

__all__ = [
    "EasAcquireLeaseOperator",
    "EasBaseOperator",
    "EasDeleteServiceOperator",
    "EasDeployServiceOperator",
    "EasPromoteOperator",
    "EasReleaseLeaseOperator",
    "EasRollbackOperator",
    "EasScaleOperator",
    "EasTrafficShiftOperator",
    "EasWarmUpOperator",
]
