"""TCP proxies for fault tests (issue 13): one that makes its clients vanish (half-open
peers), one that makes a server slow and flaky.

``blackhole()`` stops forwarding in both directions on every connection and closes nothing: to
the server, the client is a phone that lost coverage, no FIN, no RST, nothing more.
``server_closed`` is set when the server ends a connection after that, the event a test waits
on (an HTTP connection closed before, e.g. matchmaking's, does not count).
"""

from __future__ import annotations

import socket
import time
from typing import Any

import gevent
from gevent.event import Event


class BlackholeProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.endpoint = f"ws://127.0.0.1:{self.port}"
        self.server_closed = Event()
        self._open = True
        self._sockets: list[socket.socket] = []
        self._accepting = gevent.spawn(self._accept)

    def blackhole(self) -> None:
        self._open = False

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            gevent.spawn(self._pipe, client, upstream, False)
            gevent.spawn(self._pipe, upstream, client, True)

    def _pipe(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                if from_server and not self._open:
                    self.server_closed.set()
                if self._open:
                    try:
                        sink.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                return
            if self._open:  # a vanished peer: bytes go nowhere, nothing is closed
                try:
                    sink.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self._accepting.kill()
        for sock in [self.listener, *self._sockets]:
            sock.close()


class SlowProxy:
    """A TCP proxy that delays every chunk by ``delay`` seconds each way and, while
    ``drop_one_in`` is set, cuts the connection of one chunk in that many (both sockets closed, as a network that
    loses a link): a slow, flaky Redis for the storms under faults (issue 13).

    Delay is latency, not a bandwidth cap: a chunk is read at once and written ``delay`` after
    it arrived, in order, so a pipelined connection is not serialised behind its own waits.
    Both can be changed at any time (a fault that starts and ends mid-storm). ``dropped``
    counts the connections cut, so a test can assert the fault really happened.

    ``lose_reply_to(pattern)`` is the fault a retry must survive: the next command containing
    ``pattern`` reaches the server, which runs it, and its reply is lost with the connection.
    """

    def __init__(self, target: tuple[str, int], delay: float = 0.0, drop_one_in: int = 0,
                 seed: int = 13) -> None:
        import random

        self.target = target
        self.delay = delay
        self.drop_one_in = drop_one_in
        self.dropped = 0
        self._random = random.Random(seed)
        self._lose_after: bytes | None = None
        self._losing: set[tuple[socket.socket, socket.socket]] = set()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._greenlets: list[gevent.Greenlet] = []
        self._links: list[tuple[socket.socket, socket.socket]] = []
        self._accepting = gevent.spawn(self._accept)

    def lose_reply_to(self, pattern: bytes) -> None:
        self._lose_after = pattern

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()  # the server is down: so is its proxy
                continue
            link = (client, upstream)
            self._links.append(link)
            self._greenlets += [gevent.spawn(self._pipe, client, upstream, link),
                                gevent.spawn(self._pipe, upstream, client, link)]

    def _pipe(self, source: socket.socket, sink: socket.socket,
              link: tuple[socket.socket, socket.socket]) -> None:
        from gevent.queue import Queue

        due: Queue = Queue()
        writer = gevent.spawn(self._write, due, sink, link)
        self._greenlets.append(writer)
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if data and self.drop_one_in and self._random.randrange(self.drop_one_in) == 0:
                self.dropped += 1
                self._cut(link)
                data = b""
            elif data and source is link[0] and self._lose_after and self._lose_after in data:
                self._lose_after = None
                self._losing.add(link)  # forwarded: the server runs it; its reply is lost
            elif data and source is link[1] and link in self._losing:
                self._losing.discard(link)
                self.dropped += 1
                self._cut(link)
                data = b""
            due.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def _write(self, due: Any, sink: socket.socket, link: tuple[socket.socket, socket.socket]) -> None:
        while True:
            at, data = due.get()
            gevent.sleep(max(0.0, at - time.monotonic()))
            if not data:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                sink.sendall(data)
            except OSError:
                self._cut(link)
                return

    def _cut(self, link: tuple[socket.socket, socket.socket]) -> None:
        for sock in link:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._accepting.kill()
        self.listener.close()
        for link in self._links:
            self._cut(link)
        gevent.killall(self._greenlets, timeout=5)
