"""Extra links on EAS tasks: the service's endpoint and its console page.

An operator persists the URL *parts* to XCom (``persist``); the link is formatted from
them when asked (``get_link``). Neither ever fails a task: a link that cannot be stored
or built is simply empty.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from airflow.sdk import BaseOperatorLink

log = logging.getLogger(__name__)

XCOM_KEY = "eas_service_link"


class EasBaseLink(BaseOperatorLink):
    """A link formatted from the parts an EAS operator stored under :data:`XCOM_KEY`."""

    name: ClassVar[str]
    format_str: ClassVar[str]

    def format_link(self, **parts: Any) -> str:
        try:
            return self.format_str.format(**parts)
        except (KeyError, IndexError, ValueError):
            return ""

    def get_link(self, operator, *, ti_key) -> str:
        try:
            from airflow.sdk.execution_time.xcom import XCom

            parts = XCom.get_value(key=XCOM_KEY, ti_key=ti_key)
        except Exception:  # a link must never fail a task or a page
            log.debug("no link parts for %s", ti_key, exc_info=True)
            return ""
        return self.format_link(**parts) if isinstance(parts, dict) else ""

    @classmethod
    def persist(cls, context: Any, operator: Any, **parts: Any) -> None:
        """Store the URL parts of a service (``service``, ``endpoint``, ``console``) for the links."""
        if not getattr(operator, "do_xcom_push", True):
            return
        try:
            context["ti"].xcom_push(key=XCOM_KEY, value={k: v for k, v in parts.items() if v is not None})
        except Exception:  # a link must never fail a task
            log.warning("could not store the EAS links of %s", parts.get("service"), exc_info=True)


class EasServiceEndpointLink(EasBaseLink):
    """The service's page on the platform's console (``<control plane>/console/services/<name>``):
    its endpoint, token, instances and metrics; the prediction URL itself answers POST only."""

    name = "EAS endpoint"
    format_str = "{page}"


class EasServiceConsoleLink(EasBaseLink):
    """The service's page in a console (the connection's ``console_url``, else the plugin page)."""

    name = "EAS console"
    format_str = "{console}"


def persist_service_links(context: Any, operator: Any, hook: Any, service: str, endpoint: str | None) -> None:
    """Store the link parts of ``service``; never raises."""
    try:
        console = hook.console_url(service)
    except Exception:  # noqa: BLE001 - a link must never fail a task or a page
        console = None
    try:
        page = hook.service_page_url(service)
    except Exception:  # noqa: BLE001 - a link must never fail a task or a page
        page = None
    EasBaseLink.persist(context, operator, service=service, endpoint=endpoint, console=console, page=page)
