"""Airflow operators of the EAS provider (see :mod:`airflow_eas.operators.eas`)."""

from airflow_eas.operators.base import EasBaseOperator
from airflow_eas.operators.eas import (
    EasAcquireLeaseOperator,
    EasBakeOperator,
    EasDeleteServiceOperator,
    EasDeployServiceOperator,
    EasPromoteOperator,
    EasReleaseLeaseOperator,
    EasRollbackOperator,
    EasRolloutFailedOperator,
    EasScaleOperator,
    EasTrafficShiftOperator,
    EasWarmUpOperator,
)

__all__ = [
    "EasAcquireLeaseOperator",
    "EasBakeOperator",
    "EasBaseOperator",
    "EasDeleteServiceOperator",
    "EasDeployServiceOperator",
    "EasPromoteOperator",
    "EasReleaseLeaseOperator",
    "EasRollbackOperator",
    "EasRolloutFailedOperator",
    "EasScaleOperator",
    "EasTrafficShiftOperator",
    "EasWarmUpOperator",
]
