"""What a room sees of the HTTP request that opened a client's socket (``on_auth``'s ``request``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


@dataclass(slots=True)
class RequestInfo:
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    ip: str = ""

    @property
    def token(self) -> str | None:
        """The client's auth token: ``_authToken`` in the URL (WebSocket) or a Bearer header."""
        token = self.query.get("_authToken")
        if token:
            return token
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> RequestInfo:
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if "CONTENT_TYPE" in environ:
            headers["content-type"] = environ["CONTENT_TYPE"]
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        forwarded = headers.get("x-forwarded-for", "")
        ip = forwarded.split(",")[0].strip() if forwarded else environ.get("REMOTE_ADDR", "") or ""
        return cls(environ.get("PATH_INFO", "/"), headers, query, ip)
