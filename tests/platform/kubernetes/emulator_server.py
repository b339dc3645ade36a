"""``python -m tests.platform.kubernetes.emulator_server``: kmock's KubernetesEmulator in a process of its own.

Its own process (not a thread of the test) so that Airflow's work in the test process never
starves the API server of the GIL. Prints the port, serves until stdin closes. Pod logs
(``pods/NAME/log``) are what the test's kubelet wrote in the pod's ``LOG_ANNOTATION``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from typing import Any

import kmock

from airflow_eas.platform.kubernetes.api import RESOURCES

LOG_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
LOG_ANNOTATION = "kubelet.test/log"


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator, forgetting each request once answered.

    kmock keeps every request for a test's assertions and matches each new one against its reactions
    by filtering that whole history (``request in reaction._source``): a request cost O(requests so
    far), and a session's few thousand made an empty list take seconds. Nothing here asserts on the
    history (the tests talk to this process over HTTP), so only requests in flight are kept.
    """

    async def _handle(self, request: Any) -> Any:
        try:
            return await super()._handle(request)
        finally:
            # by identity: two identical requests in flight are two entries
            for history in (self._requests, *(reaction._requests for reaction in self._payloads)):
                history[:] = [r for r in history if r is not request]


async def main() -> None:
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    async with Emulator() as emulator, kmock.Server(emulator) as server:
        for api_version, plural in RESOURCES.values():
            emulator.resources[f"v1/{plural}" if api_version == "v1" else f"{api_version}/{plural}"] = {}

        def log(request: Any) -> bytes:
            match = LOG_PATH.match(str(request.url.path))
            text = ""
            for (resource, namespace, name), obj in emulator.objects.items():
                if match and resource.plural == "pods" and (namespace, name) == match.groups() and not obj.deleted:
                    text = ((obj.raw.get("metadata") or {}).get("annotations") or {}).get(LOG_ANNOTATION, "")
            lines = int(request.params.get("tailLines") or 0)
            if lines:
                text = "\n".join(text.splitlines()[-lines:])
            return text.encode()

        emulator["get", LOG_PATH] << log
        print(server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
