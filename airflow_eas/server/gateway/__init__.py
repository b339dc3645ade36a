"""The data plane: an HAProxy that ``eas server`` starts, configures and owns.

- ``state``: the desired state (backends, servers with weights and admin states, routes
  with tokens) and the difference between two states;
- ``config``: the HAProxy config and map files of a state;
- ``body_check``: large signed bodies checked against their Content-MD5 for image services;
- ``runtime``: the master CLI socket every runtime command goes through;
- ``supervisor``: the master process, started, reloaded hitlessly and adopted.
"""

from airflow_eas.server.gateway.config import GatewayConfig
from airflow_eas.server.gateway.state import DRAIN, MAINT, READY, Backend, GatewayState, Server
from airflow_eas.server.gateway.supervisor import Gateway, GatewayTimings

__all__ = ["DRAIN", "MAINT", "READY", "Backend", "Gateway", "GatewayConfig", "GatewayState", "GatewayTimings",
           "Server"]
