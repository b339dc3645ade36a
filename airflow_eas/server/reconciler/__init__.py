"""The control loop and its parts (see loop.py): the lifecycle handlers of one instance, the
gateway projection and the worker that applies it, background observations, launches."""

from airflow_eas.server.reconciler.loop import Reconciler
from airflow_eas.server.reconciler.projection import gateway_state, group_server_name, server_weights
from airflow_eas.server.reconciler.timings import Timings
from airflow_eas.server.store import DELETED

__all__ = ["DELETED", "Reconciler", "Timings", "gateway_state", "group_server_name", "server_weights"]
