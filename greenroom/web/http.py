"""The matchmaking HTTP API (docs/protocol.md, "Matchmaking"): POST /matchmake/{method}/{name or roomId}.

Errors are always non-2xx with ``{"code", "error"}`` (a 200 error body breaks the 0.17/0.18
clients); the status is the error code itself, as the 0.18 reference does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import gevent

from ..errors import GreenroomError
from ..matchmaker import MatchMaker
from ..metrics import record
from ..protocol.codes import ErrorCode
from ..protocol.depth import MAX_DEPTH, within_depth
from ..settings import MAX_BODY_SIZE
from .request import RequestInfo

log = logging.getLogger("greenroom.http")

#: The default bound on a request body (``GREENROOM_MAX_BODY_SIZE``; over it: 413).
MAX_BODY = MAX_BODY_SIZE

CORS_HEADERS = [
    ("Access-Control-Allow-Credentials", "true"),
    ("Access-Control-Allow-Headers", "Origin, X-Requested-With, Content-Type, Accept, Authorization"),
    ("Access-Control-Allow-Methods", "GET,HEAD,PUT,PATCH,POST,DELETE"),
    ("Access-Control-Max-Age", "2592000"),
]

_REASONS = {
    520: "Matchmaking Error", 521: "Invalid Criteria", 522: "Invalid Room Id", 523: "Unhandled",
    524: "Expired", 525: "Auth Failed", 526: "Application Error",
}

Response = tuple[str, list[tuple[str, str]], bytes]


def status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} {_REASONS.get(code, 'Error')}"


def cors_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    # Credentialed requests reject "*": echo the Origin, as the 0.18 reference does.
    origin = environ.get("HTTP_ORIGIN") or "*"
    headers = [("Access-Control-Allow-Origin", origin), *CORS_HEADERS]
    if origin != "*":
        headers.append(("Vary", "Origin"))
    return headers


def json_response(environ: dict[str, Any], code: int, body: Any) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
               *cors_headers(environ)]
    if environ.get("greenroom.close_connection"):  # a body abandoned halfway (_read_body)
        headers.append(("Connection", "close"))
    return status_line(code), headers, data


def error_response(environ: dict[str, Any], code: int, message: str) -> Response:
    return json_response(environ, code, {"code": code, "error": message})


def forbidden(message: str) -> Response:
    """403 without CORS headers: a browser then hides the answer from the page that asked."""
    data = json.dumps({"code": 403, "error": message}, separators=(",", ":")).encode()
    return status_line(403), [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))], data


def preflight(environ: dict[str, Any]) -> Response:
    return status_line(204), [("Content-Length", "0"), *cors_headers(environ)], b""


class MatchmakeRoute:
    """Turns one HTTP request into one matchmaker call. The request (its headers, the client's
    Bearer token) goes with it, for the room class's on_auth_request (greenroom/auth.py)."""

    def __init__(self, matchmaker: MatchMaker, max_body_size: int = MAX_BODY) -> None:
        self.matchmaker = matchmaker
        self.max_body_size = max_body_size
        self.methods: dict[str, Callable[..., Any]] = {
            "joinOrCreate": matchmaker.join_or_create,
            "create": matchmaker.create,
            "join": matchmaker.join,
            "joinById": matchmaker.join_by_id,
            "reconnect": lambda room_id, body, request: matchmaker.reconnect(
                room_id, body.get("reconnectionToken")),
        }

    def __call__(self, environ: dict[str, Any], method: str, target: str) -> Response:
        if environ["REQUEST_METHOD"] != "POST":
            return error_response(environ, 405, "matchmaking requests must be POST")
        handler = self.methods.get(method)
        if handler is None:
            return self._fail(environ, "invalid", target, ErrorCode.MATCHMAKE_NO_HANDLER,
                              f'invalid method "{method}"')
        body = self._read_json(environ)
        if isinstance(body, tuple):
            return self._fail(environ, method, target, *body)
        started = time.perf_counter()
        try:
            seat = handler(target, body, request=RequestInfo.from_environ(environ))
        except GreenroomError as exc:
            return self._fail(environ, method, target, exc.code, exc.message, started)
        except Exception:
            log.exception("matchmake %s/%s: unhandled error", method, target)
            self._count_failure(method, ErrorCode.MATCHMAKE_UNHANDLED, started)
            return error_response(environ, ErrorCode.MATCHMAKE_UNHANDLED, "internal matchmaking error")
        recorder = record.active
        recorder.matchmaking(method, time.perf_counter() - started)
        recorder.joined(seat.name)
        return json_response(environ, 200, seat.to_json())

    def _fail(self, environ: dict[str, Any], method: str, target: str, code: int, message: str,
              started: float | None = None) -> Response:
        log.info("matchmake %s/%s from %s -> %d %s", method, target,
                 environ.get("REMOTE_ADDR", "?"), code, message)
        self._count_failure(method, code, started)
        return error_response(environ, code, message)

    @staticmethod
    def _count_failure(method: str, code: int, started: float | None) -> None:
        """A refusal, by method and code (``invalid`` for an unknown method: the label stays
        bounded whatever clients send); timed when the matchmaker was asked."""
        recorder = record.active
        if started is not None:
            recorder.matchmaking(method, time.perf_counter() - started)
        recorder.join_failed(method, code)

    def _read_json(self, environ: dict[str, Any]) -> dict[str, Any] | tuple[int, str]:
        return read_json_object(environ, "join options must be a JSON object", self.max_body_size)


