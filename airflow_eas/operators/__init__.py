"""Airflow operators of the EAS provider: one module per concern (see :mod:`airflow_eas.operators.eas`)."""

from airflow_eas.operators.base import EasBaseOperator
from airflow_eas.operators.deploy import EasDeployServiceOperator, EasWarmUpOperator
from airflow_eas.operators.lease import EasAcquireLeaseOperator, EasReleaseLeaseOperator
from airflow_eas.operators.service import EasDeleteServiceOperator, EasScaleOperator
from airflow_eas.operators.traffic import (
    EasBakeOperator,
    EasFirstReleaseOperator,
    EasPromoteOperator,
    EasReleaseGateOperator,
    EasRollbackOperator,
    EasRolloutFailedOperator,
    EasTrafficShiftOperator,
)

__all__ = [
    "EasAcquireLeaseOperator",
    "EasBakeOperator",
    "EasBaseOperator",
    "EasDeleteServiceOperator",
    "EasDeployServiceOperator",
    "EasFirstReleaseOperator",
    "EasPromoteOperator",
    "EasReleaseGateOperator",
    "EasReleaseLeaseOperator",
    "EasRollbackOperator",
    "EasRolloutFailedOperator",
    "EasScaleOperator",
    "EasTrafficShiftOperator",
    "EasWarmUpOperator",
]
