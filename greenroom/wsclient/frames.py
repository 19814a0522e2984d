"""The bytes of a client frame: opcodes, the header, masking, a close frame's payload.

Kept apart from the connection's state (connection.py) because it is pure encoding, with its
own reason to change (RFC 6455's rules), and because tests name the opcodes to send frames a
well-behaved client never would.
"""

from __future__ import annotations

import struct

try:  # C unmasking: ~100x faster than a Python loop (docs/architecture.md, "gevent-websocket").
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets is a hard dependency; keep working without it.

    def apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        if not n:
            return b""
        key = (mask * (n // 4 + 1))[:n]
        return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# Codes that must never be sent in a close frame (RFC 6455 §7.4.1): they only describe
# "no code" / "no close frame" / "TLS failure" locally.
_UNSENDABLE = frozenset((1005, 1006, 1015))


def _frame_header(opcode: int, length: int, fin: bool, rsv: int, masked: bool) -> bytes:
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    mbit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", b0, mbit | length)
    if length < 0x10000:
        return struct.pack("!BBH", b0, mbit | 126, length)
    return struct.pack("!BBQ", b0, mbit | 127, length)


def _close_payload(code: int | None, reason: str) -> bytes:
    if code is None or code in _UNSENDABLE:
        return b""
    data = struct.pack("!H", code) + reason.encode("utf-8")
    if len(data) > 125:
        raise ValueError("close reason longer than 123 bytes")
    return data
