"""Opening a client WebSocket: a TCP (or TLS) socket on gevent, then the HTTP/1.1 upgrade.

The upgrade is an HTTP exchange (request line, headers, a status and maybe a refusal body) that
the framing never sees again, and the socket opening is shared with the client's plain HTTP
matchmaking requests, so both live here rather than beside the frame code (connection.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.socket

from .connection import DEFAULT_MAX_SIZE, WebSocket, _timer
from .errors import HandshakeError, WebSocketTimeout

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HANDSHAKE = 64 * 1024


def open_socket(host: str, port: int, timeout: float | None, secure: bool = False,
                ssl_context: Any = None) -> gevent.socket.socket:
    """Connect a gevent TCP socket (TLS-wrapped when ``secure``).

    Uses gevent's socket and ssl modules explicitly so the client cooperates with other
    greenlets even where ``monkey.patch_all()`` was not applied. A given ``ssl_context`` must
    come from ``gevent.ssl`` (the stdlib one is that very class after monkey patching).
    """
    sock = gevent.socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
        if secure:
            # Imported late: importing ssl before monkey.patch_all() makes gevent warn (D6).
            from gevent import ssl as gevent_ssl

            context = ssl_context or gevent_ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def connect(url: str, *, timeout: float | None = 10.0, headers: dict[str, str] | None = None,
            max_size: int | None = DEFAULT_MAX_SIZE, ssl_context: Any = None) -> WebSocket:
    """Open a WebSocket to ``ws://`` or ``wss://`` ``url`` and return it once upgraded.

    ``timeout`` bounds TCP connect plus the HTTP upgrade; it does not apply to later reads.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL (ws:// or wss://): {url!r}")
    secure = scheme == "wss"
    host = parts.hostname
    if not host:
        raise ValueError(f"WebSocket URL has no host: {url!r}")
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        host_header += f":{port}"

    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {resource} HTTP/1.1",
        f"Host: {host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    timer = _timer(timeout)
    sock = None
    try:
        sock = open_socket(host, port, None, secure, ssl_context)
        sock.sendall(request)
        head, rest = _read_http_head(sock, url)
        status, reason, response_headers = _parse_http_head(head, url)
        if status != 101:
            body = _read_error_body(sock, rest, response_headers)
            raise HandshakeError(
                f"WebSocket upgrade of {url} refused: HTTP {status} {reason}"
                + (f": {body[:200].decode('utf-8', 'replace')}" if body else ""),
                status, body)
        expected = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
        if response_headers.get("upgrade", "").lower() != "websocket":
            raise HandshakeError(f"WebSocket upgrade of {url}: 101 without 'Upgrade: websocket'", status)
        if response_headers.get("sec-websocket-accept") != expected:
            raise HandshakeError(f"WebSocket upgrade of {url}: wrong Sec-WebSocket-Accept", status)
        ws = WebSocket(sock, rest, max_size=max_size, url=url, headers=response_headers)
        sock = None  # owned by ws now
        return ws
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        raise WebSocketTimeout(f"timed out after {timeout} s connecting WebSocket {url}") from None
    finally:
        timer.close()
        if sock is not None:
            sock.close()


def _read_http_head(sock: Any, url: str) -> tuple[bytes, bytes]:
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return data[:end], data[end + 4:]
        if len(data) > _MAX_HANDSHAKE:
            raise HandshakeError(f"WebSocket upgrade of {url}: response headers over {_MAX_HANDSHAKE} bytes")
        chunk = sock.recv(4096)
        if not chunk:
            raise HandshakeError(f"WebSocket upgrade of {url}: connection closed during the handshake")
        data += chunk


def _parse_http_head(head: bytes, url: str) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    try:
        _version, status, *reason = lines[0].split(" ", 2)
        code = int(status)
    except ValueError:
        raise HandshakeError(f"WebSocket upgrade of {url}: bad status line {lines[0]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return code, reason[0] if reason else "", headers


def _read_error_body(sock: Any, rest: bytes, headers: dict[str, str]) -> bytes:
    """Best effort: the body explains a refusal, but never wait long for it."""
    try:
        length = min(int(headers.get("content-length", "0")), 4096)
    except ValueError:
        length = 0
    with gevent.Timeout(1.0, False):
        while len(rest) < length:
            chunk = sock.recv(4096)
            if not chunk:
                break
            rest += chunk
    return rest[:length] if length else rest

