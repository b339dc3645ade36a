"""Deploy a new version into a group's idle member, and warm it up."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_eas import rollout
from airflow_eas.lineage import deploy_lineage
from airflow_eas.links import EasServiceConsoleLink, EasServiceEndpointLink, persist_service_links
from airflow_eas.operators.base import EasBaseOperator, default_deferrable, eas_template_fields
from airflow_eas.triggers.eas import FAILURE, LOG_LINES, SUCCESS, EasServiceReadyTrigger, check_service_ready

DEPLOY_XCOM = "eas_deploy"


class EasDeployServiceOperator(EasBaseOperator):
    """Create a service, or update it when it exists (retry-safe: one name, never a second service).

    With ``group`` and no ``service`` the service is the group's idle member
    (``<group>_blue`` / ``<group>_green``, see :func:`~airflow_eas.rollout.pick_idle_member`);
    a member that serves traffic is never redeployed. The spec's ``name`` and
    ``metadata.group`` are set here. Returns (XCom) ``service``, ``version``, ``endpoint``,
    ``group``, ``previous`` (the live member before this deploy, if any), ``status`` and
    ``model_path``.

    :param spec: EAS service spec (dict or JSON text), without ``name``; templated
    :param group: the service group to deploy into; templated
    :param service: deploy exactly this service instead of the group's idle member; templated
    :param model_path: overrides the spec's ``model_path`` when not empty (e.g. from a UI
        trigger's params); templated
    :param use_asset_event: take ``model_path`` (and ``version``) from the ``extra`` of the
        asset event that triggered the run, when there is one
    :param wait_for_completion: wait until the service is Running with every instance of the
        new version ready; fail with its reason and last log lines when it cannot start
    :param wait_timeout_seconds: how long to wait (then the task fails; a retry deploys the same spec again)
    :param check_interval: seconds between checks while waiting
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``)
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("spec", "group", "service", "model_path")
    template_fields_renderers = {"spec": "json"}
    operator_extra_links = (EasServiceEndpointLink(), EasServiceConsoleLink())
    ui_color = "#c9e2ff"

    def __init__(
        self,
        *,
        spec: dict[str, Any] | str,
        group: str | None = None,
        service: str | None = None,
        model_path: str | None = None,
        use_asset_event: bool = False,
        wait_for_completion: bool = True,
        wait_timeout_seconds: float = 600,
        check_interval: float = 2,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.group = group
        self.service = service
        self.model_path = model_path
        self.use_asset_event = use_asset_event
        self.wait_for_completion = wait_for_completion
        self.wait_timeout_seconds = wait_timeout_seconds
        self.check_interval = check_interval
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self._result: dict[str, Any] = {}

    def execute(self, context: Any) -> dict[str, Any]:
        platform = self.platform
        target = rollout.plan_deploy(platform, group=self.group or None, service=self.service or None)
        spec = rollout.member_spec(self.spec, target, model_path=self._model_path(context))
        self.log.info("Deploying %s (create, or a rolling update when it exists)", spec.name)
        info = platform.deploy(spec)
        persist_service_links(context, self, self.hook, info.name, info.endpoint)
        self.log.info(
            "Deployed %s (version %s, %s) into group %s; live member before: %s",
            info.name,
            info.version,
            info.status,
            target.group,
            target.previous,
        )
        self._result = rollout.deploy_result(info, target, spec)
        if not self.wait_for_completion:
            return self._result
        if self.deferrable:
            context["ti"].xcom_push(key=DEPLOY_XCOM, value=self._result)  # execute_complete runs in a new process
            self.defer(
                trigger=EasServiceReadyTrigger(
                    service=info.name,
                    eas_conn_id=self.eas_conn_id,
                    poll_interval=self.check_interval,
                    deadline=time.time() + self.wait_timeout_seconds,
                    log_lines=LOG_LINES,
                    lease=(ref.to_dict() if (ref := self.lease_ref(context)) else None),
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.wait_timeout_seconds + 60),
            )
        return self.execute_complete(context, self._wait_in_worker(info.name, context))

    def _wait_in_worker(self, name: str, context: Any) -> dict[str, Any]:
        deadline = time.monotonic() + self.wait_timeout_seconds
        while True:
            event = check_service_ready(self.platform, name, log_lines=LOG_LINES)
            if event is not None:
                return event
            if time.monotonic() >= deadline:
                return {"status": "timeout", "service": name,
                        "message": f"{name} was not ready within {self.wait_timeout_seconds:.0f} s"}
            time.sleep(self.check_interval)
            self.renew_lease(context)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        result = self._result or context["ti"].xcom_pull(task_ids=self.task_id, key=DEPLOY_XCOM) or {}
        self._result = result
        status, message = (event or {}).get("status"), (event or {}).get("message", "no event")
        if status == SUCCESS:
            self.log.info(message)
            return {**result, "status": "Running", "version": event.get("version", result.get("version"))}
        if status == FAILURE:
            raise AirflowFailException(message)
        raise AirflowException(f"{status}: {message}")

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        return deploy_lineage(self._result)

    def _model_path(self, context: Any) -> str | None:
        model_path = self.model_path or None
        if self.use_asset_event:
            model_path = model_path or _asset_event_extra(context).get("model_path")
        return model_path


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
    except (AttributeError, TypeError, KeyError):  # no usable event: fall back to the spec
        return {}
    return newest


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
        platform = self.platform
        bodies = rollout.warmup_bodies(platform, self.service, data=self.data, data_path=self.data_path)
        if not bodies:
            self.log.warning("No warm-up data for %s (give data or data_path): skipping warm-up", self.service)
            return rollout.WarmUpResult(self.service).to_dict()
        outcome = rollout.warm_up(platform, self.service, bodies, count=int(self.count), timeout=self.request_timeout)
        result = outcome.to_dict()
        self.log.info(
            "Warm-up of %s: %d requests, %d errors, cold %.1f ms, warm p50 %s ms",
            self.service,
            result["requests"],
            result["errors"],
            result["cold_ms"],
            result["warm_p50_ms"],
        )
        if len(outcome.failures) > self.max_errors:
            raise AirflowFailException(
                f"warm-up of {self.service}: {len(outcome.failures)} of {result['requests']} requests failed "
                f"(at most {self.max_errors} allowed); first: {outcome.failures[0]}"
            )
        return result
