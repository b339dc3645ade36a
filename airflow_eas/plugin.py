"""The Airflow UI plugin: a read-only EAS console mounted in the API server at ``/eas``.

``/eas/`` lists the groups (with member weights) and services of a connection
(``?conn_id=``, default ``eas_default``); ``/eas/services/<name>`` shows one service:
status, instances, the last minute's metrics and its events. The EAS console link of
the operators points here unless the connection sets its own ``console_url``. Tokens
are never shown, and only users signed in to Airflow who may read the connection see it.
"""

from __future__ import annotations

import html
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from airflow_eas.hooks.eas import EasHook


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;text-align:left}"
        "table{border-collapse:collapse}tr:nth-child(even){background:#f4f4f4}</style></head>"
        f"<body><h2>{html.escape(title)}</h2>{body}</body></html>"
    )


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


async def _may_read_connection(request: Request, conn_id: str) -> None:
    """Airflow's own login guards the console: a signed-in user allowed to read the connection."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import HTTPException

    user = await get_user(request, None, _bearer(request))
    allowed = get_auth_manager().is_authorized_connection(
        method="GET", details=ConnectionDetails(conn_id=conn_id), user=user
    )
    if not allowed:
        raise HTTPException(status_code=403, detail=f"not allowed to read connection {conn_id}")


def _bearer(request: Request):
    from fastapi.security import HTTPAuthorizationCredentials

    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials) if credentials else None


def create_app() -> FastAPI:
    from airflow_eas.errors import EasError

    async def guard(request: Request, conn_id: str = EasHook.default_conn_name) -> None:
        await _may_read_connection(request, conn_id)

    app = FastAPI(title="EAS console", docs_url=None, redoc_url=None, dependencies=[Depends(guard)])
    esc = html.escape

    @app.get("/", response_class=HTMLResponse)
    def overview(conn_id: str = EasHook.default_conn_name) -> str:
        try:
            platform = EasHook(conn_id).get_platform()
            services = platform.list()
            groups = platform.list_groups()
        except EasError as exc:
            return _page("EAS", f"<p>Cannot reach the platform of {esc(conn_id)}: {esc(exc.message)}</p>")
        group_rows = [
            [esc(g.name), ", ".join(f"{esc(m.service)}={m.weight}%" for m in g.members)] for g in groups
        ]
        service_rows = [
            [
                f"<a href='services/{esc(s.name)}?conn_id={esc(conn_id)}'>{esc(s.name)}</a>",
                esc(s.status),
                esc(s.group or ""),
                f"{s.running_instances}/{s.instances}",
                s.version,
            ]
            for s in services
        ]
        body = (
            "<h3>Groups</h3>"
            + _table(["group", "members"], group_rows)
            + "<h3>Services</h3>"
            + _table(["service", "status", "group", "instances", "version"], service_rows)
        )
        return _page(f"EAS ({conn_id})", body)

    @app.get("/services/{name}", response_class=HTMLResponse)
    def service(name: str, conn_id: str = EasHook.default_conn_name) -> str:
        try:
            platform = EasHook(conn_id).get_platform()
            info = platform.describe(name)
            metrics = platform.metrics(name, 60)
        except EasError as exc:
            return _page(f"EAS service {name}", f"<p>{esc(exc.message)}</p>")
        facts = [
            ["status", esc(info.status) + (f" ({esc(info.reason)})" if info.reason else "")],
            ["group", esc(info.group or "")],
            ["version", info.version],
            ["instances", f"{info.running_instances}/{info.instances}"],
            ["endpoint", esc(info.endpoint)],
            ["requests (60 s)", metrics.requests],
            ["errors (60 s)", f"{metrics.errors} ({metrics.error_rate:.1%})"],
            ["p50 / p99 ms", f"{metrics.p50_ms} / {metrics.p99_ms}"],
        ]
        instances = [[esc(i.id), esc(i.status), i.version, i.restarts] for i in info.instance_list]
        events = [[f"{e.time:.0f}", esc(e.level), esc(e.message)] for e in info.events[-20:]]
        body = (
            _table(["", ""], facts)
            + "<h3>Instances</h3>"
            + _table(["id", "status", "version", "restarts"], instances)
            + "<h3>Events</h3>"
            + _table(["time", "level", "message"], events)
        )
        return _page(f"EAS service {name}", body)

    return app


class EasPlugin(AirflowPlugin):
    """Mounts the EAS console in the Airflow API server and links it from the navigation."""

    name = "eas"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/eas", "name": "EAS console"}]
    external_views = [{"name": "EAS", "href": "/eas/", "destination": "nav", "category": "browse"}]
