"""The console's pages, live fragments and actions (``/console/...``).

Pages render on the server (Jinja2, autoescaped); a little JavaScript (static/console.js)
polls the live fragments every 2 s, follows logs and draws charts with the vendored
uPlot. Actions call the same :class:`~airflow_eas.server.app.ControlPlane` methods as the
REST API, so the console can do nothing the API cannot, and nothing differently.

Without a session every page redirects to the sign-in form, every fragment answers 401
(the script then goes to sign-in) and every action answers 403, as does an action
without the session's CSRF token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from airflow_eas.errors import EasError
from airflow_eas.server.console import forms
from airflow_eas.server.console.session import CSRF_FIELD, CSRF_HEADER, Session, Sessions
from airflow_eas.spec import BUILTIN_PROCESSORS

if TYPE_CHECKING:
    from airflow_eas.server.app import ControlPlane

HERE = Path(__file__).parent
PREFIX = "/console"
HEADERS = {
    # no inline script anywhere: a value that slipped past escaping still could not run
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def mount_console(app: FastAPI, cp: ControlPlane) -> None:
    """Add the console's routes and its static files (JS, CSS, the chart library) to ``app``."""
    app.include_router(console_router(cp))
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ms"] = lambda v: "–" if v is None else f"{v:.0f} ms"
    env.filters["pct"] = lambda v: "–" if v is None else f"{v:.1%}"
    env.filters["clock"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "–"
    env.filters["ago"] = _ago
    return env


def _ago(t: float | None) -> str:
    if not t:
        return "–"
    s = max(0, int(time.time() - t))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h"


def console_router(cp: ControlPlane) -> APIRouter:
    console = Console(cp)
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    for routes in (_auth_routes, _service_routes, _service_data_routes, _service_action_routes, _group_routes,
                   _deploy_routes):
        router.include_router(routes(console))
    return router


class Console:
    """What every console route shares: the control plane, the sessions, the templates,
    the dependencies that decide who may (page, fragment, action) and the views the pages
    and their live fragments both render."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.sessions = Sessions(cp.config.data_dir, cp.admin_token)
        self.templates = _templates()

    def render(self, name: str, request: Request, session: Session | None, status: int = 200,
               **ctx: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(csrf=session.csrf if session else "", path=request.url.path,
                                                        prefix=PREFIX, now=time.time(), **ctx)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    @staticmethod
    def back(url: str, note: str | None = None) -> RedirectResponse:
        return RedirectResponse(f"{url}?note={quote(note)}" if note else url, status_code=303, headers=HEADERS)

    # -- who may (FastAPI dependencies) -----------------------------------------------------

    def page(self, request: Request) -> Session:
        session = self.sessions.of(request)
        if session is None:
            raise HTTPException(303, "sign in first", headers={"Location": f"{PREFIX}/login?next="
                                                                             f"{quote(request.url.path)}"})
        return session

    def fragment(self, request: Request) -> Session:
        session = self.sessions.of(request)
        if session is None:
            raise HTTPException(401, "sign in first", headers=HEADERS)
        return session

    async def action(self, request: Request) -> Session:
        session = self.sessions.of(request)
        if session is None:
            raise HTTPException(403, "sign in first: console actions need a session", headers=HEADERS)
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            value = (await request.form()).get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
        if not self.sessions.csrf_ok(session, given):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again", headers=HEADERS)
        return session

    # -- views -----------------------------------------------------------------------------

    def service_rows(self) -> list[dict]:
        rows = []
        for info in self.cp.list():
            w = self.cp.metrics.window(info["name"], 60)
            rows.append({**info, "rps": w.rps, "error_rate": _error_rate(w.errors, w.requests), "p99_ms": w.p99_ms})
        return rows

    def service_view(self, name: str) -> dict[str, Any]:
        info = self.cp.describe(name)
        w = self.cp.metrics.window(name, 60)
        return {"info": info, "window": w, "error_rate": _error_rate(w.errors, w.requests)}

    def service_page(self, request: Request, session: Session, name: str, status: int = 200,
                     **extra: Any) -> Response:
        try:
            view = self.service_view(name)
        except EasError as exc:
            return self.render("error.html", request, session, status=exc.status, message=exc.message)
        extra.setdefault("spec_text", json.dumps(view["info"]["spec"], indent=2))
        return self.render("service.html", request, session, status=status, gateway=self.cp.gateway_url,
                           **view, **extra)

    def group_view(self, name: str) -> dict[str, Any]:
        cp = self.cp
        info = cp.group(name)
        members = []
        for m in info["members"]:
            svc = cp.store.service(m["service"])
            described = cp.describe(m["service"])
            w = cp.metrics.window(m["service"], 60)
            members.append({**m, "status": described["status"], "running": described["running_instances"],
                            "instances": described["instances"], "version": described["version"],
                            "updated": svc.updated, "requests": w.requests, "rps": w.rps, "p99_ms": w.p99_ms,
                            "error_rate": _error_rate(w.errors, w.requests)})
        total = sum(m["requests"] for m in members)
        for m in members:
            m["share"] = m["requests"] / total if total else None
        lease = cp.store.lease_holder(name)
        return {"group": info, "members": members, "lease": lease, "rollout": rollout_of(members, lease)}

    def group_page(self, request: Request, session: Session, name: str, status: int = 200, **extra: Any) -> Response:
        try:
            view = self.group_view(name)
        except EasError as exc:
            return self.render("error.html", request, session, status=exc.status, message=exc.message)
        return self.render("group.html", request, session, status=status, **view, **extra)

    def deploy_page(self, request: Request, session: Session, status: int = 200, **ctx: Any) -> Response:
        ctx.setdefault("form", {"kind": "processor", "instances": "1", "processor": "sklearn"})
        ctx.setdefault("errors", {})
        ctx.setdefault("json_text", "")
        ctx.setdefault("json_errors", [])
        return self.render("deploy.html", request, session, status=status, processors=BUILTIN_PROCESSORS, **ctx)


async def _form_of(request: Request) -> dict[str, Any]:
    return dict(await request.form())


def _error_rate(errors: int, requests: int) -> float | None:
    return errors / requests if requests else None


def _auth_routes(c: Console) -> APIRouter:
    router = APIRouter()

    @router.get("/login")
    def login_form(request: Request, next: str = f"{PREFIX}/") -> Response:
        return c.render("login.html", request, None, next=_safe_next(next), error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await _form_of(request)
        target = _safe_next(str(form.get("next", "")))
        if not c.sessions.token_ok(str(form.get("token", ""))):
            return c.render("login.html", request, None, status=401, next=target,
                            error="Wrong admin token. It is in DATA_DIR/admin_token on the server.")
        response = RedirectResponse(target, status_code=303, headers=HEADERS)
        c.sessions.open(response, secure=request.url.scheme == "https")
        return response

    @router.post("/logout")
    def logout(request: Request, _: Session = Depends(c.action)) -> Response:
        response = RedirectResponse(f"{PREFIX}/login", status_code=303, headers=HEADERS)
        c.sessions.close(request, response)
        return response

    return router


def _service_routes(c: Console) -> APIRouter:
    """The services list and one service's page and live part."""
    cp = c.cp
    router = APIRouter()

    @router.get("/")
    def services(request: Request, note: str | None = None, session: Session = Depends(c.page)) -> Response:
        return c.render("services.html", request, session, rows=c.service_rows(), note=note)

    @router.get("/fragments/services")
    def services_fragment(request: Request, session: Session = Depends(c.fragment)) -> Response:
        return c.render("_services_rows.html", request, session, rows=c.service_rows())

    @router.get("/services/{name}")
    def service(name: str, request: Request, note: str | None = None, session: Session = Depends(c.page)) -> Response:
        return c.service_page(request, session, name, note=note)

    @router.get("/services/{name}/live")
    def service_fragment(name: str, request: Request, session: Session = Depends(c.fragment)) -> Response:
        return c.render("_service_live.html", request, session, **c.service_view(name))

    @router.get("/services/{name}/app")
    def web_app(name: str, _: Session = Depends(c.page)) -> Response:
        """The web app's link carries its token: handed out on a click, never written into a page."""
        link = cp.describe(name)["link"]
        if not link:
            raise HTTPException(404, f"{name} is not a web app (an image deployment)", headers=HEADERS)
        return RedirectResponse(link, status_code=303, headers=HEADERS)

    return router


def _service_data_routes(c: Console) -> APIRouter:
    """What a service page's script fetches: the token (on a click), log lines, chart points."""
    cp = c.cp
    router = APIRouter()

    @router.get("/services/{name}/token")
    def service_token(name: str, _: Session = Depends(c.fragment)) -> Response:
        return JSONResponse({"token": cp.store.service(name).token}, headers=HEADERS)

    @router.get("/services/{name}/logs")
    def service_logs(name: str, instance: str, lines: int = 200, _: Session = Depends(c.fragment)) -> Response:
        return PlainTextResponse(cp.logs(name, max(1, min(lines, 2000)), instance), headers=HEADERS)

    @router.get("/services/{name}/series")
    def service_series(name: str, window: str = "15m", _: Session = Depends(c.fragment)) -> Response:
        cp.store.service(name)
        return JSONResponse(cp.series_of(name, window), headers=HEADERS)

    return router


def _service_action_routes(c: Console) -> APIRouter:
    """What the service page's buttons and spec editor do; a refused action shows the page with its error."""
    cp = c.cp
    router = APIRouter()

    def service_action(name: str, request: Request, session: Session, call: Callable[[], Any], note: str,
                       done: str | None = None) -> Response:
        try:
            call()
        except EasError as exc:
            return c.service_page(request, session, name, status=exc.status, action_error=exc.message)
        return c.back(done or f"{PREFIX}/services/{name}", note)

    @router.post("/services/{name}/scale")
    async def scale(name: str, request: Request, session: Session = Depends(c.action)) -> Response:
        wanted = forms.int_or_text(str((await _form_of(request)).get("instances", "")).strip())
        return service_action(name, request, session, lambda: cp.scale(name, wanted), f"scaled to {wanted}")

    @router.post("/services/{name}/start")
    def start(name: str, request: Request, session: Session = Depends(c.action)) -> Response:
        return service_action(name, request, session, lambda: cp.start_service(name), "starting")

    @router.post("/services/{name}/stop")
    def stop(name: str, request: Request, session: Session = Depends(c.action)) -> Response:
        return service_action(name, request, session, lambda: cp.stop_service(name), "stopping")

    @router.post("/services/{name}/delete")
    def delete(name: str, request: Request, session: Session = Depends(c.action)) -> Response:
        return service_action(name, request, session, lambda: cp.delete(name), f"{name} is being deleted",
                              done=f"{PREFIX}/")

    @router.post("/services/{name}/spec")
    async def modify(name: str, request: Request, session: Session = Depends(c.action)) -> Response:
        text = str((await _form_of(request)).get("spec", ""))
        try:
            cp.modify(name, text)
        except EasError as exc:
            return c.service_page(request, session, name, status=exc.status, spec_text=text,
                                  spec_errors=forms.field_errors(exc))
        return c.back(f"{PREFIX}/services/{name}", "rolling update started")

    return router


def _group_routes(c: Console) -> APIRouter:
    cp = c.cp
    router = APIRouter()

    @router.get("/groups")
    def groups(request: Request, session: Session = Depends(c.page)) -> Response:
        views = [c.group_view(g["name"]) for g in cp.groups()]
        return c.render("groups.html", request, session, groups=views)

    @router.get("/groups/{name}")
    def group(name: str, request: Request, note: str | None = None, session: Session = Depends(c.page)) -> Response:
        return c.group_page(request, session, name, note=note)

    @router.get("/groups/{name}/live")
    def group_fragment(name: str, request: Request, session: Session = Depends(c.fragment)) -> Response:
        return c.render("_group_live.html", request, session, **c.group_view(name))

    @router.get("/groups/{name}/series")
    def group_series(name: str, window: str = "15m", _: Session = Depends(c.fragment)) -> Response:
        members = {m["service"]: cp.series_of(m["service"], window) for m in cp.group(name)["members"]}
        return JSONResponse({"group": cp.series_of(name, window), "members": members}, headers=HEADERS)

    @router.post("/groups/{name}/traffic")
    async def traffic(name: str, request: Request, session: Session = Depends(c.action)) -> Response:
        form = await _form_of(request)
        weights = {k.removeprefix("weight."): forms.int_or_text(str(v).strip())
                   for k, v in form.items() if k.startswith("weight.")}
        try:
            cp.set_traffic(name, weights)
        except EasError as exc:
            return c.group_page(request, session, name, status=exc.status, error=exc.message)
        return c.back(f"{PREFIX}/groups/{name}", "weights set: " + ", ".join(f"{k}={v}" for k, v in weights.items()))

    return router


def _deploy_routes(c: Console) -> APIRouter:
    router = APIRouter()

    @router.get("/deploy")
    def deploy_form(request: Request, session: Session = Depends(c.page)) -> Response:
        return c.deploy_page(request, session)

    @router.post("/deploy")
    async def deploy(request: Request, session: Session = Depends(c.action)) -> Response:
        form = await _form_of(request)
        if form.get("mode") == "json":
            text = await _spec_text(form)
            try:
                info = c.cp.create(text)
            except EasError as exc:
                return c.deploy_page(request, session, status=exc.status, json_text=text, mode="json",
                                     json_errors=forms.field_errors(exc))
        else:
            fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
            try:
                info = c.cp.create(forms.spec_from_form(fields))
            except EasError as exc:
                return c.deploy_page(request, session, status=exc.status, form=fields,
                                     errors=forms.errors_by_input(exc))
        return c.back(f"{PREFIX}/services/{info['name']}", "deployed")

    return router


async def _spec_text(form: dict[str, Any]) -> str:
    """The JSON spec of the deploy form: an uploaded file wins over the text area."""
    upload = form.get("file")
    if upload is not None and not isinstance(upload, str) and upload.filename:
        return (await upload.read()).decode(errors="replace")
    return str(form.get("spec", ""))


def rollout_of(members: list[dict], lease: tuple[str, float] | None) -> dict[str, Any] | None:
    """The rollout a group is in, read from its weights and lease (None when it is at rest).

    The candidate is the lighter live member (the latest updated on a tie), or, while a
    lease is held and one member has all traffic, the idle member being prepared.
    """
    live = [m for m in members if m["weight"] > 0]
    if len(live) < 2 and lease is None:
        return None
    if len(live) >= 2:
        candidate = min(live, key=lambda m: (m["weight"], -m["updated"]))
    else:
        idle = [m for m in members if m["weight"] == 0]
        candidate = max(idle, key=lambda m: m["updated"]) if idle else None
    stable = max((m for m in live if m is not candidate), key=lambda m: m["weight"], default=None)
    return {"candidate": candidate, "stable": stable, "step": candidate["weight"] if candidate else None,
            "holder": lease[0] if lease else None, "expires_at": lease[1] if lease else None}


def _safe_next(target: str) -> str:
    """Only a path of the console itself (no open redirect to another site)."""
    if target.startswith(f"{PREFIX}/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/"
