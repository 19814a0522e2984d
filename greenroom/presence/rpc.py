"""Calls between processes over presence pub/sub: request, reply, timeout, idempotent retry.

Each process listens on two channels, subscribed once by ``start()`` and so always before any
request of ours is published (no reply can be lost to a late SUBSCRIBE):

* ``<prefix><process_id>``: requests ``{"c": call id, "k": idempotency key or None,
  "m": method, "a": args, "r": reply channel, "f": caller}``;
* ``<prefix><process_id>:reply``: replies ``{"c": call id, "ok": result}`` or
  ``{"c": call id, "e": [exception type, message]}``.

Handlers run in a greenlet of their own, so a slow handler never holds up the presence fan-out
greenlet (which every room of the process depends on).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from ..metrics import record
from .base import Presence

log = logging.getLogger(__name__)

Handler = Callable[..., Any]


class RemoteCallFailed(Exception):
    """A call to another process did not produce a result."""


class RemoteCallTimeout(RemoteCallFailed):
    def __init__(self, process_id: str, method: str, timeout: float) -> None:
        super().__init__(
            f"process {process_id!r} did not answer {method!r} within {timeout:g}s "
            "(dead, stalled or unreachable)"
        )
        self.process_id = process_id
        self.method = method
        self.timeout = timeout


class RemoteProcessGone(RemoteCallFailed):
    """Nobody listens on the process's request channel: it is gone (or its connection to the
    presence is being re-established). Known at once, from the publish's receiver count, so the
    request certainly did not run."""

    def __init__(self, process_id: str, method: str) -> None:
        super().__init__(f"process {process_id!r} is not listening (gone?); {method!r} not sent")
        self.process_id = process_id
        self.method = method


class RemoteCallError(RemoteCallFailed):
    """The remote handler raised: its exception type and message travel back."""

    def __init__(self, process_id: str, method: str, remote_type: str, message: str) -> None:
        super().__init__(f"{remote_type}: {message} (in {method!r} on process {process_id!r})")
        self.process_id = process_id
        self.method = method
        self.remote_type = remote_type
        self.remote_message = message


class Idempotent:
    """Run a function at most once per key; a repeated key gets the first outcome.

    A caller that timed out cannot know whether its request ran, so it retries with the same
    key. The retry joins the first run if it is still going and otherwise reuses its result or
    exception, kept for ``ttl`` seconds after it finished, so a retried "create room" never
    makes a second room.
    """

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._runs: dict[str, tuple[gevent.event.AsyncResult, list[float]]] = {}

    def run(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._forget_old()
        known = self._runs.get(key)
        if known is not None:
            return known[0].get()
        outcome: gevent.event.AsyncResult = gevent.event.AsyncResult()
        finished_at = [float("inf")]
        self._runs[key] = (outcome, finished_at)
        try:
            outcome.set(fn(*args, **kwargs))
        except Exception as exc:
            outcome.set_exception(exc)
        except BaseException:
            del self._runs[key]  # killed, not failed: let a retry run it again
            raise
        finally:
            finished_at[0] = time.monotonic()
        return outcome.get()

    def __len__(self) -> int:
        return len(self._runs)

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - self.ttl
        for key in [k for k, (_, done) in self._runs.items() if done[0] <= cutoff]:
            del self._runs[key]


class RPC:
    """Request/reply between processes of one deployment, on any Presence."""

    def __init__(
        self,
        presence: Presence,
        process_id: str,
        *,
        prefix: str = "greenroom:rpc:",
        timeout: float = 5.0,
        result_ttl: float = 60.0,
    ) -> None:
        self.presence = presence
        self.process_id = process_id
        self.prefix = prefix
        self.timeout = timeout
        self.idempotent = Idempotent(result_ttl)
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[str, gevent.event.AsyncResult] = {}
        self._started = False

    @property
    def request_channel(self) -> str:
        return f"{self.prefix}{self.process_id}"

    @property
    def reply_channel(self) -> str:
        return f"{self.prefix}{self.process_id}:reply"

    def register(self, method: str, handler: Handler) -> None:
        self._handlers[method] = handler

    def start(self) -> None:
        """Listen for requests and replies; calls made before this start it themselves."""
        if self._started:
            return
        self.presence.subscribe(self.reply_channel, self._on_reply)
        self.presence.subscribe(self.request_channel, self._on_request)
        self._started = True

    def close(self) -> None:
        if not self._started:
            return
        self._started = False
        self.presence.unsubscribe(self.request_channel, self._on_request)
        self.presence.unsubscribe(self.reply_channel, self._on_reply)
        for waiter in self._pending.values():
            waiter.set_exception(RemoteCallFailed("RPC closed while the call was pending"))

    # -- calling -------------------------------------------------------------------------
    def call(
        self,
        process_id: str,
        method: str,
        *args: Any,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> Any:
        """Run ``method(*args)`` on ``process_id`` and return its result.

        Give ``request_id`` to make the call safe to retry: the remote process runs it once per
        id and answers retries with the first outcome. Raises RemoteCallTimeout or
        RemoteCallError; RemoteProcessGone at once when nobody listens for ``process_id``;
        PresenceUnavailable if the request cannot even be sent.
        """
        self.start()
        timeout = self.timeout if timeout is None else timeout
        record.active.rpc_call(method)
        call_id = uuid.uuid4().hex
        waiter: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self._pending[call_id] = waiter
        try:
            receivers = self.presence.publish(
                f"{self.prefix}{process_id}",
                {
                    "c": call_id,
                    "k": request_id,
                    "m": method,
                    "a": list(args),
                    "r": self.reply_channel,
                    "f": self.process_id,
                },
            )
            if receivers == 0:
                raise RemoteProcessGone(process_id, method)
            if not waiter.wait(timeout):
                record.active.rpc_timeout(method)
                raise RemoteCallTimeout(process_id, method, timeout)
            reply = waiter.get()
        finally:
            self._pending.pop(call_id, None)
        if "e" in reply:
            remote_type, message = _error_parts(reply["e"])
            raise RemoteCallError(process_id, method, remote_type, message)
        return reply.get("ok")

    def _on_reply(self, reply: Any) -> None:
        if not isinstance(reply, dict) or not isinstance(reply.get("c"), str):
            log.warning("rpc: process %s skipped a malformed reply: %.200r", self.process_id, reply)
            return
        waiter = self._pending.get(reply["c"])
        if waiter is None:
            log.debug("rpc: late reply %s ignored (the caller gave up)", reply["c"])
            return
        waiter.set(reply)

    # -- serving -------------------------------------------------------------------------
    def _on_request(self, request: Any) -> None:
        if not _is_request(request):
            log.warning(
                "rpc: process %s skipped a malformed request: %.200r", self.process_id, request
            )
            return
        gevent.spawn(self._serve, request)

    def _serve(self, request: dict[str, Any]) -> None:
        key = request.get("k")
        if key is None:
            outcome = self._outcome(request["m"], request["a"])
        else:
            outcome = self.idempotent.run(
                f"{request['m']}:{key}", self._outcome, request["m"], request["a"]
            )
        self._reply(request, outcome)

    def _outcome(self, method: str, args: list[Any]) -> dict[str, Any]:
        """The reply body, never an exception, so that a failure is cached like a success."""
        handler = self._handlers.get(method)
        if handler is None:
            return {"e": ["LookupError", f"no method {method!r} on process {self.process_id!r}"]}
        try:
            return {"ok": handler(*args)}
        except Exception as exc:
            log.info(
                "rpc: %s on process %s raised %s: %s",
                method,
                self.process_id,
                type(exc).__name__,
                exc,
            )
            return {"e": [type(exc).__name__, str(exc)]}

    def _reply(self, request: dict[str, Any], outcome: dict[str, Any]) -> None:
        reply_to, call_id = request["r"], request["c"]
        try:
            try:
                self.presence.publish(reply_to, {"c": call_id, **outcome})
            except TypeError as exc:  # the result cannot be serialised: tell the caller why
                self.presence.publish(reply_to, {"c": call_id, "e": ["TypeError", str(exc)]})
        except Exception as exc:
            log.warning(
                "rpc: process %s could not reply to %s for %s: %s",
                self.process_id,
                request.get("f"),
                request["m"],
                exc,
            )


def _is_request(request: Any) -> bool:
    return (
        isinstance(request, dict)
        and isinstance(request.get("c"), str)
        and isinstance(request.get("m"), str)
        and isinstance(request.get("r"), str)
        and isinstance(request.get("a"), list)
        and (request.get("k") is None or isinstance(request.get("k"), str))
    )


def _error_parts(error: Any) -> tuple[str, str]:
    if isinstance(error, list) and len(error) == 2:
        return str(error[0]), str(error[1])
    return "RemoteError", str(error)
