"""EAS request signatures as the eas-prediction SDK makes them, for tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from email.utils import formatdate


def http_date(offset_s: float = 0) -> str:
    return formatdate(time.time() + offset_s, usegmt=True)


def signed_headers(token: str, body: bytes, path: str, *, date: str | None = None,
                   content_type: str = "application/json", md5: str | None = None,
                   method: str = "POST") -> dict[str, str]:
    """``Authorization: EAS <base64 HMAC-SHA1>`` over method, body MD5, content type, Date and path."""
    date = http_date() if date is None else date
    md5 = md5 or hashlib.md5(body).hexdigest()
    text = f"{method}\n{md5}\n{content_type}\n{date}\n{path}"
    signature = base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha1).digest()).decode()
    return {"Authorization": f"EAS {signature}", "Date": date, "Content-Type": content_type, "Content-MD5": md5}
