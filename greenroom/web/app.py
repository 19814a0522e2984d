"""The WSGI application: matchmaking routes, room sockets, health. Usable alone or in front of
another WSGI app (Flask, Django) with ``Server.wsgi_middleware``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from ..errors import GreenroomError
from ..matchmaker import MatchMaker
from ..presence import PresenceUnavailable
from ..protocol.dialect import Dialect
from . import http
from .origins import OriginPolicy
from .socket import serve_ping_socket, serve_room_socket
from .websocket import WebSocket

log = logging.getLogger("greenroom.web")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# An extra HTTP route: (environ, the path after its prefix) -> response.
Route = Callable[[dict[str, Any], str], http.Response]
# Path segments an extra route may not claim: greenroom's own routes.
_OWN_SEGMENTS = {"health", "ready", "matchmake"}


def route_prefix(path: str, what: str) -> str:
    """``path`` normalised (``/ops/monitor``), or ValueError if it would shadow greenroom's routes."""
    segments = [s for s in path.split("/") if s]
    if not path.startswith("/") or not segments or segments[0] in _OWN_SEGMENTS \
            or "matchmake" in segments:
        raise ValueError(f"{what} path {path!r}: expected an absolute path of its own, such as "
                         f"/{what} (not /, /health, /ready or a matchmake path)")
    return "/" + "/".join(segments)


