"""Server: the object an application builds (``server = Server(); server.define(...)``).

It owns the matchmaker and the WSGI app, and can serve itself in one process. How it is run
(``greenroom serve``, gunicorn, the pre-fork master) is decided outside it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from .drivers.base import Driver
from .health import Readiness
from .ids import generate_id
from .matchmaker import MatchMaker, RoomDefinition
from .protocol.dialect import Dialect
from .protocol.dialect import from_environment as dialect_settings
from .protocol.native import compiled as compiled_wire
from .room import Room
from .schema import speedups
from .settings import HEARTBEAT, LEASE, MAX_BODY_SIZE, ConfigurationError, env_count, env_seconds
from .web import http
from .web.app import GreenroomApp, Route, WSGIApp

log = logging.getLogger("greenroom.server")

# Every Server of this process, so a host (a gunicorn worker) can shut them down on its way out.
_servers: weakref.WeakSet[Server] = weakref.WeakSet()


def servers() -> list[Server]:
    """Every Server built in this process (a host such as the gunicorn worker looks for its own)."""
    return list(_servers)


def shutdown_all(timeout: float = 10.0) -> None:
    """Gracefully shut down every Server of this process (see ``Server.shutdown``)."""
    servers = list(_servers)
    greenlets = [gevent.spawn(server.shutdown, timeout) for server in servers]
    gevent.joinall(greenlets, timeout=timeout + 1)


def _fix_stock_gunicorn_worker() -> None:
    """Under gevent-websocket's own gunicorn worker, its handler builds the stock WebSocket,
    which greenroom cannot serve: make it build greenroom's (the worker serves this app only)."""
    if "geventwebsocket.gunicorn.workers" in sys.modules:
        from .web.wsfixes import apply

        apply(patch_stock_handler=True)


def _backends(presence: Any, driver: Driver | None, redis_url: str | None,
              mongo_uri: str | None) -> tuple[Any, Driver]:
    """Presence and driver from arguments, else from the environment; local when nothing is set.

    A shared presence needs a shared driver: with a LocalDriver each process would list only its
    own rooms, so rooms would never fill across processes and joinById of another process's room
    would answer 522. Without a driver, a Redis presence gets the Redis driver on its own
    connection pool; any other combination that cannot work is refused here, saying why.
    """
    from . import drivers
    from . import presence as presences
    from .presence.local import LocalPresence

    redis_url = redis_url or presences.redis_url_from_env()
    mongo_uri = mongo_uri or drivers.mongo_uri_from_env()
    if presence is None:
        presence = presences.from_url(redis_url)
    shared = not isinstance(presence, LocalPresence)
    if driver is None:
        if mongo_uri:
            driver = drivers.from_url(mongo_uri)
        elif isinstance(presence, presences.RedisPresence):
            driver = drivers.RedisDriver(presence)  # shares the presence's connection pool
        elif shared:
            raise ConfigurationError(
                f"Server(presence={type(presence).__name__}(...)) needs a driver that every "
                "process shares (driver=RedisDriver(...) or MongoDriver(...)): with the default "
                "in-memory driver each process would see only its own rooms")
        else:
            driver = drivers.from_url(redis_url)
    if shared and isinstance(driver, drivers.LocalDriver):
        raise ConfigurationError(
            f"Server(presence={type(presence).__name__}(...), driver=LocalDriver()): a presence "
            "shared by processes needs a driver they share too, or each process lists only its "
            "own rooms (rooms never fill across processes, joinById of another process's room "
            "answers 522). Pass driver=RedisDriver(presence) or MongoDriver(uri), or no driver "
            "to use the Redis driver on the presence's connection")
    return presence, driver


