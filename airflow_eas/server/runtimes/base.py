"""What a runtime does for the control plane: run one instance, watch it, stop it.

Runtimes are siblings over this base (``process``, later ``docker``); the reconciler
never knows which one it drives. A handle is an opaque string the runtime can use to
find its instance again after the control plane restarted (a pid, a container id).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airflow_eas.spec import ServiceSpec


@dataclass
class LaunchRequest:
    instance_id: str
    spec: ServiceSpec
    port: int
    env: dict[str, str]
    log_path: Path
    workdir: Path


@dataclass
class ExitStatus:
    code: int | None  # None when the runtime could not learn it (an adopted process)
    reason: str = ""  # what the runtime knows beyond the code (killed for memory)

    def describe(self) -> str:
        if self.reason:
            return self.reason
        if self.code is None:
            return "exited"
        if self.code < 0:
            return f"killed by signal {-self.code}"
        return f"exited with code {self.code}"


@dataclass
class Usage:
    """What one instance uses now: CPU in percent of one core, resident memory in bytes."""

    cpu_percent: float
    memory_bytes: int


class Runtime(ABC):
    name: str
    instant_poll = False  # poll() never blocks (no engine call): the loop may call it in a pass

    @abstractmethod
    def launch(self, request: LaunchRequest) -> str:
        """Start the instance; return its handle. Raise DeployFailed with a reason when it cannot start."""

    @abstractmethod
    def poll(self, handle: str) -> ExitStatus | None:
        """None while the instance runs; its exit status once it ended."""

    @abstractmethod
    def terminate(self, handle: str) -> None:
        """Ask the instance to exit (SIGTERM)."""

    @abstractmethod
    def kill(self, handle: str) -> None:
        """End the instance now (SIGKILL)."""

    @abstractmethod
    def adopt(self, handle: str) -> bool:
        """After a control-plane restart: True if the instance behind the handle still runs."""

    @abstractmethod
    def usage(self, handle: str) -> Usage | None:
        """CPU and memory of the instance (CPU averaged since the last call); None once it has ended."""

    def on_exit(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (from any thread) whenever an instance ends; False when this runtime cannot tell,
        and the loop must poll its instances on a timer."""
        return False

    def listens(self, handle: str, port: int) -> bool | None:
        """Whether the instance itself (not another process that took the port meanwhile) listens on ``port``;
        None when the runtime cannot tell."""
        return None

    def end_unknown(self, known: set[str]) -> list[str | int]:
        """After a restart: end what this server started but whose handle is not in ``known``."""
        return []

    def release(self, handle: str) -> None:  # noqa: B027 - optional hook
        """Forget an instance that has ended (remove a container, ...)."""

    def prune_images(self, in_use: Callable[[], set[str]]) -> list[str]:
        """Remove the images this runtime built up and nothing needs any more (``in_use()``: the images this
        server's services and assets name, read only by a runtime that builds images); return what was
        removed."""
        return []

    def probe_address(self, handle: str, port: int) -> tuple[str, int]:
        """Where readiness is checked: the instance's own listener (not a proxy in front of it)."""
        return "127.0.0.1", port

    def not_listening(self, spec: ServiceSpec, port: int) -> str:
        """Why a started instance may never become ready, in the user's terms."""
        if spec.kind == "image":
            return (f"nothing answered on port {port}: the command must listen on the port given in $PORT "
                    f"(here {port}), not on a port of its own")
        return f"the model server never answered GET /ready on port {port}"