class GreenroomApp:
    """A WSGI callable. Routes on the last path segments, so any prefix works (``/game/matchmake/...``).

    With a ``fallback`` app, WebSocket upgrades that are not greenroom's (see ``_is_ours``) go to
    it, so a mounted app keeps its own sockets."""

    def __init__(self, matchmaker: MatchMaker, *, dialect: Dialect = Dialect.V3,
                 dialects: Mapping[str, Dialect] | None = None, fallback: WSGIApp | None = None,
                 health: Callable[[], dict[str, Any]] | None = None,
                 on_first_request: Callable[[], None] | None = None,
                 routes: Mapping[str, Route] | None = None, origins: OriginPolicy | None = None,
                 max_body_size: int = http.MAX_BODY) -> None:
        self.matchmaker = matchmaker
        self.dialect = dialect
        # Path prefix -> dialect, e.g. {"/v18": Dialect.V5}: one deployment serves both wires.
        self.dialects = {"/" + k.strip("/"): v for k, v in (dialects or {}).items()}
        self.fallback = fallback
        self.health = health
        self.matchmake = http.MatchmakeRoute(matchmaker, max_body_size)
        #: Browser origins allowed on room sockets and matchmaking (greenroom/web/origins.py).
        self.origins = origins or OriginPolicy()
        # Path prefix -> Route (readiness, monitor, metrics): plain HTTP only, never a socket.
        self.routes = {"/" + k.strip("/"): v for k, v in (routes or {}).items()}
        # Runs before requests until it succeeds once (joining the deployment needs Redis).
        self._on_first_request = on_first_request

    def dialect_for(self, prefix_segments: list[str]) -> Dialect:
        if self.dialects and prefix_segments:
            return self.dialects.get("/" + "/".join(prefix_segments), self.dialect)
        return self.dialect

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        segments = [s for s in path.split("/") if s]
        ws = environ.get("wsgi.websocket")
        if ws is not None and self.fallback is not None and not self._is_ours(environ, segments):
            return self.fallback(environ, start_response)  # the mounted app's own sockets
        unavailable = self._start()
        if unavailable is not None:
            if ws is not None:
                ws.close(1013, unavailable[:100])  # try again later
                return []
            return self._respond(environ, start_response, http.error_response(environ, 503, unavailable))
        if ws is not None:
            refused = self.origins.refused(environ)
            if refused is not None:  # a handler that did not ask refuse_upgrade first
                log.info("WebSocket %s from %s closed: Origin %r is not allowed "
                         "(GREENROOM_ALLOWED_ORIGINS)", path, _peer(environ), refused)
                ws.close(1008, "origin not allowed")  # policy violation
                return []
            return self._socket(environ, ws, segments)
        if len(segments) >= 3 and segments[-3] == "matchmake":
            refused = self.origins.refused(environ)
            if refused is not None:
                log.info("matchmake %s from %s refused: Origin %r is not allowed "
                         "(GREENROOM_ALLOWED_ORIGINS)", path, _peer(environ), refused)
                # No CORS headers: the browser keeps the answer from the page.
                return self._respond(environ, start_response, http.forbidden("origin not allowed"))
            if environ["REQUEST_METHOD"] == "OPTIONS":
                return self._respond(environ, start_response, http.preflight(environ))
            return self._respond(environ, start_response, self.matchmake(environ, segments[-2], segments[-1]))
        if segments == ["health"]:
            return self._respond(environ, start_response, self._health(environ))
        for prefix, route in self.routes.items():
            if path == prefix or path.startswith(prefix + "/"):
                return self._respond(environ, start_response, route(environ, path[len(prefix):]))
        if self.fallback is not None:
            return self.fallback(environ, start_response)
        if not segments and environ["REQUEST_METHOD"] in ("GET", "HEAD"):
            body = b"greenroom\n"
            return self._respond(environ, start_response, ("200 OK", [("Content-Type", "text/plain"),
                                                              ("Content-Length", str(len(body)))], body))
        if environ["REQUEST_METHOD"] == "OPTIONS":
            return self._respond(environ, start_response, http.preflight(environ))
        return self._respond(environ, start_response, http.error_response(environ, 404, f"no route for {path}"))

    def refuse_upgrade(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        """Asked by greenroom's handler before it answers a WebSocket upgrade (before the 101;
        a socket handed to a sibling worker is asked there): (status, reason) to refuse it.
        Sockets of a mounted app (see ``_is_ours``) are left to it."""
        if not self.origins.restricted:
            return None
        segments = [s for s in environ.get("PATH_INFO", "/").split("/") if s]
        if self.fallback is not None and not self._is_ours(environ, segments):
            return None
        refused = self.origins.refused(environ)
        if refused is None:
            return None
        return "403 Forbidden", f"Origin {refused!r} is not allowed (GREENROOM_ALLOWED_ORIGINS)"

    def _start(self) -> str | None:
        """Run the first-request hook until it succeeds; the reason while it fails."""
        starting = self._on_first_request
        if starting is None:
            return None
        try:
            starting()
        except (PresenceUnavailable, GreenroomError, OSError) as exc:
            log.warning("cannot join the deployment yet (%s); answering 503, retrying on the "
                        "next request", exc)
            return f"server starting: {exc}"
        self._on_first_request = None
        return None

    def _is_ours(self, environ: dict[str, Any], segments: list[str]) -> bool:
        """A WebSocket greenroom serves: a room socket (``/{processId}/{roomId}?sessionId=``)
        or the latency socket on the bare endpoint (``/``, or a dialect prefix)."""
        if len(segments) >= 2 and "sessionId" in parse_qs(environ.get("QUERY_STRING", "")):
            return True
        return not segments or "/" + "/".join(segments) in self.dialects

    def _socket(self, environ: dict[str, Any], ws: Any, segments: list[str]) -> list[bytes]:
        if not isinstance(ws, WebSocket):
            log.error("a WebSocket of class %s.%s reached greenroom, which needs its own (close "
                      "codes, size limits, send backlog): serve with greenroom.web.wsfixes.Handler "
                      "or the worker greenroom.gunicorn.Worker, or call "
                      "greenroom.web.wsfixes.apply(patch_stock_handler=True) before serving",
                      type(ws).__module__, type(ws).__name__)
            ws.close(1011, b"server misconfigured")
            return []
        if len(segments) < 2:
            serve_ping_socket(ws)
        else:
            serve_room_socket(self.matchmaker, environ, ws, segments[-1],
                              self.dialect_for(segments[:-2]), segments[-2])
        return []

    def _health(self, environ: dict[str, Any]) -> http.Response:
        # Liveness: 200 while the process answers, whatever its backends (that is /ready's job).
        return http.json_response(environ, 200, self.health() if self.health else {"status": "ok"})

    @staticmethod
    def _respond(environ: dict[str, Any], start_response: Callable[..., Any],
                 response: http.Response) -> list[bytes]:
        """Send ``response``; to a HEAD, its headers alone. pywsgi writes whatever body the app
        returns, and a body after a HEAD's headers is read by a keep-alive client as the start
        of its next response (found by tests/test_fuzz_http.py)."""
        status, headers, body = response
        start_response(status, headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _peer(environ: dict[str, Any]) -> str:
    return environ.get("REMOTE_ADDR") or "?"
