"""Operators for model releases on an EAS-style platform (one module per concern, re-exported here).

=================================  =====================================================
:class:`EasDeployServiceOperator`  create or update a service (the idle member of a group)
:class:`EasWarmUpOperator`         replay warm-up requests against a service, report latency
:class:`EasTrafficShiftOperator`   move a group's traffic one weight step
:class:`EasBakeOperator`           let traffic flow for a while before an analysis
:class:`EasPromoteOperator`        all traffic to a member; the old one scaled down later
:class:`EasRollbackOperator`       traffic back to the previous live member; new one stopped
:class:`EasRolloutFailedOperator`  fail the run after a rollback (saying so when the platform reverted it)
:class:`EasReleaseGateOperator`    canary, or a first release when nothing in the group serves
:class:`EasFirstReleaseOperator`   all traffic to the new member at once, saying why (no canary)
:class:`EasScaleOperator`          set a service's instance count
:class:`EasDeleteServiceOperator`  delete a service
:class:`EasAcquireLeaseOperator`   take a group's lease (one rollout per group at a time)
:class:`EasReleaseLeaseOperator`   give it back
=================================  =====================================================

The rollout logic itself (member naming, idle member, weights) is in :mod:`airflow_eas.rollout`.
"""

from __future__ import annotations

from airflow_eas import operators
from airflow_eas.operators import *  # noqa: F403 - the operators, where they have always been importable
from airflow_eas.rollout import member_names, pick_idle_member, read_warmup_file, shift_weights

__all__ = [*operators.__all__, "member_names", "pick_idle_member", "read_warmup_file", "shift_weights"]
