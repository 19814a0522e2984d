"""greenroom.metrics.multiprocess: what a master does so that its workers' figures add up,
checked against prometheus_client's own multiprocess reader and its mark_process_dead."""

import os
import shutil
import subprocess
import sys

from prometheus_client import CollectorRegistry, Gauge, multiprocess

from greenroom.metrics import prepare_multiprocess, process_exited
from greenroom.metrics.multiprocess import ENV

LIVE_MODES = sorted(mode for mode in Gauge._MULTIPROC_MODES if mode.startswith("live"))

WORKER = f"""
from prometheus_client import Counter, Gauge
for mode in {LIVE_MODES!r} + ["all", "max"]:
    Gauge("g_" + mode, "a gauge", multiprocess_mode=mode).set(3)
Counter("c", "a counter").inc(5)
"""


def run_worker(path):
    """A process that writes one gauge of each mode and a counter, then exits; its pid."""
    proc = subprocess.run([sys.executable, "-c", WORKER + "import os; print(os.getpid())"],
                          env={**os.environ, ENV: path}, capture_output=True, text=True, check=True)
    return int(proc.stdout)


def collected(path):
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)
    return {sample.name: sample.value for family in registry.collect() for sample in family.samples
            if not sample.labels.get("pid")}


def test_a_dead_workers_live_gauges_leave_as_with_mark_process_dead(tmp_path, monkeypatch):
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    os.makedirs(ours)
    pids = [run_worker(ours), run_worker(ours)]
    shutil.copytree(ours, theirs)
    assert collected(ours)["g_livesum"] == 6 and collected(ours)["c_total"] == 10

    monkeypatch.setenv(ENV, ours)
    process_exited(pids[0])
    multiprocess.mark_process_dead(pids[0], theirs)
    assert sorted(os.listdir(ours)) == sorted(os.listdir(theirs))
    after = collected(ours)
    assert after["g_livesum"] == 3  # the survivor's only
    assert after["c_total"] == 10  # a dead worker's counts still happened
    assert after["g_max"] == 3


def test_prepare_gives_the_workers_a_fresh_directory_in_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "")  # unset for greenroom, and restored to absent afterwards
    stale = tmp_path / "prometheus"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"old")
    assert prepare_multiprocess(str(tmp_path)) == str(stale)
    assert os.environ[ENV] == str(stale) and os.listdir(stale) == []


def test_an_operators_directory_is_kept_as_it_is(tmp_path, monkeypatch):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "counter_1.db").write_bytes(b"kept")
    monkeypatch.setenv(ENV, str(theirs))
    assert prepare_multiprocess(str(tmp_path / "run")) == str(theirs)
    assert os.listdir(theirs) == ["counter_1.db"]
    assert not (tmp_path / "run").exists()



def test_the_environment_is_restored_after_prepare(tmp_path):
    assert ENV not in os.environ  # the tests above left no multiprocess directory behind
