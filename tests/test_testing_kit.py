"""The test kit (greenroom.testing) itself: its waits are exact, and the README's example runs
as a project of its own would run it."""

import os
import re
import subprocess
import sys

import gevent
import pytest

from greenroom import Room, Server
from greenroom.in_room import RoomUnavailable

from conftest import ROOT


class Slow(Room):
    """Each message blocks its handler for a while, as a database call would."""

    def on_create(self, options):
        self.handled = []
        self.on_message("work", self.work)

    def work(self, client, n):
        gevent.sleep(0.05)
        self.handled.append(n)


@pytest.fixture
def slow(greenroom_boot):
    server = Server()
    server.define("slow", Slow)
    return greenroom_boot(server)


def test_sync_returns_once_the_room_handled_every_message_sent_before(slow):
    player = slow.connect("slow", state_decoder=None)
    for n in range(5):
        player.send("work", n)
    room = slow.sync(player)
    assert room.handled == [0, 1, 2, 3, 4]  # 250 ms of handlers, all done, in order


def test_in_room_runs_between_the_rooms_events_and_fails_cleanly_on_a_disposed_room(slow):
    player = slow.connect("slow", state_decoder=None)
    room = slow.room_of(player)
    assert slow.in_room(room, lambda: room._gr.in_room) is True
    with pytest.raises(ZeroDivisionError):
        slow.in_room(room, lambda: 1 / 0)
    player.leave()
    slow.wait_for_dispose(room)
    assert slow.rooms == []
    with pytest.raises(RoomUnavailable):
        slow.in_room(room, lambda: None, timeout=0.2)
    with pytest.raises(LookupError):
        slow.room_of(player)


def test_the_readme_example_runs_as_a_project_of_its_own(tmp_path):
    with open(os.path.join(ROOT, "README.rst")) as f:
        readme = f.read()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", readme)
    files = {}
    for block in blocks:
        code = "\n".join(line[3:] for line in block.splitlines()) + "\n"
        first = code.lstrip().splitlines()[0]
        if first in ("# conftest.py", "# test_counter.py"):
            files[first[2:]] = code
    assert sorted(files) == ["conftest.py", "test_counter.py"]
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
