"""``greenroom.gunicorn.Worker``: gunicorn's gevent worker that serves greenroom's rooms as one
worker of several, exactly as a worker of ``greenroom serve --workers N`` does.

* The fixed WebSocket handler (greenroom.web.wsfixes: close codes, size limits, C unmasking),
  with gunicorn's environ additions and its access log (a WebSocket is logged as 101 when it
  ends, by the worker that served it).
* A processId named by the master (greenroom.gunicorn.deployment) and a hand-off endpoint
  attached before the first accept: a room socket that the kernel gives to the wrong worker is
  handed to the room's owner (greenroom.member), never refused.
* TERM drains before gunicorn's kill deadline: on a reload (the master builds a newer
  generation) the rooms are locked and keep their clients until they end or the deadline
  nears; on a stop they are shut down now. Either way each client is closed with 4001.

Without a shared presence (no ``GREENROOM_REDIS_URL`` and not the hooks of
greenroom.gunicorn.conf) and with ``-w`` > 1 the workers cannot reach each other's rooms: the
boot says so in one line, and so does the first misrouted socket (greenroom.web.misrouted).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler, PyWSGIServer

from ..web.wsfixes import Handler, apply
from . import deployment
from .logs import route_greenroom_logs

__all__ = ["GunicornHandler", "Worker"]

log = logging.getLogger("greenroom.worker")

#: Seconds before gunicorn's graceful timeout at which clients still connected are closed: the
#: room's on_before_shutdown and dispose, and the 4001 frames, need time to go out.
CLOSE_MARGIN = 2.0


class GunicornHandler(Handler, PyWSGIHandler):
    """Handler + gunicorn's environ additions (``gunicorn.sock``, ``RAW_URI``) and access log."""

    def log_request(self) -> None:
        if not self.handed_off:  # the owner that served the socket logs it
            PyWSGIHandler.log_request(self)


class Worker(GeventPyWSGIWorker):
    wsgi_handler = GunicornHandler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # in the master, before the fork
        self.deployment = deployment.current()
        self.process_id = self.deployment.name_worker(self.age, self.cfg)
        self.generation = self.deployment.generation
        self.member: Any = None
        self.greenroom: Any = None
        self._drainer: gevent.Greenlet | None = None

    # -- boot (in the child) ---------------------------------------------------------------------
    def patch(self) -> None:
        super().patch()
        apply()  # before the app is loaded: nothing it builds may see unpatched classes

    def load_wsgi(self) -> None:
        os.environ["GREENROOM_PROCESS_ID"] = self.process_id  # the app's Server takes it
        route_greenroom_logs(self.log)
        super().load_wsgi()
        self.greenroom = self._find_server()
        if self.greenroom is not None:
            self._join(self.greenroom)

    def _find_server(self) -> Any:
        """The Server behind the loaded application (``server.wsgi_app``, or a
        ``server.wsgi_middleware(...)`` around another app); else the only Server built."""
        from ..server import servers

        found = servers()
        matchmaker = getattr(self.wsgi, "matchmaker", None)
        mine = [s for s in found if matchmaker is not None and s.matchmaker is matchmaker]
        if mine:
            return mine[0]
        if len(found) > 1:
            log.warning("worker %s: the application built %d greenroom Servers and is none of "
                        "their wsgi_app; none takes part in the hand-off", self.process_id, len(found))
            return None
        return found[0] if found else None

    def _join(self, server: Any) -> None:
        if server.process_id != self.process_id:
            log.warning("worker %s: the application's Server is process %s (built before the fork "
                        "with --preload, or given process_id=): sockets of its rooms that reach "
                        "other workers are refused; build the Server at import without --preload",
                        self.process_id, server.process_id)
            return
        if not server.distributed:
            if self.cfg.workers > 1:
                log.warning("worker %s: %d gunicorn workers but no shared presence, so rooms of "
                            "one worker cannot be joined through another; run gunicorn with "
                            "-c python:greenroom.gunicorn.conf, or set GREENROOM_REDIS_URL",
                            self.process_id, self.cfg.workers)
            return
        from ..member import ClusterMember

        self.member = ClusterMember(server, self.process_id, self.deployment.run_dir, self.generation)
        self.member.share_address()
        self.server_class = self._server_with_handoff
        try:
            server.start()  # announce this worker now: placement may choose it before it is asked
        except Exception as exc:  # noqa: BLE001 - the first request tries again (answering 503)
            log.warning("worker %s cannot join the deployment yet: %s", self.process_id, exc)
        if getattr(self, "replaces_dead_worker", False):
            from ..metrics import record

            record.active.worker_restarted()
        log.info("worker %s (pid %d) of generation %d serving", self.process_id, os.getpid(),
                 self.generation)

    def _server_with_handoff(self, *args: Any, **kwargs: Any) -> Any:
        """gunicorn's server class, with the hand-off attached before it starts accepting."""
        wsgi_server = PyWSGIServer(*args, **kwargs)
        self.member.prepare(wsgi_server)
        if self.member.handoff.server is None:
            self.member.open(wsgi_server)  # adopted sockets are served by the first listener's server
        return wsgi_server

    # -- running and stopping ----------------------------------------------------------------------
    def run(self) -> None:
        super().run()
        if self._drainer is not None:  # handed-in sockets are not in gunicorn's pool: wait here
            self._drainer.join(timeout=self.cfg.graceful_timeout)
        self.deployment.mark_clean_exit(self.process_id)

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: drain in the background while gunicorn stops accepting."""
        if self._drainer is None:
            self._drainer = gevent.spawn(self._drain)
        super().handle_exit(sig, frame)

    def _drain(self) -> None:
        from ..server import shutdown_all

        graceful = self.cfg.graceful_timeout
        deadline = time.monotonic() + max(graceful - CLOSE_MARGIN, graceful / 2)
        reloading = self.deployment.newest_generation() > self.generation
        if self.member is not None and reloading:
            if _migrate():
                self.member.migrate_rooms(deadline)  # greenroom.migration: rooms follow the code
            rooms = self.member.start_draining()
            log.info("worker %s: reload; %d room(s) keep their clients until they end or %.0fs "
                     "pass, then close them with 4001", self.process_id, len(rooms),
                     deadline - time.monotonic())
            matchmaker = self.greenroom.matchmaker
            while matchmaker.rooms and time.monotonic() < deadline:
                gevent.sleep(0.25)
        shutdown_all(max(deadline - time.monotonic(), 1.0))
        if self.member is not None:
            self.member.close()


def _migrate() -> bool:
    """``GREENROOM_MIGRATE=1``: on a reload, live rooms move to the new workers with their state
    and clients (README, "Deploying new code without dropping players")."""
    return os.environ.get("GREENROOM_MIGRATE", "") not in ("", "0", "false")
