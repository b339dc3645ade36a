"""``AsyncPlatform``: what the triggers read from a platform, awaited on the triggerer's event loop.

Only the reads a trigger makes while it waits: a service's state and log tail, its data-plane
metrics, and the lease's heartbeat. Two implementations:

- :class:`~airflow_eas.platform.async_client.AsyncEasClient`: ``eas server`` over ``httpx``,
  truly async (no thread per check);
- :class:`ThreadedPlatform`: any sync :class:`~airflow_eas.platform.base.Platform` with each
  read in a worker thread. The Kubernetes platform goes through it: its ``describe`` joins a
  Deployment, its ReplicaSets, Pods and Events through the cncf-kubernetes ``KubernetesHook``
  (and its metrics through Prometheus with the connection's query templates); an async copy on
  ``AsyncKubernetesHook`` (kubernetes_asyncio, other model classes) would be a second
  implementation of all of it to keep in step, for a triggerer that polls every few seconds.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from types import TracebackType

from airflow_eas.platform.base import Lease, Metrics, Platform, ServiceInfo


class AsyncPlatform(ABC):
    """The async reads of a :class:`~airflow_eas.platform.base.Platform` that the triggers need.

    Same meaning, arguments and errors as the sync methods of the same name. Use it as an
    ``async with`` block: it may hold connections.
    """

    @abstractmethod
    async def describe(self, name: str) -> ServiceInfo: ...

    @abstractmethod
    async def logs(self, name: str, lines: int = 100) -> str: ...

    @abstractmethod
    async def metrics(self, name: str, window_seconds: int = 60) -> Metrics: ...

    @abstractmethod
    async def renew_lease(self, group: str, holder: str, ttl_seconds: int, *, stable: str | None = None) -> Lease: ...

    @abstractmethod
    async def aclose(self) -> None:
        """Free what the client holds (connections)."""

    async def __aenter__(self) -> AsyncPlatform:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class ThreadedPlatform(AsyncPlatform):
    """A sync platform's reads, each in a worker thread (for platforms without an async client).

    :param platform: the sync platform
    """

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def describe(self, name: str) -> ServiceInfo:
        return await asyncio.to_thread(self.platform.describe, name)

    async def logs(self, name: str, lines: int = 100) -> str:
        return await asyncio.to_thread(self.platform.logs, name, lines)

    async def metrics(self, name: str, window_seconds: int = 60) -> Metrics:
        return await asyncio.to_thread(self.platform.metrics, name, window_seconds)

    async def renew_lease(self, group: str, holder: str, ttl_seconds: int, *, stable: str | None = None) -> Lease:
        return await asyncio.to_thread(self.platform.renew_lease, group, holder, ttl_seconds, stable=stable)

    async def aclose(self) -> None:
        """Nothing to free: the sync platform belongs to whoever built it."""
