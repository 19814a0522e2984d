"""A room's message handlers, and how a client frame finds its handler.

``on_message`` handlers take MessagePack messages and answer ROOM_REQUESTs (@colyseus/sdk 0.18
``room.request``); ``on_bytes`` handlers take raw-bytes messages. As in Colyseus 0.17+, a bytes
message without its own handler goes to the ``"*"`` handler, but a request is answered only by
its type's own handler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .errors import GreenroomError
from .protocol import frames
from .protocol.codes import Code, ErrorCode, ResponseStatus
from .session import Client

log = logging.getLogger("greenroom.room")

MessageHandler = Callable[..., Any]
# report(exc, where, client): log an exception raised by room code, with the room's context.
Report = Callable[[BaseException, str, "Client | None"], None]


class MessageRouter:
    def __init__(self, report: Report) -> None:
        self.handlers: dict[Any, MessageHandler] = {}
        self.byte_handlers: dict[Any, MessageHandler] = {}
        self._report = report

    def on_message(self, message_type: frames.MessageType, handler: MessageHandler) -> None:
        if message_type != "*":
            frames.encode_type(message_type)  # validates the type
        self.handlers[message_type] = handler

    def on_bytes(self, message_type: frames.MessageType, handler: MessageHandler) -> None:
        frames.encode_type(message_type)
        self.byte_handlers[message_type] = handler

    def dispatch(self, room_id: str, room_name: str, client: Client,
                 frame: frames.ClientFrame) -> None:
        """Run the handler for ``frame`` (in the room's line of execution)."""
        if frame.code == Code.ROOM_REQUEST:
            self._request(room_id, room_name, client, frame)
            return
        handlers = self.byte_handlers if frame.code == Code.ROOM_DATA_BYTES else self.handlers
        handler = handlers.get(frame.type)
        if handler is not None:
            try:  # inline, and the error's wording built only on error: this runs per message
                handler(client, frame.payload)
            except Exception as exc:
                self._report(exc, f"handler for {frame.type!r}", client)
        elif "*" in self.handlers:
            self._run("handler for '*'", self.handlers["*"], client, frame.type, frame.payload)
        else:
            log.warning("room %s (%s): no handler for message %r from %s", room_id, room_name,
                        frame.type, client.session_id)
            client.error(ErrorCode.INVALID_PAYLOAD,
                         f'room onMessage for "{frame.type}" not registered.')

    def _run(self, where: str, handler: MessageHandler, client: Client, *args: Any) -> None:
        try:
            handler(client, *args)
        except Exception as exc:
            self._report(exc, where, client)

    def _request(self, room_id: str, room_name: str, client: Client,
                 frame: frames.ClientFrame) -> None:
        handler = self.handlers.get(frame.type)
        request_id = frame.request_id or 0
        if handler is None:
            log.warning("room %s (%s): no handler for request %r from %s", room_id, room_name,
                        frame.type, client.session_id)
            client.raw(frames.room_response(request_id, ResponseStatus.ERROR, {
                "name": "no_handler",
                "message": f'room "{room_name}" has no onMessage("{frame.type}") handler '
                           "to answer this request."}))
            return
        try:
            result = handler(client, frame.payload)
        except GreenroomError as exc:
            client.raw(frames.room_response(request_id, ResponseStatus.REJECTED, exc.message))
            return
        except Exception as exc:
            self._report(exc, f"request handler for {frame.type!r}", client)
            client.raw(frames.room_response(request_id, ResponseStatus.ERROR,
                                            {"name": type(exc).__name__, "message": str(exc)}))
            return
        client.raw(frames.room_response(request_id, ResponseStatus.OK,
                                        frames.UNDEFINED if result is None else result))
