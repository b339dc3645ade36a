"""When the runtime prunes the images nothing needs: at start, after an instance is released (its service
was deleted, scaled down or updated to another image), and every ``Timings.image_gc_period`` as a
safety net. The pruning itself (an engine call) runs beside the loop, one pass at a time.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from airflow_eas.errors import EasError
from airflow_eas.server import assets
from airflow_eas.server.reconciler.background import Background
from airflow_eas.server.runtimes.base import Runtime
from airflow_eas.spec import ServiceSpec

if TYPE_CHECKING:
    from airflow_eas.server.store import Store


class ImageGC:
    def __init__(self, store: Store, runtime: Runtime, background: Background, period: float) -> None:
        self.store, self.runtime, self.bg, self.period = store, runtime, background, period
        self._due = 0.0  # time.monotonic() of the next pass: the first tick runs one
        self._running = threading.Lock()

    def soon(self) -> None:
        """Called from any thread once an instance's resources are gone: prune on the next tick."""
        self._due = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._due or not self._running.acquire(blocking=False):
            return
        self._due = now + self.period
        self.bg.fire("image pruning", self._run)

    def _run(self) -> None:
        try:
            # the store is read only by a runtime that builds images (the process runtime prunes nothing)
            self.runtime.prune_images(lambda: images_in_use(self.store))
        finally:
            self._running.release()


def images_in_use(store: Store) -> set[str]:
    """Every image this server's services name (a stopped one's too, its ``asset:`` resolved) and every image asset."""
    used = {a["uri"] for a in store.assets() if a["type"] == "image"}
    for svc in store.services():
        spec = ServiceSpec.model_validate(svc.spec)
        if not spec.containers:
            continue
        try:
            spec = assets.resolve(store, spec)
        except EasError:
            continue  # names an asset that is gone: no image to keep for it
        used.add(spec.containers[0].image)
    return used
