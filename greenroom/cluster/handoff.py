"""The hand-off channel between the processes of one host: a file descriptor and a few bytes.

Each worker listens on a ``SOCK_SEQPACKET`` Unix socket at ``{run_dir}/{processId}.sock``.
SEQPACKET keeps message boundaries (one message, one hand-off: no framing to get wrong) and is
connection-oriented, so a sender learns at ``connect`` that an endpoint is gone
(``FileNotFoundError``, ``ConnectionRefusedError``) instead of writing into the void.

Message layout (all integers big-endian)::

    offset 0  kind     1 byte   b"C": a client connection (one fd rides along, SCM_RIGHTS)
                                b"X": a process of this cluster exited (no fd)
    offset 1  version  1 byte   1
    offset 2  n        2 bytes  length of the peer address that follows
    offset 4  sent_at  8 bytes  the sender's time.monotonic() (a double; one clock per host)
    offset 12 address  n bytes  JSON: ["host", port] for TCP, "" for a Unix socket peer
    12 + n    body              C: the bytes already read from the connection (the request
                                   head, and anything the client sent after it), to be replayed
                                X: the processId that exited, ASCII

This module is plain Python: it works on whatever ``socket`` module is loaded, so it is
cooperative in a gevent worker (monkey-patched) and blocking in the master. The loops that
serve an endpoint belong to the worker (``greenroom.web.handoff``).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONNECTION",
    "EXITED",
    "MAX_MESSAGE",
    "Endpoint",
    "EndpointGone",
    "Message",
    "Sender",
    "decode",
    "encode",
]

CONNECTION = b"C"
EXITED = b"X"
VERSION = 1
_HEAD = struct.Struct("!ccHd")
#: Largest message: a request head past this is not handed off (the client gets 524 instead).
MAX_MESSAGE = 128 * 1024


class EndpointGone(OSError):
    """No process listens at that endpoint any more (it exited, or was never started)."""


@dataclass(slots=True)
class Message:
    kind: bytes
    address: Any
    body: bytes
    fd: int | None = None
    sent_at: float = 0.0


def encode(kind: bytes, body: bytes, address: Any = "") -> bytes:
    addr = json.dumps(list(address) if isinstance(address, tuple) else address).encode()
    return _HEAD.pack(kind, bytes((VERSION,)), len(addr), time.monotonic()) + addr + body


def decode(data: bytes, fds: list[int]) -> Message:
    if len(data) < _HEAD.size:
        raise ValueError(f"hand-off message of {len(data)} bytes is truncated")
    kind, version, n, sent_at = _HEAD.unpack_from(data)
    if version[0] != VERSION or kind not in (CONNECTION, EXITED):
        raise ValueError(f"unknown hand-off message kind {kind!r} version {version[0]}")
    raw_address = json.loads(data[_HEAD.size : _HEAD.size + n] or b'""')
    address = tuple(raw_address) if isinstance(raw_address, list) else raw_address
    body = data[_HEAD.size + n :]
    return Message(kind, address, body, fds[0] if fds else None, sent_at)


class Endpoint:
    """The receiving side: a listening SEQPACKET socket bound at ``path`` (unlinked by close)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(path)
        self.sock.listen(64)

    def accept(self) -> socket.socket:
        conn, _ = self.sock.accept()
        return conn

    @staticmethod
    def receive(conn: socket.socket) -> Message | None:
        """The next message on an accepted connection; None once the sender has gone."""
        data, fds, flags, _ = socket.recv_fds(conn, MAX_MESSAGE, 1)
        if not data and not fds:
            return None
        if flags & getattr(socket, "MSG_CTRUNC", 0):
            for fd in fds:
                socket.close(fd)
            raise ValueError("hand-off message arrived without its file descriptor")
        return decode(data, fds)

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Sender:
    """The sending side: one connection per destination endpoint, opened on first use.

    A destination whose connection breaks is connected to again once; if that fails too, the
    process behind it is gone (processIds are never reused, so it is not coming back).
    Safe to share between greenlets: a SEQPACKET send is one atomic message.
    """

    def __init__(self, timeout: float | None = 2.0) -> None:
        self.timeout = timeout
        self._conns: dict[str, socket.socket] = {}

    def send(self, path: str, payload: bytes, fd: int | None = None) -> None:
        if len(payload) > MAX_MESSAGE:
            raise ValueError(f"hand-off message of {len(payload)} bytes exceeds {MAX_MESSAGE}")
        for attempt in (1, 2):
            conn = self._conns.get(path) or self._connect(path)
            try:
                if fd is None:
                    conn.sendall(payload)
                else:
                    socket.send_fds(conn, [payload], [fd])
                return
            except (BrokenPipeError, ConnectionResetError, ConnectionRefusedError) as exc:
                self.forget(path)
                if attempt == 2:
                    raise EndpointGone(exc.errno, f"{path}: {exc.strerror}") from None

    def _connect(self, path: str) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.settimeout(self.timeout)
        try:
            conn.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            conn.close()
            raise EndpointGone(exc.errno, f"{path}: {exc.strerror}") from None
        except OSError:
            conn.close()
            raise
        self._conns[path] = conn
        return conn

    def forget(self, path: str) -> None:
        conn = self._conns.pop(path, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for path in list(self._conns):
            self.forget(path)
