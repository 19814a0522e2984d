"""Server: the object an application builds (``server = Server(); server.define(...)``).

It owns the matchmaker and the WSGI app, and can serve itself in one process. How it is run
(``greenroom serve``, gunicorn, the pre-fork master) is decided outside it.
"""

from __future__ import annotations

import logging
import os
import signal
import weakref
from collections.abc import Mapping
from typing import Any

import gevent
from gevent.event import Event

from .drivers.base import Driver
from .drivers.local import LocalDriver
from .matchmaker import MatchMaker, RoomDefinition
from .protocol.dialect import Dialect
from .room import Room
from .web.app import GreenroomApp, WSGIApp

log = logging.getLogger("greenroom.server")

# Every Server of this process, so a host (a gunicorn worker) can shut them down on its way out.
_servers: weakref.WeakSet[Server] = weakref.WeakSet()


def shutdown_all(timeout: float = 10.0) -> None:
    """Gracefully shut down every Server of this process (see ``Server.shutdown``)."""
    servers = list(_servers)
    greenlets = [gevent.spawn(server.shutdown, timeout) for server in servers]
    gevent.joinall(greenlets, timeout=timeout + 1)


def _default_presence() -> Any:
    try:
        from .presence.local import LocalPresence
    except ImportError:  # pragma: no cover
        return None
    return LocalPresence()


class Server:
    """One greenroom server process: room definitions, matchmaker, WSGI app.

    ``dialect`` is the wire dialect of the root endpoint ("v3": colyseus.js 0.16 and
    @colyseus/sdk 0.17; "v5": @colyseus/sdk 0.18); ``dialects`` maps path prefixes to other
    dialects, e.g. ``{"/v18": "v5"}`` so that ``ws://host/v18`` serves 0.18 clients.
    """

    def __init__(self, *, presence: Any = None, driver: Driver | None = None,
                 process_id: str | None = None, public_address: str | None = None,
                 dialect: str | Dialect = Dialect.V3,
                 dialects: Mapping[str, str | Dialect] | None = None) -> None:
        self.presence = presence if presence is not None else _default_presence()
        self.driver = driver if driver is not None else LocalDriver()
        self.public_address = public_address or os.environ.get("GREENROOM_PUBLIC_ADDRESS") or None
        self.matchmaker = MatchMaker(self.driver, process_id=process_id, presence=self.presence,
                                     public_address=self.public_address)
        self.dialect = Dialect.parse(dialect)
        self.wsgi_app = GreenroomApp(
            self.matchmaker, dialect=self.dialect,
            dialects={k: Dialect.parse(v) for k, v in (dialects or {}).items()},
            health=self.health)
        self._stopped = Event()
        self._wsgi_server: Any = None
        self._shut_down = False
        _servers.add(self)

    @property
    def process_id(self) -> str:
        return self.matchmaker.process_id

    def define(self, name: str, room_cls: type[Room], **default_options: Any) -> RoomDefinition:
        """Register a room type; ``default_options`` are merged under each client's options."""
        return self.matchmaker.define(name, room_cls, **default_options)

    def wsgi_middleware(self, app: WSGIApp) -> WSGIApp:
        """Serve greenroom's routes and hand every other request to ``app`` (a Flask app, say)."""
        return GreenroomApp(self.matchmaker, dialect=self.wsgi_app.dialect,
                            dialects=self.wsgi_app.dialects, fallback=app, health=self.health)

    def health(self) -> dict[str, Any]:
        rooms = list(self.matchmaker.rooms.values())
        return {
            "status": "ok" if self.matchmaker._accepting else "shutting down",
            "processId": self.process_id,
            "rooms": len(rooms),
            "clients": sum(len(r.clients) for r in rooms),
        }

    # -- serving in this process ------------------------------------------------------------------
    def listen(self, host: str = "127.0.0.1", port: int = 2567, *, listener: Any = None,
               log_requests: bool = False) -> Any:
        """Start serving in the background (gevent must already be monkey-patched); returns the
        WSGIServer, whose ``server_port`` tells the port when ``port`` is 0."""
        from gevent.pywsgi import WSGIServer

        from .web.wsfixes import Handler, apply

        apply()
        self._wsgi_server = WSGIServer(listener if listener is not None else (host, port),
                                       self.wsgi_app, handler_class=Handler,
                                       log=log if log_requests else None, error_log=log)
        self._wsgi_server.start()
        return self._wsgi_server

    def serve_forever(self, host: str = "127.0.0.1", port: int = 2567, *, listener: Any = None,
                      shutdown_timeout: float = 10.0) -> None:
        """Serve until SIGTERM/SIGINT, then shut down gracefully (clients closed with 4001)."""
        server = self.listen(host, port, listener=listener)
        log.info("greenroom %s listening on %s:%s (process %s, dialect %s)", _version(),
                 server.server_host, server.server_port, self.process_id, self.dialect.value)
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, self._on_signal, signum)
        self._stopped.wait()
        self.shutdown(shutdown_timeout)

    def _on_signal(self, signum: int) -> None:
        log.info("received %s: shutting down gracefully", signal.Signals(signum).name)
        self._stopped.set()

    def stop(self) -> None:
        self._stopped.set()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Lock rooms, run their on_before_shutdown (4001 to clients), wait, close the listener."""
        if self._shut_down:
            return
        self._shut_down = True
        self.matchmaker.shutdown(timeout)
        if self._wsgi_server is not None:
            self._wsgi_server.stop(timeout=1)
        for closable in (self.presence, self.driver):
            try:
                if closable is not None:
                    closable.close()
            except Exception:  # noqa: BLE001
                log.exception("closing %r failed", closable)


def _version() -> str:
    from . import __version__

    return __version__
