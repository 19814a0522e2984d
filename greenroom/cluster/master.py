"""The master: binds the listeners, forks the workers, keeps them alive, answers signals.

Plain Python on purpose: no gevent, no application, no room, matchmaker or web code is ever
imported here, so every worker forks from a clean interpreter and monkey-patches first. It
sleeps on a pipe that signal handlers and booted workers write to, and after each wake-up runs
one round of small steps, top to bottom::

    handle queued signals -> reap exited children -> murder hung workers -> note booted ones
    -> retire the old generation / surplus workers -> spawn missing ones -> report exits

Signals: TERM/INT graceful stop, QUIT fast stop, HUP new generation, TTIN/TTOU one worker more or
fewer (see README "Several workers").
"""

from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import signal
import time
from collections import deque

from ..metrics.multiprocess import prepare_multiprocess, process_exited
from . import handoff
from .children import describe_status
from .config import WORKER_BOOT_ERROR, ClusterConfig, WorkerSpec
from .heartbeat import Heartbeat
from .listeners import Listener
from .naming import ProcessName, endpoint_path, make_run_dir, new_cluster_id
from .redis_embedded import EmbeddedRedis
from .workers import Worker, WorkerState, become_worker

__all__ = ["Halt", "Master"]

log = logging.getLogger("greenroom.cluster")

#: A worker sent SIGABRT for a silent heartbeat and still alive this long after gets SIGKILL
#: (a stopped process cannot act on SIGABRT at all).
KILL_AFTER_ABORT = 2.0
#: A retiring worker drains for graceful_timeout, then closes its rooms; past this much more
#: it is killed.
RETIRE_GRACE = 10.0
#: An exit not reported to any worker within this long is left to the listing leases.
EXIT_REPORT_PATIENCE = 30.0
FAST_STOP_TIMEOUT = 5.0


