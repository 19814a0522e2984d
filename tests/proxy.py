"""A TCP proxy that can make its clients vanish (issue 13, half-open peers).

``blackhole()`` stops forwarding in both directions on every connection and closes nothing: to
the server, the client is a phone that lost coverage, no FIN, no RST, nothing more.
``server_closed`` is set when the server ends a connection after that, the event a test waits
on (an HTTP connection closed before, e.g. matchmaking's, does not count).
"""

from __future__ import annotations

import socket

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
