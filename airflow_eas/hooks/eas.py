"""``EasHook``: from an Airflow connection to the :class:`~airflow_eas.platform.base.Platform` behind it.

Operators, sensors and triggers never care which platform serves the models: they ask
the hook for ``get_platform()`` (triggers: ``get_async_platform()``) and talk to the
:class:`Platform` interface (:class:`~airflow_eas.platform.aio.AsyncPlatform`) only.

=================  ===========================================================
connection type    platform
=================  ===========================================================
``eas``            :class:`~airflow_eas.platform.client.EasClient` (``eas server``)
``kubernetes``     :class:`~airflow_eas.platform.kubernetes.KubernetesPlatform` (docs/kubernetes.md)
=================  ===========================================================

An ``eas`` connection holds the control plane's host and port (scheme in ``schema``,
``http`` by default) and the admin token as its password, e.g.
``AIRFLOW_CONN_EAS_DEFAULT='{"conn_type": "eas", "host": "127.0.0.1", "port": 8600, "password": "…"}'``.
A ``kubernetes`` connection is the cncf-kubernetes provider's, with extras naming the Gateway,
Prometheus and the model-server image (:class:`~airflow_eas.platform.kubernetes.ClusterSettings`).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from airflow_eas.errors import EasError, InvalidSpec
from airflow_eas.platform.aio import AsyncPlatform, ThreadedPlatform
from airflow_eas.platform.async_client import AsyncEasClient
from airflow_eas.platform.base import Platform
from airflow_eas.platform.client import EasClient

DEFAULT_TIMEOUT = 30.0


class EasHook(BaseHook):
    """Hook for an EAS-style model-serving platform.

    :param eas_conn_id: the Airflow connection of the platform (type ``eas``, or ``kubernetes``)
    :param timeout: seconds to wait for any one control-plane call; default: the connection's
        ``timeout`` extra, else 30
    """

    conn_name_attr = "eas_conn_id"
    default_conn_name = "eas_default"
    conn_type = "eas"
    hook_name = "EAS"

    def __init__(self, eas_conn_id: str = default_conn_name, *, timeout: float | None = None) -> None:
        super().__init__()
        self.eas_conn_id = eas_conn_id
        self._timeout = timeout

    # -- connection form (Airflow < 3.2; newer versions read get_provider_info) ---------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, StringField

        return {
            "timeout": IntegerField(lazy_gettext("Request timeout (s)"), default=int(DEFAULT_TIMEOUT)),
            "console_url": StringField(lazy_gettext("Console URL template"), widget=BS3TextFieldWidget()),
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        from airflow_eas.get_provider_info import EAS_UI_FIELD_BEHAVIOUR

        return {
            "hidden_fields": list(EAS_UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(EAS_UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(EAS_UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    # -- the platform ---------------------------------------------------------------------------

    @cached_property
    def connection(self):
        return self.get_connection(self.eas_conn_id)

    @property
    def extras(self) -> dict[str, Any]:
        extra = self.connection.extra_dejson or {}
        # Values typed in the UI form arrive as "extra__eas__<field>" on older Airflow versions.
        return {k.removeprefix("extra__eas__"): v for k, v in extra.items() if v not in (None, "")}

    @property
    def endpoint(self) -> str:
        """The control plane's base URL, e.g. ``http://127.0.0.1:8600``."""
        conn = self.connection
        if not conn.host:
            raise InvalidSpec(f"connection {self.eas_conn_id!r} has no host")
        host = conn.host
        if "://" in host:
            base = host.rstrip("/")
        else:
            base = f"{conn.schema or 'http'}://{host}"
        return f"{base}:{conn.port}" if conn.port else base

    def get_conn(self) -> Platform:
        return self.get_platform()

    def get_platform(self) -> Platform:
        """The :class:`Platform` behind the connection (built once per hook)."""
        return self._platform

    def get_async_platform(self) -> AsyncPlatform:
        """The reads a trigger awaits: ``eas server`` over httpx; a cluster's in worker threads (see aio)."""
        if self._conn_type == "eas":
            return AsyncEasClient(self.endpoint, self.connection.password or "", timeout=self._call_timeout)
        return ThreadedPlatform(self.get_platform())

    @cached_property
    def _platform(self) -> Platform:
        if self._conn_type == "eas":
            return EasClient(self.endpoint, self.connection.password or "", timeout=self._call_timeout)
        return self._kubernetes_platform()

    @property
    def _conn_type(self) -> str:
        conn_type = (self.connection.conn_type or "").lower()
        if conn_type not in ("eas", "kubernetes"):
            raise InvalidSpec(
                f"connection {self.eas_conn_id!r} has type {conn_type!r}; EasHook needs 'eas' or 'kubernetes'"
            )
        return conn_type

    @property
    def _call_timeout(self) -> float:
        return float(self._timeout or self.extras.get("timeout") or DEFAULT_TIMEOUT)

    def _kubernetes_platform(self) -> Platform:
        # The cluster part of the connection (kubeconfig, context, namespace, in-cluster) is read by the
        # cncf-kubernetes provider's KubernetesHook; the extras name the gateway, Prometheus and images.
        from airflow_eas.platform.kubernetes import KubernetesPlatform

        return KubernetesPlatform.from_airflow_connection(self.eas_conn_id)

    def console_url(self, service: str) -> str:
        """A service's console page: the connection's ``console_url`` template, else the plugin's page."""
        template = self.extras.get("console_url")
        if template:
            return str(template).format(service=service, endpoint=self.endpoint)
        return f"/eas/services/{service}?conn_id={self.eas_conn_id}"

    def service_page_url(self, service: str) -> str:
        """The service's page on the platform's own console (``eas server``'s ``/console/``)."""
        return f"{self.endpoint}/console/services/{service}"

    def test_connection(self) -> tuple[bool, str]:
        """Reach the control plane with the token (used by the UI's Test button)."""
        try:
            platform = self.get_platform()
            services = platform.list()
            gateway = platform.gateway_url()
        except EasError as exc:
            return False, exc.message
        where = getattr(platform, "endpoint", None) or f"namespace {getattr(platform, 'ns', '?')}"
        return True, f"connected to {where}: {len(services)} services; gateway {gateway}"
