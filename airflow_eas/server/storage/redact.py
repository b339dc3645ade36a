"""Credentials kept out of every message storage writes (git and object-store errors)."""

from __future__ import annotations

import re
import urllib.parse


def scrub(text: str, secrets: list[str | None]) -> str:
    """``text`` without credentials: URL user-info and every given secret (also base64-encoded)."""
    text = re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
            text = text.replace(urllib.parse.quote(secret, safe=""), "***")
    return text

