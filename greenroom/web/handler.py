"""The pywsgi handler that performs the WebSocket handshake and runs room sockets.

gevent-websocket's WebSocketHandler with the handshake, Unix-socket and error-path fixes. It is
also where a room socket that belongs to a sibling worker leaves this process: before the 101
is sent, ``server.handoff`` (set by a cluster worker) may take the connection (see
:mod:`greenroom.web.handoff`).

When the app returns, the handler closes with 1000 if the app did not (1011 if it raised, 1001
on server shutdown) and waits up to ``close_timeout`` for the peer's close frame.

A request's head must arrive within the server's ``header_timeout`` (greenroom/web/limits.py),
or the connection is closed: a slowloris cannot hold it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gevent.pywsgi import WSGIHandler
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.handler import Client, WebSocketHandler
from geventwebsocket.websocket import Stream

from .websocket import WebSocket

__all__ = ["Handler"]

# The logger keeps the name it had before the module was split: logging configs refer to it.
log = logging.getLogger("greenroom.web.wsfixes")


def _http_at_least_1_1(version: str | None) -> bool:
    if not version or not version.startswith("HTTP/"):
        return False
    try:
        major, minor = (int(part) for part in version[5:].split(".", 1))
    except ValueError:
        return False
    return (major, minor) >= (1, 1)


def _valid_key(key: str) -> bool:
    # RFC 6455 4.2.1: base64 of 16 bytes, hence exactly 24 characters. binascii.Error is what made
    # the base class answer 500 (it caught TypeError).
    if len(key) != 24:
        return False
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (ValueError, binascii.Error):
        return False


def _accept_token(key: str) -> str:
    digest = hashlib.sha1((key + WebSocketHandler.GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _header_tokens(value: str) -> list[str]:
    return [token.strip() for token in value.split(",") if token.strip()]


def _ignore_start_response(
    status: str, headers: list[Any], exc_info: Any = None
) -> Callable[..., None]:
    return lambda data: None


class Handler(WebSocketHandler):
    """WebSocketHandler with the handshake, Unix-socket and error-path fixes.

    Use it as ``WSGIServer(listener, app, handler_class=Handler)``; the gunicorn worker in
    ``greenroom.web.gunicorn_worker`` uses a subclass.
    """

    #: Only RFC 6455; hybi drafts 7/8 are not spoken by any client we support.
    SUPPORTED_VERSIONS = ("13",)
    #: The socket class built for each upgrade.
    websocket_class: type[WebSocket] = WebSocket
    #: If set, copied onto each connection's ``max_message_size``.
    max_message_size: int | None = None
    #: This connection was sent to a sibling worker (see greenroom.web.handoff): it is not ours.
    handed_off = False
    #: This connection was received from a sibling worker: it is never handed on again.
    handed_in = False

    def handle(self) -> None:
        """Serve the connection with Nagle's algorithm off (TCP_NODELAY), as Node does.

        pywsgi writes a response's headers and its body with two sends. With Nagle on, the body
        of every keep-alive request after the first waits for the client's delayed ACK (~40 ms
        on Linux): measured, a matchmake took 43 ms instead of 1 ms (benchmarks/, joins).
        """
        sock = self.socket
        if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # the peer is already gone; handle() finds out by itself
                pass
        super().handle()

    #: Requests whose head was read on this connection (a keep-alive one serves several).
    heads_read = 0

    def handle_one_request(self) -> Any:
        """pywsgi's, with a deadline (``server.header_timeout``) on reading the request head.

        The deadline ends in ``read_request``, once the head is in: the app, a room socket
        included, runs without it. A connection that misses it is closed with one log line; a
        keep-alive connection idle between requests is only noted at debug level."""
        timeout = getattr(self.server, "header_timeout", None)
        if not timeout:
            return super().handle_one_request()
        timer = self._head_timer = gevent.Timeout.start_new(timeout)
        try:
            return super().handle_one_request()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            (log.debug if self.heads_read else log.info)(
                "connection from %s: no complete request head within %g s (header_timeout); "
                "closed", self._peer(), timeout)
            self.close_connection = True
            return None
        finally:
            timer.close()

    def read_request(self, raw_requestline: str) -> Any:
        try:
            return super().read_request(raw_requestline)
        finally:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.close()  # the head is in (or refused): the rest has no such deadline
            self.heads_read += 1

    def get_environ(self) -> dict[str, Any]:
        """pywsgi's, plus ``greenroom.body_timeout``: how long greenroom's routes wait for a
        request body (the header timeout again), so that a body sent a byte at a time cannot
        hold the connection either (greenroom/web/http.py, ``read_json_object``)."""
        environ = super().get_environ()
        timeout = getattr(self.server, "header_timeout", None)
        if timeout:
            environ["greenroom.body_timeout"] = timeout
        return environ

    def _peer(self) -> str:
        address = self.client_address
        if isinstance(address, tuple) and len(address) >= 2:
            return f"{address[0]}:{address[1]}"
        return str(address or "unix socket")

    def log_request(self) -> None:
        """An access-log line goes to the server's access log (``WSGIServer(log=...)``, which
        ``Server.listen(log_requests=True)`` sets), so there is none unless one was asked for.
        The base class wrote every request at INFO to its own logger whatever the server was
        given: at ``greenroom serve``'s default level that was 10% of a join's CPU. Upgrades
        (101) are left out, as the base class did."""
        if "101" not in str(self.status) and not self.handed_off:
            WSGIHandler.log_request(self)

    @property
    def logger(self) -> logging.Logger:
        """The base class replaced the handlers and the class of the "geventwebsocket.handler"
        logger for each server; a plain module logger leaves logging configuration to the app."""
        return log

    def run_application(self) -> Any:
        """As the base class, but decides on ``self.websocket`` of *this* request (the base class
        used ``hasattr``, which a previous request on the connection could satisfy).

        In a cluster, ``server.handoff`` first gets the chance to send a room socket of a
        sibling worker to it, before anything is answered."""
        handoff = getattr(self.server, "handoff", None)
        if handoff is not None and handoff.take(self):
            return None
        hook = getattr(self.server, "pre_start_hook", None)
        if hook and hook(self):
            return super(WebSocketHandler, self).run_application()
        self.websocket = None
        self.result = self.upgrade_websocket()
        if self.websocket is not None:
            if self.status and not self.headers_sent:
                self.write(b"")
            self.run_websocket()
            return None
        if self.status:
            if not self.result:
                self.result = []
            self.process_result()
            return None
        self.result = None
        return super(WebSocketHandler, self).run_application()

    def _reject(
        self, status: str, reason: str, headers: Iterable[tuple[str, str]] = ()
    ) -> list[bytes]:
        """A complete, short plain-text answer; the base class passed str bodies that pywsgi
        cannot send (the client got headers and a Content-Length, then nothing)."""
        self.logger.info("WebSocket handshake refused (%s): %s", status, reason)
        body = reason.encode("ascii", "replace")
        self.start_response(
            status,
            [("Content-Type", "text/plain"), ("Connection", "close"), *headers],
        )
        return [body]

    def upgrade_websocket(self) -> list[bytes] | None:
        """Returns None for requests that are not WebSocket upgrades (the app handles them), a
        body after start_response for a refused handshake, and sets ``self.websocket`` on success."""
        environ = self.environ
        if environ.get("REQUEST_METHOD", "") != "GET":
            return None
        if environ.get("HTTP_UPGRADE", "").strip().lower() != "websocket":
            return None
        if "upgrade" not in _header_tokens(environ.get("HTTP_CONNECTION", "").lower()):
            return None
        if not _http_at_least_1_1(self.request_version):
            # The base class answered "402 Bad Request" with a body it could not send.
            return self._reject("400 Bad Request", "WebSocket upgrade requires HTTP/1.1")
        # The application may refuse the upgrade before it is answered (greenroom's: an Origin
        # its allow-list does not hold, greenroom/web/origins.py), as it does ``app_protocol``.
        refuse = getattr(self.application, "refuse_upgrade", None)
        refused = refuse(environ) if refuse is not None else None
        if refused:
            return self._reject(*refused)
        return self.upgrade_connection()

    def upgrade_connection(self) -> list[bytes] | None:
        """Validate version and key, then answer 101 and build the (fixed) socket."""
        environ = self.environ
        version = environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip()
        if version not in self.SUPPORTED_VERSIONS:
            return self._reject(
                "426 Upgrade Required",
                "Unsupported or missing Sec-WebSocket-Version",
                [("Sec-WebSocket-Version", ", ".join(self.SUPPORTED_VERSIONS))],
            )
        key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        if not key:
            return self._reject("400 Bad Request", "Missing Sec-WebSocket-Key")
        if not _valid_key(key):
            return self._reject("400 Bad Request", "Invalid Sec-WebSocket-Key")

        protocol = None
        app_protocol = getattr(self.application, "app_protocol", None)
        if app_protocol is not None:
            allowed = app_protocol(environ["PATH_INFO"])
            # Token match: the base class matched substrings of the header.
            if allowed and allowed in _header_tokens(
                environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "")
            ):
                protocol = allowed

        ws = self.websocket_class(environ, Stream(self), self)
        if self.max_message_size is not None:
            ws.max_message_size = self.max_message_size
        self.websocket = ws
        environ.update({"wsgi.websocket_version": version, "wsgi.websocket": ws})
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", _accept_token(key)),
        ]
        if protocol:
            headers.append(("Sec-WebSocket-Protocol", protocol))
        self.start_response("101 Switching Protocols", headers)
        return None

    def _client_key(self) -> Any:
        # Every AF_UNIX peer has the address '': keyed by address alone, the second connection to
        # end raised KeyError: '' and was reported as a server error.
        address = self.client_address
        if isinstance(address, tuple) and address:
            return address
        return (address or "unix", id(self))

    @property
    def active_client(self) -> Client:
        return self.server.clients[self._client_key()]

    def run_websocket(self) -> None:
        """Run the app on the upgraded connection and always end it cleanly.

        The peer going away while the app sends or receives is not a server error: it is logged
        at debug level instead of as a traceback. An app crash closes with 1011, a server
        shutdown (GreenletExit) with 1001; the exception then goes to pywsgi's handle_error,
        which logs it and, the 101 being sent, writes nothing more on the socket.
        """
        if getattr(self, "prevent_wsgi_call", False):
            return
        ws = self.websocket
        clients = getattr(self.server, "clients", None)
        if clients is None:
            clients = self.server.clients = {}
        key = self._client_key()
        clients[key] = Client(self.client_address, ws)
        code, linger = 1000, True
        try:
            result = self.application(self.environ, _ignore_start_response)
            try:
                for _ in result or ():
                    pass
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except WebSocketError as exc:
            self.logger.debug("WebSocket %s ended: %s", self.environ.get("PATH_INFO"), exc)
        except Exception:
            code, linger = 1011, False
            raise
        except BaseException:  # GreenletExit when the server stops, KeyboardInterrupt...
            code, linger = 1001, False
            raise
        finally:
            clients.pop(key, None)
            try:
                ws._finish(code, linger)
            finally:
                self.environ.update({"wsgi.websocket": None})
                self.websocket = None

