"""Console sign-in: the admin token once, then a signed session cookie and a CSRF token.

The cookie (HttpOnly, SameSite=Strict, ``Path=/console``) carries a random session id
signed with a secret kept in the data dir (``console_secret``, 0600), so sessions outlive
a server restart but not a new secret. Every state-changing request also carries the
session's CSRF token (a hidden form field or the ``X-CSRF-Token`` header): SameSite
already keeps other sites' forms out, the token keeps out anything that slips past it.
Signing out revokes the session id on the server, not just in the browser.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "eas_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class Session:
    sid: str
    csrf: str


class Sessions:
    """Issues, reads and revokes console sessions."""

    def __init__(self, data_dir: Path, admin_token: str) -> None:
        self._secret = _secret(data_dir / "console_secret")
        # the admin token is part of the key: a new admin token signs everyone out
        key = hmac.new(self._secret, admin_token.encode(), hashlib.sha256).hexdigest()
        self._signer = URLSafeTimedSerializer(key, salt="eas-console-session")
        self._csrf_key = hashlib.sha256(b"csrf:" + key.encode()).digest()
        self._admin_token = admin_token
        self._revoked: dict[str, float] = {}  # sid -> when its cookie would have expired
        self._lock = threading.Lock()

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.strip().encode(), self._admin_token.encode())

    def open(self, response: Response, secure: bool) -> Session:
        session = self._session(secrets.token_urlsafe(24))
        response.set_cookie(COOKIE, self._signer.dumps(session.sid), max_age=MAX_AGE, path="/console",
                            httponly=True, samesite="strict", secure=secure)
        return session

    def close(self, request: Request, response: Response) -> None:
        session = self.of(request)
        if session is not None:
            with self._lock:
                now = time.time()
                self._revoked = {s: t for s, t in self._revoked.items() if t > now}
                self._revoked[session.sid] = now + MAX_AGE
        response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")

    def of(self, request: Request) -> Session | None:
        """The request's session, or None (no cookie, a forged or expired one, or signed out)."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            sid = self._signer.loads(raw, max_age=MAX_AGE)
        except BadSignature:
            return None
        with self._lock:
            if sid in self._revoked:
                return None
        return self._session(sid)

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), session.csrf.encode())  # type: ignore[union-attr]

    def _session(self, sid: str) -> Session:
        return Session(sid, hmac.new(self._csrf_key, sid.encode(), hashlib.sha256).hexdigest())


def _secret(path: Path) -> bytes:
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    secret = secrets.token_bytes(32)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(secret.hex() + "\n")
    return secret
