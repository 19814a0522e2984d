"""What a gunicorn master knows of its greenroom workers, kept in the master, shared by fork.

gunicorn builds each worker object in the master before forking it, so the names a greenroom
cluster master gives its workers can be given here too: one cluster id and private run dir per
master, and ``{cluster}-g{generation}-w{age}`` as each worker's processId (gunicorn's worker age
never repeats, so a replaced worker never inherits its predecessor's sockets). A reload (HUP)
gives gunicorn a new config object: the next worker built starts a new generation, written to
``{run_dir}/generation`` so that an old worker told to stop can tell a reload from a shutdown.

Plain Python, no gevent and no redis-py: it runs in gunicorn's master.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
from typing import Any

from ..cluster import handoff
from ..cluster.naming import ProcessName, endpoint_path, make_run_dir, new_cluster_id

__all__ = ["Deployment", "current"]

log = logging.getLogger("greenroom.gunicorn")

_current: Deployment | None = None


def current() -> Deployment:
    """This master's deployment, made on first use (by a hook or by the first worker built)."""
    global _current
    if _current is None:
        _current = Deployment()
    return _current


class Deployment:
    def __init__(self) -> None:
        self.master_pid = os.getpid()
        self.cluster = new_cluster_id()
        self.run_dir = make_run_dir(self.cluster)
        self.generation = 1
        self.redis: Any = None
        self._cfg: Any = None
        self._sender: handoff.Sender | None = None
        self.restarts_due = 0  # workers that died unexpectedly, their replacements not forked yet
        self._write_generation()
        atexit.register(self.cleanup)  # without the on_exit hook too; a no-op in a worker

    # -- naming workers ------------------------------------------------------------------------
    def name_worker(self, age: int, cfg: Any) -> str:
        if self._cfg is not None and cfg is not self._cfg:
            self.generation += 1  # gunicorn reloaded its configuration: a HUP
            self._write_generation()
        self._cfg = cfg
        return str(ProcessName(self.cluster, self.generation, age))

    def _write_generation(self) -> None:
        path = os.path.join(self.run_dir, "generation")
        with open(path + ".tmp", "w") as f:
            f.write(str(self.generation))
        os.replace(path + ".tmp", path)

    def newest_generation(self) -> int:
        """Read by a worker: the generation the master builds workers of now."""
        try:
            with open(os.path.join(self.run_dir, "generation")) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    # -- the embedded Redis --------------------------------------------------------------------
    def start_redis(self) -> str:
        from ..cluster.redis_embedded import EmbeddedRedis

        self.redis = EmbeddedRedis(self.run_dir)
        self.redis.start()
        os.environ["GREENROOM_REDIS_URL"] = self.redis.url  # the workers inherit it
        return self.redis.url

    def ensure_redis(self) -> None:
        """Before a fork: a redis-server that died (gunicorn reaps it as a stranger) is started
        again on the same socket; the workers reconnect and list their rooms again."""
        if self.redis is not None and not self.redis.answers():
            log.warning("embedded redis-server is not answering (its last log line: %s); "
                        "starting it again", self.redis.last_words() or "none")
            self.redis.stop(timeout=1.0)
            self.redis.start()

    # -- exits ---------------------------------------------------------------------------------
    def report_exit(self, process_id: str, siblings: list[str]) -> bool:
        """Tell one live sibling that ``process_id`` exited: it removes that worker's listings
        now (the master never talks to Redis itself). The newest sibling first: the oldest may
        be the next to go."""
        message = handoff.encode(handoff.EXITED, process_id.encode())
        if self._sender is None:
            self._sender = handoff.Sender(timeout=1.0)
        for sibling in sorted(siblings, key=_age, reverse=True):
            try:
                self._sender.send(endpoint_path(self.run_dir, sibling), message)
                return True
            except OSError as exc:
                log.debug("reporting the exit of %s to %s failed: %s", process_id, sibling, exc)
        return False

    def mark_clean_exit(self, process_id: str) -> None:
        """Written by a worker whose run ended normally (a drain after TERM, a reload, a
        ``--max-requests`` recycle): gunicorn gives ``child_exit`` no exit status, so a worker
        without this mark died (killed, crashed, aborted on timeout)."""
        open(self._exit_mark(process_id), "w").close()

    def note_exit(self, process_id: str) -> None:
        """In the master: count the replacement of a worker that left no mark as a restart."""
        try:
            os.unlink(self._exit_mark(process_id))
        except FileNotFoundError:
            self.restarts_due += 1

    def take_restart(self) -> bool:
        """In the master, before a fork: is this new worker the replacement of a dead one?"""
        if self.restarts_due <= 0:
            return False
        self.restarts_due -= 1
        return True

    def _exit_mark(self, process_id: str) -> str:
        return os.path.join(self.run_dir, f"exited-{process_id}")

    # -- the end -------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """The master's last step: no redis-server and no run dir is left behind."""
        if os.getpid() != self.master_pid:
            return
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _age(process_id: str) -> int:
    name = ProcessName.parse(process_id)
    return name.serial if name is not None else 0
