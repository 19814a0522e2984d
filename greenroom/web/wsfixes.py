"""gevent-websocket 0.10.1, kept and fixed: applying the fixes, and checking they hold.

gevent-websocket carries the handshake and the gunicorn worker our users already run, but its last
release (2017) has defects that matter to a game server: per-byte Python unmasking (a 64 KiB frame
blocks the worker for milliseconds), close codes that never reach the wire (Colyseus clients read
4000/4001/4002 from them), no frame size limit, unmasked client frames accepted, 500s on malformed
handshakes and a ``KeyError`` on Unix-socket binds.

The fixes live in three modules, re-exported here so that ``from greenroom.web.wsfixes import
Handler, WebSocket, apply`` keeps working:

* :mod:`greenroom.web.websocket` -- :class:`WebSocket`, the fixed connection
  ``environ["wsgi.websocket"]`` holds, and its connection contract (its reading half is in
  :mod:`greenroom.web.wsread`, its sending half in :mod:`greenroom.web.wssend`);
* :mod:`greenroom.web.handler` -- :class:`Handler`, the pywsgi handler to serve with (handshake,
  Unix-socket and error-path fixes, and the hand-off of sockets owned by a sibling worker);
* :mod:`greenroom.web.unmask` -- the C unmasker.

This module: :func:`apply` (idempotent class-level patches and the version pin check),
:func:`revert` (for tests) and :func:`fixes_applied` (what a test or a health endpoint checks).
``greenroom.web.gunicorn_worker.GeventWebSocketWorker`` is the gunicorn worker.
"""

from __future__ import annotations

import logging
import sys
import warnings
from importlib import metadata
from typing import Any

import geventwebsocket
import geventwebsocket.handler as _gws_handler
from geventwebsocket.websocket import Header

from . import unmask
from .handler import Handler
from .unmask import UNMASK_IMPL, apply_mask, header_mask_payload, mask_implementations
from .websocket import (
    ConnectionClosed,
    InvalidUTF8,
    MessageTooBig,
    ProtocolError,
    UnmaskedFrame,
    WebSocket,
    WebSocketError,
    _close_payload,
)
from .wsread import RECV_SIZE, Reader
from .wssend import Sender

__all__ = [
    "PINNED_VERSION",
    "RECV_SIZE",
    "UNMASK_IMPL",
    "ConnectionClosed",
    "GeventWebSocketVersionWarning",
    "Handler",
    "InvalidUTF8",
    "MessageTooBig",
    "ProtocolError",
    "UnmaskedFrame",
    "WebSocket",
    "WebSocketError",
    "_close_payload",
    "apply",
    "apply_mask",
    "check_pinned_version",
    "fixes_applied",
    "installed_version",
    "mask_implementations",
    "revert",
]

log = logging.getLogger(__name__)

PINNED_VERSION = "0.10.1"



class GeventWebSocketVersionWarning(RuntimeWarning):
    """The fixes were written against gevent-websocket 0.10.1 internals."""


def installed_version() -> str:
    """The installed gevent-websocket version, as pip sees it."""
    try:
        return metadata.version("gevent-websocket")
    except metadata.PackageNotFoundError:
        return ".".join(str(part) for part in geventwebsocket.VERSION[:3])


def check_pinned_version() -> bool:
    """Warn (GeventWebSocketVersionWarning + log) unless gevent-websocket is 0.10.1: the fixes
    override its internals and are only known to be right for that release."""
    version = installed_version()
    if version == PINNED_VERSION:
        return True
    message = (
        f"gevent-websocket {version} is installed; greenroom's fixes (greenroom.web.wsfixes) "
        f"target {PINNED_VERSION} exactly. Install gevent-websocket=={PINNED_VERSION}."
    )
    log.warning(message)
    warnings.warn(message, GeventWebSocketVersionWarning, stacklevel=3)
    return False


_UPSTREAM: dict[str, Any] = {}


def _remember_upstream() -> None:
    if _UPSTREAM:
        return
    for name in ("mask_payload", "unmask_payload"):
        current = Header.__dict__[name]
        if current is not header_mask_payload:
            _UPSTREAM[f"Header.{name}"] = current
    current_ws = _gws_handler.WebSocket
    if not (isinstance(current_ws, type) and issubclass(current_ws, WebSocket)):
        _UPSTREAM["handler.WebSocket"] = current_ws