class Halt(Exception):
    """The master cannot go on (a worker cannot boot); carries the exit code."""

    def __init__(self, reason: str, code: int = WORKER_BOOT_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class _Stop(Exception):
    def __init__(self, graceful: bool, why: str) -> None:
        super().__init__(why)
        self.graceful = graceful
        self.why = why


class Master:
    SIGNALS = (signal.SIGHUP, signal.SIGQUIT, signal.SIGINT, signal.SIGTERM, signal.SIGTTIN,
               signal.SIGTTOU, signal.SIGCHLD)

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.num_workers = max(1, config.workers)
        self.cluster = new_cluster_id()
        self.generation = 1
        self.serial = 0
        self.workers: dict[int, Worker] = {}
        self.listeners: list[Listener] = []
        self.redis: EmbeddedRedis | None = None
        self.redis_url = config.redis_url
        self.run_dir = ""
        self.reloading_from: int | None = None  # the generation a reload is replacing
        self.exits: deque[tuple[str, float]] = deque()  # processIds to report to a live worker
        self.restarts_due = 0  # workers that exited unexpectedly, not yet replaced
        self.sender = handoff.Sender(timeout=1.0)
        self.signal_queue: deque[int] = deque(maxlen=8)
        self._wake_r = self._wake_w = -1

    # -- life ------------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stopped; returns the process exit code."""
        try:
            self.start()
        except Exception as exc:  # noqa: BLE001 - one clear line, no traceback
            log.error("greenroom master cannot start: %s", exc)
            self.cleanup()
            return 1
        try:
            while True:
                self.handle_signals()
                self.reap_children()
                self.murder_hung_workers()
                self.note_booted_workers()
                self.retire_old_generation()
                self.retire_surplus_workers()
                self.kill_overdue_retirees()
                self.spawn_missing_workers()
                self.report_exits()
                self.sleep()
        except _Stop as stop:
            log.info("%s: stopping %s", stop.why, "gracefully" if stop.graceful else "fast")
            self.stop(graceful=stop.graceful)
            return 0
        except Halt as halt:
            log.error("greenroom master halting: %s", halt.reason)
            self.stop(graceful=False)
            return halt.code
        finally:
            self.cleanup()

    def start(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        for sig in self.SIGNALS:
            signal.signal(sig, self._queue_signal)
        self.run_dir = make_run_dir(self.cluster, self.config.run_dir_parent)
        prepare_multiprocess(self.run_dir)  # the workers' metrics add up (greenroom.metrics)
        self.listeners = [Listener.bind(address) for address in self.config.binds]
        if not self.redis_url:
            self.redis = EmbeddedRedis(self.run_dir)
            self.redis.start()
            self.redis_url = self.redis.url
        if self.config.pid_file:
            with open(self.config.pid_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        log.info("greenroom master %d: cluster %s listening on %s with %d workers (timeout %gs, "
                 "graceful timeout %gs, presence %s)", os.getpid(), self.cluster,
                 ", ".join(listener.bound for listener in self.listeners), self.num_workers,
                 self.config.timeout, self.config.graceful_timeout,
                 "embedded redis-server" if self.redis else "the configured Redis")

    def cleanup(self) -> None:
        """Whatever happened: no listener path, redis-server, run dir or pid file is left."""
        for listener in self.listeners:
            listener.close()
        self.listeners = []
        if self.redis is not None:
            self.redis.stop()
        self.sender.close()
        if self.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.config.pid_file:
            try:
                os.unlink(self.config.pid_file)
            except FileNotFoundError:
                pass
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    # -- waiting and signals ------------------------------------------------------------------
    def _queue_signal(self, signum: int, frame: object) -> None:
        if signum != signal.SIGCHLD:
            self.signal_queue.append(signum)
        self.wake()

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b".")
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EINTR):
                raise

    def sleep(self, timeout: float | None = None) -> None:
        """Until a signal, a child's exit, a worker's boot, or ``timeout`` (default: sooner
        while a worker boots or exits wait to be reported)."""
        if timeout is None:
            busy = self.exits or any(w.state is WorkerState.BOOTING for w in self.workers.values())
            timeout = 0.2 if busy else 1.0
        try:
            ready, _, _ = select.select([self._wake_r], [], [], timeout)
            if ready:
                while os.read(self._wake_r, 4096):
                    pass
        except InterruptedError:
            pass
        except BlockingIOError:
            pass

    def handle_signals(self) -> None:
        while self.signal_queue:
            signum = self.signal_queue.popleft()
            name = signal.Signals(signum).name
            if signum in (signal.SIGTERM, signal.SIGINT):
                raise _Stop(True, f"received {name}")
            if signum == signal.SIGQUIT:
                raise _Stop(False, f"received {name}")
            if signum == signal.SIGHUP:
                self.reload()
            elif signum == signal.SIGTTIN:
                self.num_workers += 1
                log.info("received SIGTTIN: %d workers", self.num_workers)
            elif signum == signal.SIGTTOU:
                if self.num_workers > 1:
                    self.num_workers -= 1
                log.info("received SIGTTOU: %d workers", self.num_workers)

    # -- the steps of a round ---------------------------------------------------------------
    def reap_children(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            if self.redis is not None and self.redis.owns(pid):
                self.restart_redis(status)
                continue
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self.worker_exited(worker, status)

    def worker_exited(self, worker: Worker, status: int) -> None:
        worker.heartbeat.close()
        process_exited(worker.pid)
        try:
            os.unlink(worker.endpoint)  # a sibling's next hand-off to it is refused at once
        except FileNotFoundError:
            pass
        how = describe_status(status)
        expected = worker.state is WorkerState.RETIRING and how == "exit code 0"
        (log.info if expected else log.warning)(
            "worker %s of generation %d exited (%s)", worker.describe(), worker.generation, how)
        self.exits.append((worker.process_id, time.monotonic()))
        failed_boot = (worker.state is WorkerState.BOOTING and os.WIFEXITED(status)
                       and os.WEXITSTATUS(status) != 0) or (
            os.WIFEXITED(status) and os.WEXITSTATUS(status) == WORKER_BOOT_ERROR)
        if failed_boot:
            self.worker_failed_to_boot(worker, how)
        elif worker.state is not WorkerState.RETIRING and worker.generation == self.generation:
            self.restarts_due += 1  # spawn_missing_workers replaces it; the new one counts that

    def worker_failed_to_boot(self, worker: Worker, how: str) -> None:
        if self.reloading_from is not None and worker.generation == self.generation:
            self.abandon_reload(worker, how)
            return
        raise Halt(f"worker {worker.describe()} failed to boot ({how}); its error is logged above")

    def restart_redis(self, status: int) -> None:
        assert self.redis is not None
        log.warning("embedded redis-server (pid %s) died (%s); restarting it (its last log line: %s)",
                    self.redis.pid, describe_status(status), self.redis.last_words() or "none")
        self.redis.pid = None
        self.redis.start()

    def murder_hung_workers(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.aborted_at is not None:
                if now - worker.aborted_at >= KILL_AFTER_ABORT:
                    log.error("worker %s still alive after SIGABRT: sending SIGKILL", worker.describe())
                    worker.signal(signal.SIGKILL)
                    worker.aborted_at = now
                continue
            silent = worker.heartbeat.silent_for()
            if silent > self.config.timeout:
                log.error("worker %s silent for %.1fs (timeout %gs): its hub is blocked; sending "
                          "SIGABRT", worker.describe(), silent, self.config.timeout)
                worker.signal(signal.SIGABRT)
                worker.aborted_at = now

    def note_booted_workers(self) -> None:
        """A worker binds its hand-off endpoint last when it boots: the endpoint means 'serving'."""
        for worker in self.workers.values():
            if worker.state is WorkerState.BOOTING and os.path.exists(worker.endpoint):
                worker.state = WorkerState.SERVING
                log.info("worker %s of generation %d is serving (booted in %.2fs)",
                         worker.describe(), worker.generation, time.monotonic() - worker.started_at)

    def reload(self) -> None:
        if self.reloading_from is not None:
            log.warning("received SIGHUP during a reload: ignored (generation %d still booting)",
                        self.generation)
            return
        self.reloading_from = self.generation
        self.generation += 1
        log.info("received SIGHUP: starting generation %d (%d workers); generation %d serves "
                 "until it is ready", self.generation, self.num_workers, self.reloading_from)

    def retire_old_generation(self) -> None:
        if self.reloading_from is None:
            return
        current = self.current_workers()
        if len(current) < self.num_workers or any(w.state is not WorkerState.SERVING for w in current):
            return
        old = [w for w in self.workers.values()
               if w.generation < self.generation and w.state is not WorkerState.RETIRING]
        log.info("generation %d is serving; retiring %d worker(s) of older generations (their "
                 "rooms keep their clients until they dispose or %gs pass)", self.generation,
                 len(old), self.config.graceful_timeout)
        for worker in old:
            self.retire(worker)
        self.reloading_from = None

    def abandon_reload(self, failed: Worker, how: str) -> None:
        log.error("reload failed: worker %s of generation %d could not boot (%s); generation %d "
                  "keeps serving", failed.describe(), self.generation, how, self.reloading_from)
        for worker in self.current_workers():
            worker.signal(signal.SIGQUIT)
            worker.state = WorkerState.RETIRING
            worker.kill_at = time.monotonic() + FAST_STOP_TIMEOUT
        assert self.reloading_from is not None
        self.generation, self.reloading_from = self.reloading_from, None

    def retire_surplus_workers(self) -> None:
        if self.reloading_from is not None:
            return
        current = sorted(self.current_workers(), key=lambda w: w.serial)
        for worker in current[: max(0, len(current) - self.num_workers)]:
            self.retire(worker)

    def retire(self, worker: Worker) -> None:
        """SIGUSR2: stop accepting and placing rooms, keep the clients, exit once rooms are gone."""
        log.info("retiring worker %s of generation %d", worker.describe(), worker.generation)
        worker.state = WorkerState.RETIRING
        worker.kill_at = time.monotonic() + self.config.graceful_timeout + RETIRE_GRACE
        worker.signal(signal.SIGUSR2)

    def kill_overdue_retirees(self) -> None:
        now = time.monotonic()
        for worker in self.workers.values():
            if worker.kill_at is not None and now > worker.kill_at:
                log.error("retired worker %s did not exit in time: sending SIGKILL", worker.describe())
                worker.signal(signal.SIGKILL)
                worker.kill_at = None

    def spawn_missing_workers(self) -> None:
        for _ in range(self.num_workers - len(self.current_workers())):
            self.spawn_worker()

    def report_exits(self) -> None:
        """Tell a serving worker which processes exited: it removes their listings and registry
        entries at once (the master itself never touches Redis or MongoDB)."""
        now = time.monotonic()
        while self.exits and now - self.exits[0][1] > EXIT_REPORT_PATIENCE:
            process_id, _ = self.exits.popleft()
            log.warning("could not report the exit of %s to any worker; its listings go when "
                        "their lease runs out", process_id)
        # the freshest heartbeat last: a stalled worker would take the report and never act on it
        serving = sorted((w for w in self.workers.values()
                          if w.state is WorkerState.SERVING and w.aborted_at is None),
                         key=lambda w: w.heartbeat.last_update())
        while self.exits and serving:
            process_id = self.exits[0][0]
            message = handoff.encode(handoff.EXITED, process_id.encode())
            try:
                self.sender.send(serving[-1].endpoint, message)
            except OSError as exc:
                log.debug("reporting the exit of %s to %s failed: %s", process_id,
                          serving[-1].describe(), exc)
                serving.pop()
                continue
            self.exits.popleft()

    # -- workers ---------------------------------------------------------------------------------
    def current_workers(self) -> list[Worker]:
        return [w for w in self.workers.values()
                if w.generation == self.generation and w.state is not WorkerState.RETIRING]

    def spawn_worker(self) -> Worker:
        self.serial += 1
        process_id = str(ProcessName(self.cluster, self.generation, self.serial))
        heartbeat = Heartbeat(self.run_dir)
        endpoint = endpoint_path(self.run_dir, process_id)
        restart = self.restarts_due > 0
        if restart:
            self.restarts_due -= 1
        pid = os.fork()
        if pid == 0:
            self._become_worker(process_id, heartbeat, restart)
        worker = Worker(pid, process_id, self.generation, self.serial, heartbeat, endpoint)
        self.workers[pid] = worker
        log.info("booting worker %s of generation %d", worker.describe(), self.generation)
        return worker

    def _become_worker(self, process_id: str, heartbeat: Heartbeat, restart: bool) -> None:
        spec = WorkerSpec(
            target=self.config.target, process_id=process_id, cluster=self.cluster,
            generation=self.generation, run_dir=self.run_dir,
            listeners=[(listener.sock.fileno(), listener.address) for listener in self.listeners],
            heartbeat_fd=heartbeat.fd, wake_fd=self._wake_w, timeout=self.config.timeout,
            graceful_timeout=self.config.graceful_timeout, access_log=self.config.access_log,
            redis_url=self.redis_url, mongo_uri=self.config.mongo_uri,
            public_address=self.config.public_address, migrate=self.config.migrate,
            extra={"restart": restart})
        others = [w.heartbeat.fd for w in self.workers.values()] + [self._wake_r]
        become_worker(self.config.worker_entry, spec, others)

    # -- stopping --------------------------------------------------------------------------------
    def stop(self, graceful: bool) -> None:
        """TERM (graceful) or QUIT (fast) to every worker; SIGKILL what is left at the deadline."""
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        for worker in self.workers.values():
            worker.signal(sig)
        limit = self.config.graceful_timeout if graceful else min(self.config.graceful_timeout,
                                                                    FAST_STOP_TIMEOUT)
        deadline = time.monotonic() + limit
        while self.workers and time.monotonic() < deadline:
            self.sleep(0.1)
            self.reap_stopping()
            if graceful and any(s in (signal.SIGQUIT, signal.SIGINT) for s in self.signal_queue):
                log.info("second stop signal: stopping fast")
                graceful = False
                for worker in self.workers.values():
                    worker.signal(signal.SIGQUIT)
            self.signal_queue.clear()
        for worker in self.workers.values():
            log.warning("worker %s did not stop within %gs: sending SIGKILL", worker.describe(), limit)
            worker.signal(signal.SIGKILL)
        while self.workers:
            self.sleep(0.05)
            self.reap_stopping()
        log.info("greenroom master %d: stopped", os.getpid())

    def reap_stopping(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if not pid:
                return
            if self.redis is not None and self.redis.owns(pid):
                self.redis.pid = None
                continue
            worker = self.workers.pop(pid, None)
            if worker is not None:
                worker.heartbeat.close()
                process_exited(pid)
                log.info("worker %s exited (%s)", worker.describe(), describe_status(status))
