"""Credentials kept out of every message storage writes (git and object-store errors)."""

from __future__ import annotations

import urllib.parse

from airflow_eas.spec import redact_url


def scrub(text: str, secrets: list[str | None]) -> str:
    """``text`` without credentials: URL user-info and every given secret (also base64-encoded)."""
    text = redact_url(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
            text = text.replace(urllib.parse.quote(secret, safe=""), "***")
    return text

