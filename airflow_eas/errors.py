"""One exception tree for the whole package.

Every error a user can meet is an :class:`EasError` carrying a one-line message and
the HTTP status it maps to. Lower layers (requests, httpx, sqlite, subprocess) are
translated into these at their boundary so no caller ever sees a foreign exception.

The retry policy lives on the type (as kopf's ``PermanentError``/``TemporaryError``):
``retryable`` is False for errors a retry cannot fix (a bad spec, a missing service, a
clash with the current state), which fail an Airflow task at once; the rest (the platform
unreachable, an internal error) are worth a retry.
"""

from __future__ import annotations


class EasError(Exception):
    """Base of every error raised by airflow-eas."""

    status: int = 500
    code: str = "InternalError"
    retryable: bool = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_response(cls, status: int, body: dict | None, fallback: str) -> EasError:
        """Rebuild the typed error that the server encoded in an HTTP error response."""
        body = body or {}
        message = str(body.get("message") or fallback)
        code = body.get("code")
        for kind in _ALL:
            if kind.code == code:
                return kind(message, status=status)
        kind = next((k for k in _ALL if k.status == status), EasError)
        return kind(message, status=status)


class InvalidSpec(EasError):
    """A service spec, plan or argument the user wrote is not valid."""

    status = 400
    code = "InvalidSpec"
    retryable = False


class Unauthorized(EasError):
    status = 401
    code = "Unauthorized"
    retryable = False


class NotFound(EasError):
    status = 404
    code = "NotFound"
    retryable = False


class Conflict(EasError):
    """The request clashes with the current state (name taken, group leased, ...)."""

    status = 409
    code = "Conflict"
    retryable = False


class PlatformUnavailable(EasError):
    """The platform could not be reached or did not answer in time."""

    status = 503
    code = "PlatformUnavailable"


class DeployFailed(EasError):
    """A service could not be brought up (image missing, instance crashing, ...)."""

    status = 422
    code = "DeployFailed"
    retryable = False


class RolloutAborted(EasError):
    """The platform took a rollout's group back (its lease lapsed, or its guard saw the candidate fail).

    The platform already moved all traffic to the stable member; the run must end failed and must
    not change the group any more (another rollout may hold it by now).
    """

    status = 410
    code = "RolloutAborted"
    retryable = False


class BadRequest(EasError):
    """A request body the model cannot answer (the model server answers 400)."""

    status = 400
    code = "BadRequest"
    retryable = False


class PayloadTooLarge(EasError):
    """A request body over the platform's limit."""

    status = 413
    code = "PayloadTooLarge"
    retryable = False


class InsufficientStorage(EasError):
    """The server's disk is full: nothing was written; retry once space is freed."""

    status = 507
    code = "InsufficientStorage"


class StartupError(EasError):
    """Why a model-server instance cannot become ready; its message is the one line on stderr."""

    code = "StartupError"
    retryable = False

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_ALL: tuple[type[EasError], ...] = (
    InvalidSpec,
    PayloadTooLarge,
    InsufficientStorage,
    Unauthorized,
    NotFound,
    Conflict,
    PlatformUnavailable,
    DeployFailed,
    RolloutAborted,
)
