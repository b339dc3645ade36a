"""The triggers on a cluster: the Kubernetes platform's reads in worker threads (``ThreadedPlatform``)."""

from __future__ import annotations

import asyncio
import threading
import time

from airflow_eas.spec import parse_spec
from tests.platform.kubernetes.emulator import Controllers
from tests.platform.kubernetes.test_platform import image_spec, platform_of


def test_ready_trigger_waits_on_the_cluster_and_renews_the_lease(kube_conn: str, controllers: Controllers) -> None:
    from airflow_eas.hooks.eas import EasHook
    from airflow_eas.platform.aio import ThreadedPlatform
    from airflow_eas.triggers.eas import EasServiceReadyTrigger

    assert isinstance(EasHook(kube_conn).get_async_platform(), ThreadedPlatform)
    p = platform_of(kube_conn)
    p.create(parse_spec(image_spec("fraud_blue", group="fraud")))
    p.set_traffic("fraud", {"fraud_blue": 100})
    taken = p.acquire_lease("fraud", "dag/run", 4, stable="fraud_blue")
    trigger = EasServiceReadyTrigger(service="fraud_blue", eas_conn_id=kube_conn, poll_interval=0.2,
                                     lease={"group": "fraud", "holder": "dag/run", "ttl_seconds": 4})  # fmt: skip

    async def first_event() -> dict:
        async for event in trigger._poll_until_event():
            return event.payload
        raise AssertionError("no event")

    # The cluster's controllers make the pods ready 1.5 s into the wait.
    threading.Timer(1.5, controllers.step).start()
    started = time.monotonic()
    event = asyncio.run(first_event())
    assert event["status"] == "success", event
    assert event["running_instances"] == 2
    assert time.monotonic() - started >= 1.5
    renewed = p.get_lease("fraud")
    assert renewed is not None
    assert renewed.expires_at > taken.expires_at  # the trigger's heartbeat reached the cluster's Lease
