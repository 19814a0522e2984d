"""The worker entry of ``greenroom serve --workers N``: a forked child of the master becomes a
gevent server of the application's rooms on the inherited sockets.

``run_worker(spec)`` boots in the order each step needs (docs/architecture.md, "Boot order"):
monkey-patch first, before anything imports socket, ssl, redis or pymongo; reinitialise the hub; wrap the inherited sockets
as gevent sockets; apply the gevent-websocket fixes; import the application, whose Server creates
its Redis and Mongo clients now, after the fork; serve. A failure before serving exits with
``WORKER_BOOT_ERROR`` after one line on stderr, and the master halts.

Signals: TERM/INT graceful shutdown (clients closed with 4001), QUIT fast exit, USR2 retire
(sent by the master on a reload or TTOU: stop accepting, take no new rooms, let the rooms finish
with their clients, exit when none is left or ``graceful_timeout`` has passed).

The module imports only the standard library at import time: the master imports it in the child
before anything is patched. What a worker shares with a gunicorn worker is in greenroom.member.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from .cluster.config import WORKER_BOOT_ERROR, WorkerSpec

__all__ = ["ClusterWorker", "run_worker"]

log = logging.getLogger("greenroom.worker")


def run_worker(spec: WorkerSpec) -> int:
    from gevent import monkey

    monkey.patch_all()
    import gevent.hub

    gevent.hub.reinit()
    _export_environment(spec)
    from .web.wsfixes import apply

    apply()
    listeners = [_wrap(fd, address) for fd, address in spec.listeners]
    worker = ClusterWorker(spec)
    worker.start_heartbeat()
    try:
        server = _load(spec)
    except _BootError as exc:
        print(f"greenroom: worker {spec.process_id} (pid {os.getpid()}) cannot boot: {exc}",
              file=sys.stderr, flush=True)
        return WORKER_BOOT_ERROR
    return worker.serve(server, listeners)


class _BootError(Exception):
    pass


def _export_environment(spec: WorkerSpec) -> None:
    """The application builds its Server at import: its settings travel through the environment."""
    os.environ["GREENROOM_PROCESS_ID"] = spec.process_id
    for variable, value in (("GREENROOM_REDIS_URL", spec.redis_url),
                            ("GREENROOM_MONGO_URI", spec.mongo_uri),
                            ("GREENROOM_PUBLIC_ADDRESS", spec.public_address)):
        if value:
            os.environ[variable] = value


def _wrap(fd: int, address: Any) -> Any:
    import socket  # gevent's, now

    family = socket.AF_UNIX if isinstance(address, str) else (
        socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
    return socket.fromfd(fd, family, socket.SOCK_STREAM)  # a dup: the master's copy stays open


def _load(spec: WorkerSpec) -> Any:
    from .cli import TargetError, load_target
    from .drivers.base import DriverUnavailable
    from .presence import PresenceUnavailable

    try:
        server = load_target(spec.target)
    except TargetError as exc:
        raise _BootError(str(exc)) from None
    except (PresenceUnavailable, DriverUnavailable) as exc:
        raise _BootError(f"backend unreachable: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the application's import failed: one line
        raise _BootError(f"importing {spec.target} raised {type(exc).__name__}: {exc}") from None
    if not server.distributed:
        raise _BootError("its Server has local presence; the workers of a cluster must share "
                         "one (build Server() without presence= to use the cluster's Redis)")
    return server


class ClusterWorker:
    """One worker of a cluster: its Server, its listeners, its group membership, its signals."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.server: Any = None
        self.wsgi_servers: list[Any] = []
        self.member: Any = None
        self._heartbeat: Any = None
        self._done: Any = None
        self._retiring = False

    # -- boot ------------------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        import gevent

        fd = self.spec.heartbeat_fd
        interval = max(0.1, min(1.0, self.spec.timeout / 4))

        def beat_forever() -> None:
            while True:
                os.utime(fd)  # see greenroom.cluster.heartbeat
                gevent.sleep(interval)

        self._heartbeat = gevent.spawn(beat_forever)

    def serve(self, server: Any, listeners: list[Any]) -> int:
        from gevent.event import Event

        from .member import ClusterMember

        self.server = server
        self._done = Event()
        if self.spec.extra.get("restart"):  # the master replaced a worker that died: count it
            from .metrics import record

            record.active.worker_restarted()
        self.member = ClusterMember(server, self.spec.process_id, self.spec.run_dir,
                                    self.spec.generation)
        first, *others = listeners
        # The hand-off is attached before a listener accepts: a room socket taken in between
        # would be served here although its room lives in a sibling (seen on HUP: 524).
        self.wsgi_servers = [server.listen(listener=first, log_requests=self.spec.access_log,
                                           prepare=self.member.prepare)]
        self.member.share_address()
        for listener in others:
            self.wsgi_servers.append(self._extra_server(server, listener, self.member.prepare))
        self._install_signals()
        self.member.open(self.wsgi_servers[0])  # last: the endpoint tells the master we serve
        os.write(self.spec.wake_fd, b"B")
        log.info("worker %s (pid %d) of generation %d serving", self.spec.process_id,
                 os.getpid(), self.spec.generation)
        self._done.wait()
        return 0

    @staticmethod
    def _extra_server(server: Any, listener: Any,
                      prepare: Callable[[Any], None] | None = None) -> Any:
        from gevent.pywsgi import WSGIServer

        from .web.handler import Handler

        wsgi_server = WSGIServer(listener, server.wsgi_app, handler_class=Handler, log=None,
                                 error_log=logging.getLogger("greenroom.server"))
        # One count for all listeners of the process.
        (server.connection_limits or server.set_connection_limits()).attach(wsgi_server)
        if prepare is not None:
            prepare(wsgi_server)
        wsgi_server.start()
        return wsgi_server

    def _install_signals(self) -> None:
        import gevent

        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, self.shutdown, sig)
        gevent.signal_handler(signal.SIGQUIT, self.quit)
        gevent.signal_handler(signal.SIGUSR2, self.retire)

    # -- stopping ------------------------------------------------------------------------------
    def stop_accepting(self) -> None:
        for wsgi_server in self.wsgi_servers:
            wsgi_server.close()  # the listening socket only; connections go on

    def shutdown(self, sig: int) -> None:
        log.info("worker %s received %s: shutting down gracefully", self.spec.process_id,
                 signal.Signals(sig).name)
        self.stop_accepting()
        self.server.shutdown(self.spec.graceful_timeout)
        self._finish()

    def quit(self) -> None:
        import gevent

        log.info("worker %s received SIGQUIT: exiting now", self.spec.process_id)
        self.stop_accepting()
        with gevent.Timeout(1.0, False):
            self.server.registry.forget(self.spec.process_id)
        self._finish()

    def retire(self) -> None:
        """Drain: no new connections or rooms here; the rooms finish with their clients."""
        import gevent

        if self._retiring:
            return
        self._retiring = True
        self.stop_accepting()
        if self.spec.migrate:
            # rooms move before they are locked: a snapshot keeps the room's own lock state
            self.member.migrate_rooms(time.monotonic() + self.spec.graceful_timeout * 0.8)
        rooms = self.member.start_draining()
        log.info("worker %s retiring: %d room(s) keep their clients until they dispose or %gs "
                 "pass", self.spec.process_id, len(rooms), self.spec.graceful_timeout)
        deadline = time.monotonic() + self.spec.graceful_timeout
        while self.server.matchmaker.rooms and time.monotonic() < deadline:
            gevent.sleep(0.25)
        self.server.shutdown(min(5.0, self.spec.graceful_timeout))
        self._finish()

    def _finish(self) -> None:
        if self.member is not None:
            self.member.close()
        self._done.set()