class _BodyTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


def _read_body(environ: dict[str, Any], length: int) -> bytes:
    """``length`` bytes of body, within ``greenroom.body_timeout`` when the handler set one.

    A body that misses it is abandoned: pywsgi is told there is nothing left to discard (it
    would wait for the rest as long as the peer likes) and the answer closes the connection,
    whose stream is no longer at a request boundary."""
    stream = environ["wsgi.input"]
    if not length:
        return b""
    seconds = environ.get("greenroom.body_timeout")
    if not seconds:
        return stream.read(length)
    timer = gevent.Timeout.start_new(seconds)
    try:
        return stream.read(length)
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        _abandon_body(environ)
        raise _BodyTimeout(seconds) from None
    finally:
        timer.close()


def _abandon_body(environ: dict[str, Any]) -> None:
    """Leave the rest of the body unread and close the connection after the answer: pywsgi would
    otherwise read (and discard) all of it first, as long and as slowly as the peer likes."""
    stream = environ["wsgi.input"]
    if hasattr(stream, "content_length") and hasattr(stream, "position"):
        stream.content_length = stream.position  # pywsgi's Input: nothing left to discard
    environ["greenroom.close_connection"] = True


def read_json_object(environ: dict[str, Any], not_an_object: str,
                     max_body_size: int = MAX_BODY) -> dict[str, Any] | tuple[int, str]:
    """The request's JSON object body ({} when empty), or (status, why) when it is not one.
    A body announced over ``max_body_size`` bytes is refused (413) before a byte of it is read."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 400, "malformed request body"
    if length > max_body_size:
        _abandon_body(environ)
        return 413, f"request body over {max_body_size} bytes"
    try:
        raw = _read_body(environ, length)
    except OSError:  # pywsgi: the peer closed before sending the Content-Length it announced
        return 400, "request body shorter than its Content-Length"
    except _BodyTimeout as timeout:
        return 408, f"request body not received within {timeout.seconds:g} s"
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return 400, "malformed request body"
    except RecursionError:  # json's C scanner gives up near the interpreter's recursion limit
        return 400, f"request body nests deeper than {MAX_DEPTH} levels"
    if not within_depth(body):
        return 400, f"request body nests deeper than {MAX_DEPTH} levels"
    if not isinstance(body, dict):
        return 400, not_an_object
    return body