class Server:
    """One greenroom server process: room definitions, matchmaker, WSGI app.

    ``dialect`` is the wire dialect of the root endpoint ("v3": colyseus.js 0.16 and
    @colyseus/sdk 0.17; "v5": @colyseus/sdk 0.18); ``dialects`` maps path prefixes to other
    dialects, e.g. ``{"/v18": "v5"}`` so that ``ws://host/v18`` serves 0.18 clients.

    Presence and driver come from the arguments, else from ``GREENROOM_REDIS_URL`` (or
    ``REDIS_URL``) and ``GREENROOM_MONGO_URI`` (or ``MONGO_URI``), else they are local. With a
    Redis presence, several processes share matchmaking: seats in another process's rooms are
    reserved by that process (over presence), and every process heartbeats a lease on its
    listings (``heartbeat`` and ``lease`` seconds; env ``GREENROOM_HEARTBEAT``, ``GREENROOM_LEASE``).

    ``monitor`` (a ``greenroom.monitor.Monitor``) serves the monitor page and ``metrics`` (a
    ``greenroom.metrics.Metrics``) serves ``/metrics``; both are off unless given or set in the
    environment (``GREENROOM_MONITOR_TOKEN``, ``GREENROOM_METRICS_PATH``); False keeps them off.

    New rooms go where ``placement`` says (default: greenroom.placement.LeastLoaded). A cluster
    master names its workers' processes through ``GREENROOM_PROCESS_ID``.

    ``allowed_origins`` (env ``GREENROOM_ALLOWED_ORIGINS``): the browser origins allowed on room
    sockets and matchmaking, others get 403 (greenroom/web/origins.py; default: all);
    ``max_body_size`` (env ``GREENROOM_MAX_BODY_SIZE``): bytes of a matchmaking body, over it 413.
    ``max_rooms`` and ``max_clients`` cap the rooms and seats of this process (env
    ``GREENROOM_MAX_ROOMS``, ``GREENROOM_MAX_CLIENTS``; default: no limit); at the limit new
    rooms are created in other processes, else the request gets 523 (README, "Limits").
    """

    def __init__(self, *, presence: Any = None, driver: Driver | None = None,
                 redis_url: str | None = None, mongo_uri: str | None = None,
                 process_id: str | None = None, public_address: str | None = None,
                 dialect: str | Dialect = Dialect.V3,
                 dialects: Mapping[str, str | Dialect] | None = None,
                 heartbeat: float | None = None, lease: float | None = None,
                 rpc_timeout: float = 5.0, monitor: Any = None, metrics: Any = None,
                 placement: Any = None, allowed_origins: Any = None,
                 max_body_size: int | None = None,
                 max_rooms: int | None = None, max_clients: int | None = None) -> None:
        from .presence.local import LocalPresence

        _fix_stock_gunicorn_worker()
        self.presence, self.driver = _backends(presence, driver, redis_url, mongo_uri)
        self.public_address = public_address or os.environ.get("GREENROOM_PUBLIC_ADDRESS") or None
        self.distributed = not isinstance(self.presence, LocalPresence)
        self.heartbeat = heartbeat or env_seconds("GREENROOM_HEARTBEAT", HEARTBEAT)
        self.lease = lease or env_seconds("GREENROOM_LEASE", LEASE)
        process_id = process_id or os.environ.get("GREENROOM_PROCESS_ID") or generate_id()
        rpc = registry = None
        if self.distributed:
            from .presence.rpc import RPC
            from .registry import ProcessRegistry

            rpc = RPC(self.presence, process_id, timeout=rpc_timeout)
            registry = ProcessRegistry(self.presence, process_id, public_address=self.public_address,
                                       heartbeat=self.heartbeat, lease=self.lease, load=self._load,
                                       driver=self.driver, on_renewed=self._listings_renewed)
        self.registry = registry
        self.matchmaker = MatchMaker(self.driver, process_id=process_id, presence=self.presence,
                                     public_address=self.public_address, rpc=rpc, registry=registry,
                                     lease=self.lease if self.distributed else None,
                                     rpc_timeout=rpc_timeout)
        from .capacity import ProcessCapacity

        self.matchmaker.capacity = ProcessCapacity.from_environment(max_rooms, max_clients)
        if registry is not None:  # other processes' placement skips this one when it is full
            registry.info.max_rooms = self.matchmaker.capacity.max_rooms
            registry.info.max_clients = self.matchmaker.capacity.max_clients
        self.readiness = Readiness({"presence": self.presence, "driver": self.driver},
                                   accepting=lambda: self.matchmaker.accepting)
        self.routes: dict[str, Route] = {"/ready": self._ready_route}
        from .monitor import attach as attach_monitor

        self.monitor = attach_monitor(self, monitor)  # its routes, when enabled, and its RPC
        from .metrics import attach as attach_metrics

        self.metrics = attach_metrics(self, metrics)  # /metrics, when enabled
        if self.distributed:
            from .placement import LeastLoaded

            self.matchmaker.placement = placement or LeastLoaded(registry, self.presence, process_id)
        #: Extra /health sections, by key (a cluster worker adds "cluster").
        self.health_sections: dict[str, Any] = {}
        try:
            self.dialect, paths = dialect_settings(dialect, dict(dialects or {}), os.environ)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        from .web.origins import OriginPolicy

        self.origins = OriginPolicy.from_environment(allowed_origins)
        self.max_body_size = max_body_size or env_count("GREENROOM_MAX_BODY_SIZE", MAX_BODY_SIZE)
        if self.max_body_size < 1:
            raise ConfigurationError(f"max_body_size={max_body_size!r}: expected a positive "
                                     "whole number of bytes")
        self.wsgi_app = GreenroomApp(
            self.matchmaker, dialect=self.dialect, dialects=paths,
            health=self.health, on_first_request=self.start, routes=self.routes,
            origins=self.origins, max_body_size=self.max_body_size)
        self._stopped = Event()
        self._wsgi_server: Any = None
        #: The connection limits of this process's listeners, set by the first ``listen``.
        self.connection_limits: Any = None
        self._started = False
        self._starting = Semaphore()
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
                            dialects=self.wsgi_app.dialects, fallback=app, health=self.health,
                            on_first_request=self.start, routes=self.routes,
                            origins=self.origins, max_body_size=self.max_body_size)

    def set_public_address(self, address: str | None) -> None:
        """Where clients reach this process's room sockets (``host:port[/path]``)."""
        self.public_address = self.matchmaker.public_address = address
        if self.registry is not None:
            self.registry.info.public_address = address

    # -- running with other processes ---------------------------------------------------------
    def start(self) -> None:
        """Join the deployment: answer other processes, announce this one, renew leases.

        Called by ``listen`` and, under a foreign WSGI server (gunicorn), on the first request.
        """
        if self._started or not self.distributed:
            self._started = True
            return
        with self._starting:  # two first requests at once must not start two heartbeats
            if self._started:
                return
            # Marked started only once both are up: if Redis is unreachable now, the next request
            # (under gunicorn, every request until it works) tries again, answering 503 meanwhile.
            self.matchmaker.rpc.start()
            self.registry.start()  # heartbeats our entry and listing leases; reaps dead processes
            self._started = True
        log.info("process %s joined the deployment (presence %s, driver %s, lease %gs)",
                 self.process_id, type(self.presence).__name__, type(self.driver).__name__, self.lease)

    def _load(self) -> tuple[int, int]:
        settle = getattr(self.matchmaker.placement, "settle", None)
        if settle is not None:
            settle()  # the rooms placed here since the last beat are in the load reported now
        rooms = self.matchmaker.rooms.values()
        return len(rooms), sum(len(room.clients) for room in rooms)

    def _listings_renewed(self, renewed: int) -> None:
        """After each heartbeat: remove the listings of disposed rooms a backend outage kept,
        list again the rooms it lost, or whose last listing write it made fail."""
        self.matchmaker.retry_removals()
        held = len(self.matchmaker.rooms)
        if renewed < held:
            log.info("process %s: %d of %d listings were missing; listing them again",
                     self.process_id, held - renewed, held)
            self.matchmaker.resync_listings()
        else:
            self.matchmaker.resync_stale_listings()

    def health(self) -> dict[str, Any]:
        rooms = list(self.matchmaker.rooms.values())
        info = {
            "status": "ok" if self.matchmaker.accepting else "shutting down",
            "processId": self.process_id,
            "rooms": len(rooms),
            "clients": sum(len(r.clients) for r in rooms),
            "presence": type(self.presence).__name__,
            "driver": type(self.driver).__name__,
            "encoder": speedups.implementation(),
            "limits": self.matchmaker.capacity.describe(self.matchmaker.rooms),
            "backends": self.readiness.backends(),  # last known; /ready checks afresh
        }
        for key, section in self.health_sections.items():
            info[key] = section()
        return info

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Can this process seat players now? (see greenroom.health)"""
        ready, body = self.readiness.check()
        return ready, {**body, "processId": self.process_id}

    def _ready_route(self, environ: dict[str, Any], rest: str) -> http.Response:
        if rest.strip("/") or environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return http.error_response(environ, 404, f"no route for {environ.get('PATH_INFO')}")
        ready, body = self.ready()
        return http.json_response(environ, 200 if ready else 503, body)

    # -- serving in this process ------------------------------------------------------------------
    def listen(self, host: str = "127.0.0.1", port: int = 2567, *, listener: Any = None,
               log_requests: bool = False, prepare: Callable[[Any], None] | None = None,
               header_timeout: float | None = None, max_connections: int | None = None) -> Any:
        """Start serving in the background (gevent must already be monkey-patched); returns the
        WSGIServer, whose ``server_port`` tells the port when ``port`` is 0.

        ``header_timeout`` and ``max_connections`` bound what slow or hostile peers can hold
        (greenroom/web/limits.py; defaults from the environment, else 10 s and 10,000).
        ``prepare(wsgi_server)`` runs before the first connection can be accepted: a cluster
        worker attaches its hand-off there, so that no room socket is ever served without it."""
        from gevent.pywsgi import WSGIServer

        from .web.wsfixes import Handler, apply

        apply()
        limits = self.connection_limits
        if limits is None or header_timeout or max_connections:
            limits = self.set_connection_limits(header_timeout, max_connections)
        self._wsgi_server = WSGIServer(listener if listener is not None else (host, port),
                                       self.wsgi_app, handler_class=Handler,
                                       log=logging.getLogger("greenroom.access") if log_requests
                                       else None, error_log=log)
        limits.attach(self._wsgi_server)
        if prepare is not None:
            prepare(self._wsgi_server)
        self._wsgi_server.start()
        bound_host = self._wsgi_server.server_host
        if self.distributed and not self.public_address and bound_host not in (None, "0.0.0.0", "::", ""):
            # Clients matched by another process must reach this one directly.
            self.set_public_address(f"{bound_host}:{self._wsgi_server.server_port}")
        self.start()
        return self._wsgi_server

    def set_connection_limits(self, header_timeout: float | None = None,
                              max_connections: int | None = None) -> Any:
        """The ``ConnectionLimits`` every listener of this process shares from now on (the
        arguments, else ``GREENROOM_HEADER_TIMEOUT`` / ``GREENROOM_MAX_CONNECTIONS``)."""
        from .web.limits import ConnectionLimits

        self.connection_limits = ConnectionLimits.from_environment(header_timeout, max_connections)
        return self.connection_limits

    def serve_forever(self, host: str = "127.0.0.1", port: int = 2567, *, listener: Any = None,
                      shutdown_timeout: float = 10.0, log_requests: bool = False) -> None:
        """Serve until SIGTERM/SIGINT, then shut down gracefully (clients closed with 4001)."""
        server = self.listen(host, port, listener=listener, log_requests=log_requests)
        # Before the line that says we listen: whoever waits for it may send SIGTERM at once.
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, self._on_signal, signum)
        log.info("greenroom %s listening on %s (process %s, dialect %s, %s schema encoder)",
                 _version(), _address(server), self.process_id,
                 self.dialect.value, speedups.implementation())
        if speedups.compiled is None and not speedups.switched_off():
            log.warning("greenroom.schema._speedups is not built: state patches are encoded in "
                        "pure Python (about 7x slower); reinstall greenroom where a C compiler and "
                        "the Python headers are available")
        if compiled_wire is None and not speedups.switched_off():
            log.warning("greenroom.protocol._wire is not built: room messages are parsed and "
                        "replies encoded in pure Python (about a fifth more CPU per message)")
        self._stopped.wait()
        self.shutdown(shutdown_timeout)

    def _on_signal(self, signum: int) -> None:
        log.info("received %s: shutting down gracefully", signal.Signals(signum).name)
        self._stopped.set()

    def stop(self) -> None:
        self._stopped.set()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Lock rooms and run their on_before_shutdown (by default: close clients with 4001);
        ``timeout`` seconds from now, rooms still open are closed with 4001 and disposed (see
        MatchMaker.shutdown). Then this process leaves the deployment and its backends close."""
        if self._shut_down:
            return
        self._shut_down = True
        self._stopped.set()
        self.matchmaker.shutdown(timeout)
        if self.registry is not None:
            self.registry.stop(unregister=True)
        if self.matchmaker.rpc is not None:
            self.matchmaker.rpc.close()
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


def _address(wsgi_server: Any) -> str:
    """``host:port``, or ``unix:/path`` for a Unix socket (whose host and port are None)."""
    if wsgi_server.server_port is None:
        return f"unix:{wsgi_server.socket.getsockname()}"
    return f"{wsgi_server.server_host}:{wsgi_server.server_port}"