def apply(*, patch_stock_handler: bool = False) -> dict[str, bool]:
    """Patch gevent-websocket in place (idempotent) and check the version pin; returns
    fixes_applied().

    Always: ``Header.mask_payload``/``unmask_payload`` use the C unmasker, which changes nothing
    but speed for any code still reading frames through gevent-websocket.

    ``patch_stock_handler=True`` also makes gevent-websocket's own WebSocketHandler (hence its
    WebSocketServer and its gunicorn worker) build our WebSocket. Off by default because it
    changes behaviour process-wide for servers that chose the stock handler: a 64 KiB message
    limit, exceptions on protocol errors, bytes instead of bytearray. Handler needs neither.
    """
    check_pinned_version()
    _remember_upstream()
    Header.mask_payload = header_mask_payload
    Header.unmask_payload = header_mask_payload
    current_ws = _gws_handler.WebSocket
    if patch_stock_handler and not (
        isinstance(current_ws, type) and issubclass(current_ws, WebSocket)
    ):
        _gws_handler.WebSocket = WebSocket
    return fixes_applied()


def revert() -> None:
    """Undo apply(). Exists so tests can show each fix matters; servers never need it."""
    _remember_upstream()
    for name in ("mask_payload", "unmask_payload"):
        original = _UPSTREAM.get(f"Header.{name}")
        if original is not None:
            setattr(Header, name, original)
    original_ws = _UPSTREAM.get("handler.WebSocket")
    if original_ws is not None:
        _gws_handler.WebSocket = original_ws


def _live_websocket_classes() -> list[type]:
    classes = [Handler.websocket_class]
    stock = _gws_handler.WebSocket
    if isinstance(stock, type) and issubclass(stock, WebSocket):  # apply(patch_stock_handler=True)
        classes.append(stock)
    for handler in _live_handlers():
        classes.append(getattr(handler, "websocket_class", WebSocket))
    return classes


def _live_handlers() -> list[type]:
    handlers: list[type] = [Handler]
    worker_module = sys.modules.get("greenroom.web.gunicorn_worker")
    worker = getattr(worker_module, "GeventWebSocketWorker", None)
    if worker is not None:
        handlers.append(worker.wsgi_handler)
    return handlers


# Our implementations as defined, so that fixes_applied() also notices if someone replaces them
# on WebSocket or Handler themselves.
_IMPLEMENTATIONS: dict[type, dict[str, Any]] = {
    # the reading half lives in wsread.py, the sending half in wssend.py
    WebSocket: {**vars(Reader), **vars(Sender), **vars(WebSocket)},
    Handler: dict(vars(Handler)),
}


def _uses(classes: list[type], reference: type, *names: str) -> bool:
    ours = _IMPLEMENTATIONS[reference]
    return all(
        isinstance(cls, type) and getattr(cls, name, None) is ours[name]
        for cls in classes
        for name in names
    )


def fixes_applied() -> dict[str, bool]:
    """One entry per D7 fix: True when the classes that serve connections (Handler, the gunicorn
    worker's handler once imported, the stock handler if patched) carry it. ``fast_unmask`` also
    needs apply() to have patched gevent-websocket's Header."""
    sockets = _live_websocket_classes()
    handlers = _live_handlers()
    header_fast = all(
        Header.__dict__[name] is header_mask_payload for name in ("mask_payload", "unmask_payload")
    )
    limit_ok = all(
        isinstance(getattr(cls, "max_message_size", None), int) and cls.max_message_size > 0
        for cls in sockets
    )
    return {
        "fast_unmask": header_fast
        and unmask.apply_mask is not None
        and _uses(sockets, WebSocket, "read_frame"),
        "single_utf8_validation": _uses(sockets, WebSocket, "read_message", "__init__"),
        "close_codes": _uses(sockets, WebSocket, "close", "handle_close"),
        "message_size_limit": limit_ok and _uses(sockets, WebSocket, "read_frame", "read_message"),
        "reject_unmasked": _uses(sockets, WebSocket, "read_frame", "receive"),
        "handshake_validation": _uses(
            handlers, Handler, "upgrade_websocket", "upgrade_connection", "run_application"
        ),
        "unix_socket_clients": _uses(handlers, Handler, "run_websocket", "_client_key"),
        "robust_connection": _uses(
            sockets, WebSocket, "receive", "send_frame", "handle_ping", "__del__", "_finish"
        )
        and _uses(handlers, Handler, "run_websocket", "logger"),
    }
