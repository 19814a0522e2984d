"""Room-socket peers that behave badly on purpose: one that stops reading (a phone that lost
coverage: its connection stays open, nothing answers pings), one that never acknowledges its
join. Built on greenroom's own WebSocket client, which answers pings only while it reads.
"""

from __future__ import annotations

from greenroom.client import Client, JoinRoom, SeatReservation, parse_join_room
from greenroom.protocol.codes import Code
from greenroom.wsclient import ConnectionClosed, WebSocket, connect


class RawPeer:
    """One room socket for ``reservation``; reads only when told to."""

    def __init__(self, endpoint: str, reservation: SeatReservation,
                 extra: dict[str, str] | None = None) -> None:
        self.reservation = reservation
        self.url = Client(endpoint).room_url(reservation, extra)
        self.ws: WebSocket = connect(self.url, timeout=10)
        self.join: JoinRoom | None = None

    @property
    def session_id(self) -> str:
        return self.reservation.session_id

    def read_join_room(self, timeout: float = 10) -> JoinRoom:
        frame = self.ws.recv(timeout)
        assert isinstance(frame, bytes) and frame[0] == Code.JOIN_ROOM, f"not JOIN_ROOM: {frame!r}"
        self.join = parse_join_room(frame)
        return self.join

    def ack(self) -> None:
        self.ws.send(bytes((Code.JOIN_ROOM,)))

    def send(self, frame: bytes) -> None:
        self.ws.send(frame)

    def read_until_closed(self, timeout: float = 10) -> ConnectionClosed:
        """Read (answering pings) until the server ends the connection; its close."""
        while True:
            try:
                self.ws.recv(timeout)
            except ConnectionClosed as closed:
                return closed

    def abort(self) -> None:
        self.ws.abort()


def raw_join(endpoint: str, name: str, options: dict | None = None, *,
             ack: bool = True) -> RawPeer:
    """Matchmake ``name``, open its socket, read JOIN_ROOM and (with ``ack``) acknowledge it;
    then the peer reads nothing more until asked."""
    reservation = Client(endpoint).matchmake("joinOrCreate", name, options)
    peer = RawPeer(endpoint, reservation)
    peer.read_join_room()
    if ack:
        peer.ack()
    return peer


def resume_url_params(peer: RawPeer) -> dict[str, str]:
    """What the SDKs' automatic reconnection adds to the room URL."""
    assert peer.join is not None
    return {"reconnectionToken": peer.join.token, "skipHandshake": "true"}
