"""The WSGI application: matchmaking routes, room sockets, health. Usable alone or in front of
another WSGI app (Flask, Django) with ``Server.wsgi_middleware``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..matchmaker import MatchMaker
from ..protocol.dialect import Dialect
from . import http
from .socket import serve_ping_socket, serve_room_socket

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
    """A WSGI callable. Routes on the last path segments, so any prefix works (``/game/matchmake/...``)."""

    def __init__(self, matchmaker: MatchMaker, *, dialect: Dialect = Dialect.V3,
                 dialects: Mapping[str, Dialect] | None = None, fallback: WSGIApp | None = None,
                 health: Callable[[], dict[str, Any]] | None = None,
                 on_first_request: Callable[[], None] | None = None,
                 routes: Mapping[str, Route] | None = None) -> None:
        self.matchmaker = matchmaker
        self.dialect = dialect
        # Path prefix -> dialect, e.g. {"/v18": Dialect.V5}: one deployment serves both wires.
        self.dialects = {"/" + k.strip("/"): v for k, v in (dialects or {}).items()}
        self.fallback = fallback
        self.health = health
        self.matchmake = http.MatchmakeRoute(matchmaker)
        # Path prefix -> Route (readiness, monitor, metrics): plain HTTP only, never a socket.
        self.routes = {"/" + k.strip("/"): v for k, v in (routes or {}).items()}
        self._on_first_request = on_first_request

    def dialect_for(self, prefix_segments: list[str]) -> Dialect:
        if self.dialects and prefix_segments:
            return self.dialects.get("/" + "/".join(prefix_segments), self.dialect)
        return self.dialect

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._on_first_request is not None:
            starting, self._on_first_request = self._on_first_request, None
            starting()
        path = environ.get("PATH_INFO", "/")
        segments = [s for s in path.split("/") if s]
        ws = environ.get("wsgi.websocket")
        if ws is not None:
            return self._socket(environ, ws, segments)
        if len(segments) >= 3 and segments[-3] == "matchmake":
            if environ["REQUEST_METHOD"] == "OPTIONS":
                return self._respond(start_response, http.preflight(environ))
            return self._respond(start_response, self.matchmake(environ, segments[-2], segments[-1]))
        if segments == ["health"]:
            return self._respond(start_response, self._health(environ))
        for prefix, route in self.routes.items():
            if path == prefix or path.startswith(prefix + "/"):
                return self._respond(start_response, route(environ, path[len(prefix):]))
        if self.fallback is not None:
            return self.fallback(environ, start_response)
        if not segments and environ["REQUEST_METHOD"] in ("GET", "HEAD"):
            body = b"greenroom\n"
            return self._respond(start_response, ("200 OK", [("Content-Type", "text/plain"),
                                                              ("Content-Length", str(len(body)))], body))
        if environ["REQUEST_METHOD"] == "OPTIONS":
            return self._respond(start_response, http.preflight(environ))
        return self._respond(start_response, http.error_response(environ, 404, f"no route for {path}"))

    def _socket(self, environ: dict[str, Any], ws: Any, segments: list[str]) -> list[bytes]:
        if len(segments) < 2:
            serve_ping_socket(ws)
        else:
            serve_room_socket(self.matchmaker, environ, ws, segments[-1], self.dialect_for(segments[:-2]))
        return []

    def _health(self, environ: dict[str, Any]) -> http.Response:
        # Liveness: 200 while the process answers, whatever its backends (that is /ready's job).
        return http.json_response(environ, 200, self.health() if self.health else {"status": "ok"})

    @staticmethod
    def _respond(start_response: Callable[..., Any], response: http.Response) -> list[bytes]:
        status, headers, body = response
        start_response(status, headers)
        return [body]
