"""The web console of ``eas server`` at ``/console/``: server-rendered pages over the control plane."""

from airflow_eas.server.console.views import mount_console

__all__ = ["mount_console"]
