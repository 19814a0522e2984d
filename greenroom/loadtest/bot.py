"""One simulated player, and the script hooks that make it play.

A script is a Python file defining any of::

    def on_join(bot): ...                       # after the join; bot.send("move", {...})
    def on_message(bot, message_type, message): ...
    def on_tick(bot, delta_ms): ...             # every --tick milliseconds
    def on_leave(bot, code): ...

``on_join`` and ``on_tick`` run in the bot's own greenlet and may block (``bot.room.ping()``,
``bot.room.wait_for_message(...)``); ``on_message`` runs in the room's reader greenlet and must
not wait on its own room. A hook that raises is counted and reported, and the bot plays on.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import time
import traceback
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event

from ..client import Client, ClientError, ClientTimeout, RoomClosed
from ..client import Room as ClientRoom
from .stats import Stats

log = logging.getLogger("greenroom.loadtest")

HOOKS = ("on_join", "on_message", "on_tick", "on_leave")


class ScriptError(Exception):
    """The --script file cannot be used; the message says why."""


@dataclass
class Hooks:
    on_join: Any = None
    on_message: Any = None
    on_tick: Any = None
    on_leave: Any = None

    @classmethod
    def load(cls, path: str | None) -> Hooks:
        if path is None:
            return cls()
        if not os.path.isfile(path):
            raise ScriptError(f"--script {path}: no such file")
        spec = importlib.util.spec_from_file_location("greenroom_loadtest_script", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ScriptError(f"--script {path} failed to load: {type(exc).__name__}: {exc}") from exc
        hooks = cls(**{name: getattr(module, name, None) for name in HOOKS})
        for name in HOOKS:
            value = getattr(hooks, name)
            if value is not None and not callable(value):
                raise ScriptError(f"--script {path}: {name} is not a function")
        if not any(getattr(hooks, name) for name in HOOKS):
            raise ScriptError(f"--script {path} defines none of {', '.join(HOOKS)}")
        return hooks


@dataclass(frozen=True)
class BotPlan:
    """What every bot of a run does (the parts of the command line that bots need)."""

    room: str
    method: str
    options: dict[str, Any]
    join_timeout: float
    tick: float          # seconds between on_tick calls
    ping_interval: float  # seconds between RTT samples; 0: none


class Bot:
    """One client in one room: the object a script's hooks receive."""

    def __init__(self, index: int, client: Client, plan: BotPlan, hooks: Hooks, stats: Stats) -> None:
        self.index = index
        self.client = client
        self.plan = plan
        self.hooks = hooks
        self.stats = stats
        self.room: ClientRoom | None = None
        self.data: dict[str, Any] = {}  # the script's own per-bot state
        self._leaving = False
        self._done = gevent.event.Event()

    @property
    def session_id(self) -> str | None:
        return self.room.session_id if self.room is not None else None

    @property
    def state(self) -> Any:
        return self.room.state if self.room is not None else None

    def send(self, message_type: str | int, message: Any = None) -> bool:
        """Send a message to the room; False (and nothing sent) once the room is closed."""
        if self.room is None or self.room.closed:
            return False
        try:
            self.room.send(message_type, message)
        except RoomClosed:
            return False
        self.stats.messages_out += 1
        return True

    def leave(self) -> None:
        """Leave on purpose (not counted as dropped); the bot stops."""
        self._leaving = True
        if self.room is not None and not self.room.closed:
            self.room.leave(timeout=5)
        self._done.set()

    # -- the bot's greenlet --------------------------------------------------------------
    def run(self, stop: gevent.event.Event) -> None:
        self.stats.started += 1
        started = time.monotonic()
        try:
            room = getattr(self.client, self.plan.method)(self.plan.room, dict(self.plan.options),
                                                          self.plan.join_timeout)
        except (ClientError, OSError) as exc:
            self.stats.join_failed(exc)
            return
        self.room = room
        self.stats.joined(time.monotonic() - started)
        room.on_message("*", self._on_message)
        room.on_state_change(self._on_state)
        room.on_leave(self._on_leave)
        pinger = gevent.spawn(self._ping_forever) if self.plan.ping_interval > 0 else None
        try:
            self._hook("on_join", self)
            self._play(stop)
        finally:
            if pinger is not None:
                pinger.kill()
            self._finish()

    def _play(self, stop: gevent.event.Event) -> None:
        last = time.monotonic()
        while not (stop.is_set() or self._done.is_set()):
            if self.hooks.on_tick is None:
                gevent.wait([stop, self._done], count=1)
                return
            gevent.wait([stop, self._done], timeout=self.plan.tick, count=1)
            now = time.monotonic()
            if not (stop.is_set() or self._done.is_set()):
                self._hook("on_tick", self, (now - last) * 1000.0)
            last = now

    def _finish(self) -> None:
        room = self.room
        if room is not None and not room.closed:
            self._leaving = True
            try:
                room.leave(timeout=5)
            except (ClientError, RuntimeError):
                room.drop()

    def _ping_forever(self) -> None:
        room = self.room
        assert room is not None
        gevent.sleep(random.uniform(0, self.plan.ping_interval))  # spread the pings out
        while not room.closed:
            try:
                self.stats.rtt(room.ping(timeout=5))
            except ClientTimeout:
                self.stats.ping_timeouts += 1
            except (RoomClosed, ClientError):
                return
            gevent.sleep(self.plan.ping_interval)

    # -- callbacks (reader greenlet) -----------------------------------------------------
    def _on_message(self, message_type: Any, message: Any) -> None:
        self.stats.messages_in += 1
        self._hook("on_message", self, message_type, message)

    def _on_state(self, state: Any) -> None:
        self.stats.state_frames += 1

    def _on_leave(self, code: int, reason: str) -> None:
        self.stats.left(code, expected=self._leaving)
        self._done.set()
        self._hook("on_leave", self, code)

    def _hook(self, name: str, *args: Any) -> None:
        hook = getattr(self.hooks, name)
        if hook is None:
            return
        try:
            hook(*args)
        except Exception as exc:  # noqa: BLE001 - a script bug must not end the run
            key = f"{name}: {type(exc).__name__}: {exc}"
            if key not in self.stats.script_errors:
                log.error("script %s raised (bot %d; further identical errors only counted):\n%s",
                          name, self.index, traceback.format_exc().rstrip())
            self.stats.script_errors[key] += 1
