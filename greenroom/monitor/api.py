"""The monitor's HTTP side: its static page and a small JSON API, behind a token.

Credentials: ``Authorization: Bearer TOKEN`` (scripts) or HTTP Basic with TOKEN as the
password and any user name (the browser asks for it and then sends it with every request).
Responses never carry CORS headers, so no other site can read them with a visitor's
credentials; actions are POSTs with a JSON body, which a cross-site form cannot send.
Files are served from a fixed list inside the package, never from a path the request names.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

from ..in_room import RoomUnavailable
from ..web import credentials
from ..web.http import Response, read_json_object, status_line
from .deployment import Deployment, OwnerUnreachable
from .rooms import BadRequest, RoomNotFound

log = logging.getLogger("greenroom.monitor")

MAX_ROOMS = 1000  # rooms per listing request: a page never asks the driver for everything

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/monitor.js": ("monitor.js", "text/javascript; charset=utf-8"),
    "/monitor.css": ("monitor.css", "text/css; charset=utf-8"),
}

SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
     "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
]

_ERRORS: tuple[tuple[type[Exception], int], ...] = (
    (RoomNotFound, 404), (BadRequest, 400), (RoomUnavailable, 504), (OwnerUnreachable, 502))


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MonitorAPI:
    """A greenroom Route: ``(environ, path below the monitor's prefix) -> response``."""

    def __init__(self, deployment: Deployment, token: str) -> None:
        self.deployment = deployment
        self._token = token.encode()
        self._files: dict[str, bytes] = {}

    def __call__(self, environ: dict[str, Any], rest: str) -> Response:
        if not rest:  # the page's relative URLs need the trailing slash
            location = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "") + "/"
            return "308 Permanent Redirect", [("Location", location), ("Content-Length", "0"),
                                               *SECURITY_HEADERS], b""
        if not self._authorized(environ):
            return _json(401, {"error": "the monitor needs its token (Bearer, or Basic password)"},
                         [("WWW-Authenticate", credentials.CHALLENGE.format(realm="greenroom monitor"))])
        method = environ["REQUEST_METHOD"]
        try:
            if rest in STATIC:
                if method not in ("GET", "HEAD"):
                    raise HTTPError(405, f"{method} not allowed here")
                return self._static(*STATIC[rest])
            if rest.startswith("/api/"):
                return _json(200, self._api(environ, method, rest[5:].strip("/").split("/")))
            raise HTTPError(404, f"no monitor route {rest}")
        except HTTPError as exc:
            return _json(exc.status, {"error": str(exc)})
        except Exception as exc:  # the known failures of a room, its owner or a request
            for kind, status in _ERRORS:
                if isinstance(exc, kind):
                    return _json(status, {"error": str(exc)})
            raise

    # -- API -------------------------------------------------------------------------------
    def _api(self, environ: dict[str, Any], method: str, parts: list[str]) -> Any:
        match (method, parts):
            case ("GET", ["rooms"]):
                query = _query(environ)
                return self.deployment.rooms(query.get("name") or None, _limit(query.get("limit")))
            case ("GET", ["rooms", room_id]):
                return self.deployment.room(room_id)
            case ("POST", ["rooms", room_id, "dispose"]):
                _body(environ)
                self.deployment.dispose(room_id)
                self._log(environ, "disposed room %s", room_id)
                return {"ok": True}
            case ("POST", ["rooms", room_id, "clients", session_id, "kick"]):
                code = _body(environ).get("code", 4000)
                self.deployment.kick(room_id, session_id, code)
                self._log(environ, "kicked client %s of room %s (close %s)", session_id, room_id, code)
                return {"ok": True}
            case ("POST", ["rooms", room_id, "message"]):
                body = _body(environ)
                if "type" not in body:
                    raise HTTPError(400, 'a message needs a "type"')
                session_id = body.get("sessionId") or None
                sent = self.deployment.send(room_id, body["type"], body.get("message"), session_id)
                self._log(environ, "sent %r to %s of room %s", body["type"], session_id or "all",
                          room_id)
                return {"ok": True, "clients": sent}
            case (_, ["rooms", *_]):
                raise HTTPError(405 if method not in ("GET", "POST") else 404,
                                f"no monitor API {method} /{'/'.join(parts)}")
        raise HTTPError(404, f"no monitor API /{'/'.join(parts)}")

    def _log(self, environ: dict[str, Any], text: str, *args: Any) -> None:
        log.info("monitor: " + text + " (request from %s)", *args, environ.get("REMOTE_ADDR", "?"))

    # -- auth and files --------------------------------------------------------------------
    def _authorized(self, environ: dict[str, Any]) -> bool:
        return credentials.authorized(environ, self._token, "monitor")

    def _static(self, name: str, content_type: str) -> Response:
        body = self._files.get(name)
        if body is None:
            body = self._files[name] = (resources.files(__package__) / "static" / name).read_bytes()
        return status_line(200), [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                  *SECURITY_HEADERS], body


def _json(status: int, body: Any, extra: list[tuple[str, str]] | None = None) -> Response:
    data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return status_line(status), [("Content-Type", "application/json"),
                                 ("Content-Length", str(len(data))), *SECURITY_HEADERS,
                                 *(extra or [])], data


def _query(environ: dict[str, Any]) -> dict[str, str]:
    from urllib.parse import parse_qs

    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _limit(raw: str | None) -> int:
    if not raw:
        return MAX_ROOMS
    try:
        limit = int(raw)
    except ValueError:
        raise HTTPError(400, f"limit={raw!r} is not a number") from None
    return max(1, min(limit, MAX_ROOMS))


def _body(environ: dict[str, Any]) -> dict[str, Any]:
    """The JSON object of a POST; its Content-Type must say JSON (no cross-site form can)."""
    if not environ.get("CONTENT_TYPE", "").startswith("application/json"):
        raise HTTPError(415, "monitor actions take a JSON body (Content-Type: application/json)")
    body = read_json_object(environ, "the body must be a JSON object")
    if isinstance(body, tuple):
        raise HTTPError(*body)
    return body
