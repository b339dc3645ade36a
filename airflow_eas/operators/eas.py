"""Operators for model releases on an EAS-style platform.

=================================  =====================================================
:class:`EasDeployServiceOperator`  create or update a service (the idle member of a group)
:class:`EasWarmUpOperator`         replay warm-up requests against a service, report latency
:class:`EasTrafficShiftOperator`   move a group's traffic one weight step
:class:`EasPromoteOperator`        all traffic to a member; the old one scaled down later
:class:`EasRollbackOperator`       traffic back to the previous live member; new one stopped
:class:`EasScaleOperator`          set a service's instance count
:class:`EasDeleteServiceOperator`  delete a service
:class:`EasAcquireLeaseOperator`   take a group's lease (one rollout per group at a time)
:class:`EasReleaseLeaseOperator`   give it back
=================================  =====================================================

A group's blue/green members are ``<group>_blue`` and ``<group>_green``; the idle member
is the one without traffic (weight 0, or not deployed yet).
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_eas.errors import Conflict, EasError, InvalidSpec, NotFound
from airflow_eas.links import EasServiceConsoleLink, EasServiceEndpointLink, persist_service_links
from airflow_eas.operators.base import (
    EasBaseOperator,
    eas_template_fields,
    fail_fast_on_permanent_errors,
    wait_or_defer,
)
from airflow_eas.platform.base import RUNNING, GroupInfo, GroupMember, Platform
from airflow_eas.spec import ServiceSpec, check_name, parse_spec, spec_dict

MEMBER_SUFFIXES = ("blue", "green")


# -- group helpers (shared with the DAG factory) ----------------------------------------------


def member_names(group: str) -> tuple[str, str]:
    """The blue/green member names of ``group``."""
    check_name(group, "group")
    return f"{group}_{MEMBER_SUFFIXES[0]}", f"{group}_{MEMBER_SUFFIXES[1]}"


def describe_group_or_empty(platform: Platform, group: str) -> GroupInfo:
    try:
        return platform.describe_group(group)
    except NotFound:
        return GroupInfo(name=group, endpoint="", token="", members=[])


def live_members(info: GroupInfo, *, exclude: str | None = None) -> list[GroupMember]:
    """Members with traffic, heaviest first."""
    live = [m for m in info.members if m.weight > 0 and m.service != exclude]
    return sorted(live, key=lambda m: (-m.weight, m.service))


def pick_idle_member(group: str, info: GroupInfo) -> str:
    """The member a new version goes to: the one without traffic (blue on an empty group).

    Deterministic, so a retried deploy picks the same member and updates it instead of
    making a second service.
    """
    blue, green = member_names(group)
    weights = {m.service: m.weight for m in info.members}
    idle = [name for name in (blue, green) if weights.get(name, 0) == 0]
    if not idle:
        raise Conflict(
            f"group {group}: both {blue} ({weights[blue]}%) and {green} ({weights[green]}%) serve traffic; "
            "finish or roll back the previous rollout first"
        )
    return idle[0]


# -- deploy ------------------------------------------------------------------------------------


class EasDeployServiceOperator(EasBaseOperator):
    """Create a service, or update it when it exists (retry-safe: one name, never a second service).

    With ``group`` and no ``service_name`` the service is the group's idle member
    (``<group>_blue`` / ``<group>_green``, see :func:`pick_idle_member`); a member that
    serves traffic is never redeployed. The spec's ``name`` and ``metadata.group`` are set
    here. Returns (XCom) ``service``, ``version``, ``endpoint``, ``group``, ``previous`` (the
    live member before this deploy, if any), ``status`` and ``model_path``.

    :param spec: EAS service spec (dict or JSON text), without ``name``; templated
    :param group: the service group to deploy into; templated
    :param service_name: deploy exactly this service instead of the group's idle member; templated
    :param model_path: overrides the spec's ``model_path`` when not empty (e.g. from a UI
        trigger's params); templated
    :param use_asset_event: take ``model_path`` (and ``version``) from the ``extra`` of the
        asset event that triggered the run, when there is one
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("spec", "group", "service_name", "model_path")
    template_fields_renderers = {"spec": "json"}
    operator_extra_links = (EasServiceEndpointLink(), EasServiceConsoleLink())
    ui_color = "#c9e2ff"

    def __init__(
        self,
        *,
        spec: dict[str, Any] | str,
        group: str | None = None,
        service_name: str | None = None,
        model_path: str | None = None,
        use_asset_event: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.group = group
        self.service_name = service_name
        self.model_path = model_path
        self.use_asset_event = use_asset_event

    def execute(self, context: Any) -> dict[str, Any]:
        with fail_fast_on_permanent_errors():
            return self._deploy(context)

    def _deploy(self, context: Any) -> dict[str, Any]:
        platform = self.platform
        previous: str | None = None
        group = self.group or None
        if group:
            info = describe_group_or_empty(platform, group)
            name = self.service_name or pick_idle_member(group, info)
            weight = info.weight_of(name)
            if weight > 0:
                raise Conflict(f"{name} serves {weight}% of group {group}'s traffic; refusing to redeploy it")
            live = live_members(info, exclude=name)
            previous = live[0].service if live else None
        elif self.service_name:
            name = self.service_name
        else:
            raise InvalidSpec("deploy: give group (deploy to its idle member) or service_name")

        spec = self.build_spec(name, group, context)
        self.log.info("Deploying %s (create, or a rolling update when it exists)", spec.name)
        info = platform.deploy(spec)
        persist_service_links(context, self, self.hook, info.name, info.endpoint)
        self.log.info(
            "Deployed %s (version %s, %s) into group %s; live member before: %s",
            info.name,
            info.version,
            info.status,
            group,
            previous,
        )
        return {
            "service": info.name,
            "version": info.version,
            "endpoint": info.endpoint,
            "group": group,
            "previous": previous,
            "status": info.status,
            "model_path": spec.model_path,
        }

    def build_spec(self, name: str, group: str | None, context: Any) -> ServiceSpec:
        data = copy.deepcopy(spec_dict(self.spec))
        data["name"] = name
        if group:
            data.setdefault("metadata", {})["group"] = group
        model_path = self.model_path or None
        if self.use_asset_event:
            extra = _asset_event_extra(context)
            model_path = model_path or extra.get("model_path")
        if model_path:
            data["model_path"] = model_path
        return parse_spec(data)


def _asset_event_extra(context: Any) -> dict[str, Any]:
    """The ``extra`` of the newest asset event that triggered this run ({} when none)."""
    events_by_asset = context.get("triggering_asset_events") or {}
    newest: dict[str, Any] = {}
    try:
        for events in events_by_asset.values():
            for event in events or []:
                extra = getattr(event, "extra", None) or {}
                if extra:
                    newest = dict(extra)
    except Exception:  # noqa: BLE001 - no usable event: fall back to the spec
        return {}
    return newest


# -- warm-up -----------------------------------------------------------------------------------


class EasWarmUpOperator(EasBaseOperator):
    """Replay warm-up requests against a service, directly (not through its group).

    Requests come from ``data`` (a list of bodies: objects are sent as JSON), or from
    ``data_path`` (a local path or ``file://`` URI: ``.jsonl`` is one body per line, ``.json``
    a list of bodies), or else from the service spec's ``warm_up_data_path``. Each request is
    sent ``count`` times. The first call is the cold latency; the rest are warm. Returns
    (XCom) ``requests``, ``errors``, ``cold_ms``, ``warm_p50_ms``, ``warm_max_ms``.

    :param service: the service to warm up; templated
    :param data: request bodies; templated
    :param data_path: where the request bodies are; templated
    :param count: how often each request is replayed; templated
    :param max_errors: the most non-2xx answers tolerated before the task fails
    :param request_timeout: seconds to wait for one answer
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("service", "data", "data_path", "count")
    ui_color = "#fff3c9"

    def __init__(
        self,
        *,
        service: str,
        data: list[Any] | None = None,
        data_path: str | None = None,
        count: int | str = 3,
        max_errors: int = 0,
        request_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.data = data
        self.data_path = data_path
        self.count = count
        self.max_errors = max_errors
        self.request_timeout = request_timeout

    def execute(self, context: Any) -> dict[str, Any]:
        with fail_fast_on_permanent_errors():
            return self._warm_up()

    def _warm_up(self) -> dict[str, Any]:
        platform = self.platform
        bodies = self._bodies(platform)
        if not bodies:
            self.log.warning(
                "No warm-up data for %s (give data or data_path): skipping warm-up", self.service
            )
            return {
                "service": self.service,
                "requests": 0,
                "errors": 0,
                "cold_ms": None,
                "warm_p50_ms": None,
                "warm_max_ms": None,
            }
        latencies: list[float] = []
        failures: list[str] = []
        for _ in range(max(1, int(self.count))):
            for body in bodies:
                started = time.perf_counter()
                status, answer = platform.invoke(self.service, body, timeout=self.request_timeout)
                latencies.append((time.perf_counter() - started) * 1000)
                if not 200 <= status < 300:
                    failures.append(f"HTTP {status}: {answer[:200].decode(errors='replace')}")
        warm = latencies[1:]
        result = {
            "service": self.service,
            "requests": len(latencies),
            "errors": len(failures),
            "cold_ms": round(latencies[0], 2),
            "warm_p50_ms": round(statistics.median(warm), 2) if warm else None,
            "warm_max_ms": round(max(warm), 2) if warm else None,
        }
        self.log.info(
            "Warm-up of %s: %d requests, %d errors, cold %.1f ms, warm p50 %s ms",
            self.service,
            result["requests"],
            result["errors"],
            result["cold_ms"],
            result["warm_p50_ms"],
        )
        if len(failures) > self.max_errors:
            raise AirflowFailException(
                f"warm-up of {self.service}: {len(failures)} of {len(latencies)} requests failed "
                f"(at most {self.max_errors} allowed); first: {failures[0]}"
            )
        return result

    def _bodies(self, platform: Platform) -> list[bytes]:
        if self.data:
            return [_encode_body(b) for b in self.data]
        path = self.data_path or platform.describe(self.service).spec.get("warm_up_data_path")
        return read_warmup_file(path) if path else []


def _encode_body(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def read_warmup_file(uri: str) -> list[bytes]:
    """Request bodies from a local warm-up file (``file://`` URI or path; ``.jsonl`` or ``.json``)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise InvalidSpec(f"warm-up data {uri!r}: only local files (file:// or a path) can be read here")
    path = Path(parsed.path if parsed.scheme else uri)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidSpec(f"cannot read warm-up data {uri}: {exc.strerror}") from None
    if path.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSpec(f"warm-up data {uri} is not valid JSON: {exc}") from None
        if not isinstance(items, list):
            raise InvalidSpec(f"warm-up data {uri} must hold a JSON list of request bodies")
        return [_encode_body(item) for item in items]
    return [line.strip().encode() for line in text.splitlines() if line.strip()]


# -- traffic -----------------------------------------------------------------------------------


class EasTrafficShiftOperator(EasBaseOperator):
    """Give a group member ``weight`` percent of the group's traffic; the rest stays with the others.

    The remainder is shared by ``previous`` (or, if not given, by the members that serve
    traffic now, in proportion to their weights). A member alone in its group (the first
    deploy of a group) gets all traffic. Returns (XCom) the weights set.

    :param group: the service group; templated
    :param service: the member to shift traffic to; templated
    :param weight: its new weight, 0-100; templated
    :param previous: the member that keeps the remainder; templated
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("group", "service", "weight", "previous")
    ui_color = "#d9f2d9"

    def __init__(
        self, *, group: str, service: str, weight: int | str, previous: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.service = service
        self.weight = weight
        self.previous = previous

    def execute(self, context: Any) -> dict[str, int]:
        with fail_fast_on_permanent_errors():
            weight = int(self.weight)
            if not 0 <= weight <= 100:
                raise InvalidSpec(f"weight {weight}: must be between 0 and 100")
            platform = self.platform
            info = describe_group_or_empty(platform, self.group)
            weights = shift_weights(info, self.service, weight, self.previous or None)
            platform.set_traffic(self.group, weights)
            self.log.info("Group %s traffic: %s", self.group, _fmt(weights))
            return weights


def shift_weights(info: GroupInfo, service: str, weight: int, previous: str | None = None) -> dict[str, int]:
    """Weights giving ``service`` ``weight`` percent and the others the remainder (see the operator)."""
    others = live_members(info, exclude=service)
    if previous:
        others = [GroupMember(previous, max(1, info.weight_of(previous)))]
    if not others:
        return {service: 100}
    rest = 100 - weight
    total = sum(m.weight for m in others)
    weights = {service: weight}
    given = 0
    for i, member in enumerate(others):
        share = rest - given if i == len(others) - 1 else round(rest * member.weight / total)
        weights[member.service] = share
        given += share
    for member in info.members:  # members without traffic stay at 0
        weights.setdefault(member.service, 0)
    return weights


def _fmt(weights: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(weights.items()))


class EasBakeOperator(EasBaseOperator):
    """Let traffic flow for a while (a canary step's bake time) before its analysis.

    Deferred by default, so no worker slot is held while baking.

    :param seconds: how long to wait; templated
    :param deferrable: wait in the triggerer (default) instead of sleeping in the worker
    """

    template_fields = eas_template_fields("seconds")
    ui_color = "#fdf6e3"

    def __init__(self, *, seconds: int | str, deferrable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds
        self.deferrable = deferrable

    def execute(self, context: Any) -> None:
        seconds = float(self.seconds)
        if seconds <= 0:
            return
        self.log.info("Baking for %.0f s", seconds)
        wait_or_defer(self, seconds, deferrable=self.deferrable, method_name="execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> None:
        self.log.info("Bake time over")


class EasRolloutFailedOperator(EasBaseOperator):
    """Fails the run after a rollback, so a rolled-back release never ends ``success``.

    Wire it with ``trigger_rule=ONE_FAILED`` below the rollout steps.

    :param group: the service group (for the message); templated
    """

    template_fields = eas_template_fields("group")
    ui_color = "#ffb3b3"

    def __init__(self, *, group: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group = group

    def execute(self, context: Any) -> None:
        raise AirflowFailException(
            f"the rollout of group {self.group} failed; its traffic went back to the previous member "
            "(see the failed task and the rollback task)"
        )


class EasPromoteOperator(EasBaseOperator):
    """Give ``service`` all of its group's traffic; scale the old members down after a delay.

    Until then the old members keep running, so a rollback is one weight change. The delay
    is spent deferred (no worker slot). If the group no longer routes everything to
    ``service`` when the delay ends (someone rolled back), nothing is scaled down.

    :param group: the service group; templated
    :param service: the member to promote; templated
    :param scale_down_delay_seconds: how long the old members stay up; templated
    :param scale_down: ``"stop"`` the old members (default), ``"zero"`` (scale to 0 instances)
        or ``"keep"`` them running
    :param deferrable: spend the delay in the triggerer (default) instead of the worker
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("group", "service", "scale_down_delay_seconds")
    ui_color = "#a8e6a8"

    def __init__(
        self,
        *,
        group: str,
        service: str,
        scale_down_delay_seconds: int | str = 300,
        scale_down: str = "stop",
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        if scale_down not in ("stop", "zero", "keep"):
            raise InvalidSpec(f"scale_down {scale_down!r}: choose stop, zero or keep")
        self.group = group
        self.service = service
        self.scale_down_delay_seconds = scale_down_delay_seconds
        self.scale_down = scale_down

    def execute(self, context: Any) -> dict[str, Any]:
        with fail_fast_on_permanent_errors():
            platform = self.platform
            info = platform.describe_group(self.group)
            if self.service not in {m.service for m in info.members}:
                raise NotFound(f"{self.service} is not a member of group {self.group}")
            weights = {m.service: 0 for m in info.members}
            weights[self.service] = 100
            platform.set_traffic(self.group, weights)
            # Every other member: a canary's last step may have moved their traffic already.
            old = [m.service for m in info.members if m.service != self.service]
            self.log.info(
                "Promoted %s: all of group %s's traffic; old members %s", self.service, self.group, old
            )
        delay = int(self.scale_down_delay_seconds)
        if old and self.scale_down != "keep" and delay > 0:
            self.log.info("Keeping %s up for %d s for a fast rollback", old, delay)
            wait_or_defer(self, delay, deferrable=self.deferrable, method_name="execute_complete")
        return self.execute_complete(context)

    def execute_complete(self, context: Any, event: Any = None, **_: Any) -> dict[str, Any]:
        # Stateless: the old members are the group's other members (whatever resumed us).
        with fail_fast_on_permanent_errors():
            platform = self.platform
            info = platform.describe_group(self.group)
            old = [m.service for m in info.members if m.service != self.service]
            if info.weight_of(self.service) != 100:
                self.log.warning(
                    "Group %s no longer routes everything to %s (%s); leaving %s up",
                    self.group,
                    self.service,
                    _fmt({m.service: m.weight for m in info.members}),
                    old,
                )
                return {"service": self.service, "scaled_down": []}
            done = []
            for name in old if self.scale_down != "keep" else []:
                if info.weight_of(name) > 0:
                    continue
                try:
                    current = platform.describe(name)
                except NotFound:
                    continue
                if current.instances == 0:
                    continue  # already scaled down
                if self.scale_down == "stop":
                    platform.stop(name)
                else:
                    platform.scale(name, 0)
                done.append(name)
            if done:
                self.log.info("Scaled down %s (%s)", done, self.scale_down)
            return {"service": self.service, "scaled_down": done}


class EasRollbackOperator(EasBaseOperator):
    """Send a group's traffic back to the previous live member and stop the new one.

    Skips when there is nothing to roll back (``service`` empty: nothing was deployed).
    A ``previous`` member that was stopped is started again first. Without a previous
    member (a group's first deploy) the new member just loses its traffic.

    :param group: the service group; templated
    :param service: the member to take traffic from; templated
    :param previous: the member to give all traffic back to; templated
    :param stop_service: stop ``service`` afterwards (default True)
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("group", "service", "previous")
    ui_color = "#ffd6d6"

    def __init__(
        self,
        *,
        group: str,
        service: str | None,
        previous: str | None = None,
        stop_service: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.service = service
        self.previous = previous
        self.stop_service = stop_service

    def execute(self, context: Any) -> dict[str, Any]:
        if not self.service:
            raise AirflowSkipException("nothing was deployed in this run: nothing to roll back")
        platform = self.platform
        previous = self.previous or None
        weights: dict[str, int] = {self.service: 0}
        if previous:
            state = platform.describe(previous)
            if state.status != RUNNING:
                self.log.warning(
                    "%s is %s: starting it again before it takes traffic", previous, state.status
                )
                platform.start(previous)
                _wait_running(platform, previous, timeout=300)
            weights[previous] = 100
        platform.set_traffic(self.group, weights)
        self.log.warning("Rolled back group %s: %s", self.group, _fmt(weights))
        if self.stop_service:
            try:
                platform.stop(self.service)
            except NotFound:
                pass
        return {"service": self.service, "previous": previous, "weights": weights}


def _wait_running(platform: Platform, name: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if platform.describe(name).ready:
            return
        time.sleep(1)
    raise EasError(f"{name} did not come back within {timeout:.0f} s")


# -- scale, delete -----------------------------------------------------------------------------


class EasScaleOperator(EasBaseOperator):
    """Set a service's instance count.

    :param service: the service; templated
    :param instances: the instance count; templated
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("service", "instances")

    def __init__(self, *, service: str, instances: int | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.instances = instances

    def execute(self, context: Any) -> dict[str, Any]:
        with fail_fast_on_permanent_errors():
            info = self.platform.scale(self.service, int(self.instances))
            return {"service": info.name, "instances": info.instances, "status": info.status}


class EasDeleteServiceOperator(EasBaseOperator):
    """Delete a service.

    :param service: the service; templated
    :param ignore_missing: succeed when the service does not exist (default True)
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("service")

    def __init__(self, *, service: str, ignore_missing: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.ignore_missing = ignore_missing

    def execute(self, context: Any) -> None:
        with fail_fast_on_permanent_errors():
            try:
                self.platform.delete(self.service)
            except NotFound:
                if not self.ignore_missing:
                    raise
                self.log.info("%s does not exist: nothing to delete", self.service)


# -- leases ------------------------------------------------------------------------------------


def default_holder(context: Any) -> str:
    return f"{context['dag'].dag_id}/{context['run_id']}"


class EasAcquireLeaseOperator(EasBaseOperator):
    """Take a group's lease so that no other rollout (from any DAG) changes the group meanwhile.

    The same holder may take it again (a retried task renews it). When another holder has
    it, the task waits up to ``wait_seconds`` and then fails without retrying.

    :param group: the service group; templated
    :param holder: who holds the lease (default ``<dag_id>/<run_id>``); templated
    :param ttl_seconds: the lease expires after this long unless released or renewed
    :param wait_seconds: how long to wait for another holder's lease (default 0: fail at once)
    :param poll_interval: seconds between attempts while waiting
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("group", "holder")
    ui_color = "#eeeeee"

    def __init__(
        self,
        *,
        group: str,
        holder: str | None = None,
        ttl_seconds: int = 7200,
        wait_seconds: float = 0,
        poll_interval: float = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.wait_seconds = wait_seconds
        self.poll_interval = poll_interval

    def execute(self, context: Any) -> dict[str, Any]:
        holder = self.holder or default_holder(context)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                lease = self.platform.acquire_lease(self.group, holder, self.ttl_seconds)
            except Conflict as exc:
                if time.monotonic() + self.poll_interval > deadline:
                    raise AirflowFailException(
                        f"group {self.group} is being changed by another rollout: {exc.message}"
                    ) from exc
                self.log.info("Group %s is leased by another rollout; waiting", self.group)
                time.sleep(self.poll_interval)
                continue
            self.log.info("Leased group %s to %s for %d s", self.group, holder, self.ttl_seconds)
            return lease.to_dict()


class EasReleaseLeaseOperator(EasBaseOperator):
    """Give a group's lease back (a lease held by someone else is left alone).

    :param group: the service group; templated
    :param holder: who holds the lease (default ``<dag_id>/<run_id>``); templated
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("group", "holder")
    ui_color = "#eeeeee"

    def __init__(self, *, group: str, holder: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.holder = holder

    def execute(self, context: Any) -> None:
        holder = self.holder or default_holder(context)
        try:
            self.platform.release_lease(self.group, holder)
        except (NotFound, Conflict) as exc:
            self.log.warning("Lease of group %s not released by %s: %s", self.group, holder, exc.message)
            return
        self.log.info("Released group %s", self.group)


__all__ = [
    "EasAcquireLeaseOperator",
    "EasBakeOperator",
    "EasDeleteServiceOperator",
    "EasDeployServiceOperator",
    "EasPromoteOperator",
    "EasReleaseLeaseOperator",
    "EasRollbackOperator",
    "EasRolloutFailedOperator",
    "EasScaleOperator",
    "EasTrafficShiftOperator",
    "EasWarmUpOperator",
    "member_names",
    "pick_idle_member",
    "shift_weights",
]
