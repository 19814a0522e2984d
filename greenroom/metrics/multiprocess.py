"""Several workers, one /metrics: prometheus_client's multiprocess mode, set up by a master.

Why this mode and not the master collecting: each worker writes its figures to memory-mapped
files in one directory and a scrape of any worker reads them all, so no process has to be
asked anything at scrape time, a dead worker's counts stay in the sums (as counters must:
its joins did happen), and the master keeps no metrics code and no sockets of its own.
A master collecting from live workers would lose the counts of every worker that died.

A master calls two functions (``greenroom serve``'s does; a gunicorn config calls them from
its ``on_starting`` and ``child_exit`` hooks):

* ``prepare_multiprocess(run_dir)`` before it forks: points ``PROMETHEUS_MULTIPROC_DIR`` at a
  fresh directory in its private run dir, which the workers inherit;
* ``process_exited(pid)`` when it reaps a worker: that worker's live gauges (rooms, clients)
  leave the sums at once.

Neither loads prometheus_client: it imports ``ssl``, and a pre-fork master must not load what a
worker monkey-patches after the fork (docs/architecture.md, "Boot order"). So
``process_exited`` removes the dead process's files of the ``live*`` gauge modes itself, the
files ``prometheus_client.multiprocess.mark_process_dead`` removes (a test holds the two to
the same effect).
"""

from __future__ import annotations

import glob
import importlib.util
import os

__all__ = ["ENV", "directory", "prepare_multiprocess", "process_exited"]

#: The variable prometheus_client reads when it is imported (in each worker, after the fork).
ENV = "PROMETHEUS_MULTIPROC_DIR"


def directory() -> str | None:
    """The multiprocess directory of this process, or None (one process, its own registry)."""
    return os.environ.get(ENV) or None


def prepare_multiprocess(run_dir: str) -> str | None:
    """Before forking workers: give them one metrics directory, ``run_dir/prometheus``.

    A directory the operator set already (``PROMETHEUS_MULTIPROC_DIR`` in the environment) is
    kept and left as it is: it is theirs to wipe between runs. Nothing is set up when
    prometheus_client is not installed (it is looked up, not imported). Returns the directory.
    """
    if directory() is not None:
        return directory()
    if importlib.util.find_spec("prometheus_client") is None:
        return None
    path = os.path.join(run_dir, "prometheus")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    os.environ[ENV] = path
    return path


def process_exited(pid: int) -> None:
    """A worker is gone: its live gauges stop counting (its counters and histograms stay)."""
    path = directory()
    if path is None:
        return
    for live in glob.glob(os.path.join(glob.escape(path), f"gauge_live*_{int(pid)}.db")):
        try:
            os.remove(live)
        except FileNotFoundError:
            pass
