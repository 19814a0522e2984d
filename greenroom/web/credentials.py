"""The token an operator route (the monitor, /metrics) asks for, and how a request presents it.

``Authorization: Bearer TOKEN`` (scripts, Prometheus' ``authorization``) or HTTP Basic with the
token as the password and any user name (a browser asks for it once; Prometheus'
``basic_auth``). Compared in constant time; a wrong token is one log line, a missing one none
(every browser's first request has none).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from typing import Any

log = logging.getLogger("greenroom.web")

CHALLENGE = 'Basic realm="{realm}", charset="UTF-8"'


def check_token(token: Any, what: str) -> None:
    """Refuse a token too short to be a secret (ValueError naming ``what``)."""
    if not isinstance(token, str) or len(token) < 8:
        raise ValueError(f"the {what} token must be a string of at least 8 characters")


def presented(environ: dict[str, Any]) -> bytes | None:
    """The token the request carries (Bearer, or Basic's password), None without one."""
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip().encode()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            return b""
    return None


def authorized(environ: dict[str, Any], token: bytes, what: str) -> bool:
    """True when the request presents ``token``; a wrong one is logged once, with its address."""
    given = presented(environ)
    if given is None:
        return False
    if hmac.compare_digest(given, token):
        return True
    log.warning("%s: wrong token from %s for %s", what, environ.get("REMOTE_ADDR", "?"),
                environ.get("PATH_INFO"))
    return False
