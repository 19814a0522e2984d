"""gunicorn server hooks for greenroom: ``gunicorn -c python:greenroom.gunicorn.conf ...``.

Used as a whole, this module also selects greenroom's worker class. A project with its own
gunicorn config imports the hooks it wants::

    from greenroom.gunicorn.conf import on_starting, pre_fork, child_exit, on_exit  # noqa: F401
    worker_class = "greenroom.gunicorn.Worker"

* ``on_starting``: with more than one worker and no ``GREENROOM_REDIS_URL``, start a private
  redis-server (the ``redis-embedded`` extra) on a Unix socket of the run dir before any fork,
  so that every worker shares presence and listings; and give the workers one Prometheus
  multiprocess directory there, so that /metrics on any worker is the sum of all
  (greenroom.metrics.multiprocess).
* ``pre_fork``: start it again if it died; a worker that replaces one which died (no clean exit)
  counts one ``greenroom_worker_restarts``.
* ``child_exit``: a worker that exited (killed, crashed, replaced) leaves the metrics' live
  gauges at once, and has its listings removed at once by a sibling, instead of when their
  lease runs out.
* ``on_exit``: stop the redis-server, remove the run dir.

The hooks run in gunicorn's master, which never imports gevent or redis-py.
"""

from __future__ import annotations

import os
from typing import Any

from ..metrics.multiprocess import prepare_multiprocess, process_exited
from . import deployment
from .logs import route_greenroom_logs

__all__ = ["child_exit", "on_exit", "on_starting", "pre_fork", "worker_class"]

worker_class = "greenroom.gunicorn.Worker"


def on_starting(server: Any) -> None:
    route_greenroom_logs(server.log)
    state = deployment.current()
    prepare_multiprocess(state.run_dir)
    if server.cfg.workers > 1 and not _redis_configured():
        url = state.start_redis()
        server.log.info("greenroom: %d workers share the embedded redis-server at %s (cluster %s)",
                        server.cfg.workers, url.split("?")[0], state.cluster)
    else:
        server.log.info("greenroom: cluster %s, run dir %s", state.cluster, state.run_dir)


def pre_fork(server: Any, worker: Any) -> None:
    state = deployment.current()
    state.ensure_redis()
    worker.replaces_dead_worker = state.take_restart()  # the forked worker counts it in /metrics


def child_exit(server: Any, worker: Any) -> None:
    process_exited(worker.pid)
    process_id = getattr(worker, "process_id", None)
    if process_id is None:
        return  # not a greenroom worker
    if not server.LISTENERS:
        return  # gunicorn is stopping (it closed its listeners): every worker is on its way out
    deployment.current().note_exit(process_id)
    siblings = [w.process_id for w in server.WORKERS.values() if hasattr(w, "process_id")]
    if siblings and not deployment.current().report_exit(process_id, siblings):
        server.log.warning("greenroom: could not report the exit of worker %s to a sibling; its "
                           "listings go when their lease runs out", process_id)


def on_exit(server: Any) -> None:
    deployment.current().cleanup()


def _redis_configured() -> bool:
    return bool(os.environ.get("GREENROOM_REDIS_URL") or os.environ.get("REDIS_URL"))
