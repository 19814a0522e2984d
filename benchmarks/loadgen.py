"""Drive ``loadgen.mjs`` against one running server and sample /proc at its marks.

The load generator announces the edges of its measurement window on stdout (``{"mark": ...}``)
and waits for a reply on stdin; the harness samples the server's process tree and the load
generator itself right then. So both servers, and the load generator's own CPU share, are
measured by the same code (procstat) over the same window as the throughput.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import procstat
from .servers import BENCH_DIR, Processes, RunningServer

LOADGEN = BENCH_DIR / "loadgen.mjs"


@dataclass(frozen=True)
class MarkSample:
    time: float
    server: procstat.Sample
    loadgen: procstat.Sample
    machine_busy: float  # CPU seconds of the whole machine so far


@dataclass
class LoadResult:
    result: dict[str, Any]
    marks: dict[str, MarkSample] = field(default_factory=dict)

    def window(self, first: str = "start", last: str = "end") -> Window:
        a, b = self.marks[first], self.marks[last]
        server = b.server.cpu_seconds - a.server.cpu_seconds
        loadgen = b.loadgen.cpu_seconds - a.loadgen.cpu_seconds
        other = max(0.0, b.machine_busy - a.machine_busy - server - loadgen)
        kernel = b.server.system_seconds - a.server.system_seconds
        return Window(b.time - a.time, server, loadgen, other, kernel)


@dataclass(frozen=True)
class Window:
    seconds: float
    server_cpu: float  # CPU seconds the server tree used in the window
    loadgen_cpu: float
    other_cpu: float  # everything else on the machine (the harness, other users' processes)
    server_kernel_cpu: float  # the part of server_cpu spent in the kernel

    @property
    def server_cpu_pct(self) -> float:
        return 100.0 * self.server_cpu / self.seconds if self.seconds else 0.0

    @property
    def loadgen_cpu_pct(self) -> float:
        return 100.0 * self.loadgen_cpu / self.seconds if self.seconds else 0.0

    @property
    def server_kernel_pct(self) -> float:
        """Share of the server's CPU spent in the kernel: what a faster interpreter cannot win."""
        return 100.0 * self.server_kernel_cpu / self.server_cpu if self.server_cpu else 0.0

    @property
    def other_cpu_pct(self) -> float:
        return 100.0 * self.other_cpu / self.seconds if self.seconds else 0.0


class LoadError(RuntimeError):
    """The load generator failed or gave no result."""


def run(processes: Processes, server: RunningServer, scenario: str, params: dict[str, Any],
        timeout: float, log_path: Path) -> LoadResult:
    """Run one scenario of loadgen.mjs against ``server``; bounded by ``timeout`` seconds."""
    config = {"scenario": scenario, "host": "127.0.0.1", "port": server.port, "timeout": timeout,
              **params}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as stderr:
        proc = processes.popen(["node", str(LOADGEN), json.dumps(config)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=stderr, text=True)
    # loadgen.mjs exits by itself after `timeout`; this is for a generator that hangs anyway.
    watchdog = threading.Timer(timeout + 10, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    load = LoadResult({})
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            message = json.loads(line)
            if "mark" in message:
                load.marks[message["mark"]] = MarkSample(
                    time.monotonic(), procstat.sample(server.pid),
                    procstat.sample(proc.pid, tree=False), procstat.machine_busy_seconds())
                proc.stdin.write("\n")
                proc.stdin.flush()
            elif "result" in message:
                load.result = message["result"]
        proc.wait(10)
    finally:
        watchdog.cancel()
        processes.stop(proc, grace=1.0)
    if not load.result:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise LoadError(f"loadgen {scenario} against {server.spec.name} gave no result "
                        f"(exit {proc.returncode}):\n{tail}")
    return load
