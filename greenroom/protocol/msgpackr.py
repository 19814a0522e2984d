"""Decoding client payloads: MessagePack plus msgpackr "records" (docs/protocol.md, "Payloads").

The official SDKs pack objects as record definitions (``d4 72 <id>`` + key array + values)
and later references (the bare byte ``<id>``), which plain ``msgpack.unpackb`` rejects.
Plain payloads take the fast C path; only frames that use records reach the Python walker.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from .depth import MAX_DEPTH, within_depth

_RECORD_EXT = 0x72


class PayloadError(ValueError):
    """The payload is not valid MessagePack (with or without records)."""


# What msgpack and the walker raise on hostile input: a list as a map key (TypeError), a
# timestamp with out-of-range nanoseconds or a year past 9999 (ValueError, OverflowError).
# All of it is the client's error: it must become a PayloadError, never escape the decoder.
_BAD_INPUT = (ValueError, TypeError, OverflowError, msgpack.UnpackException)


class _NeedsRecords(Exception):
    pass


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0:  # msgpackr's `undefined`
        return None
    if code == _RECORD_EXT:
        raise _NeedsRecords
    return msgpack.ExtType(code, data)


def unpack(data: bytes | memoryview) -> Any:
    """Decode one client payload; raises PayloadError with the reason when it is malformed."""
    if len(data) > 3 and data[0] == 0xD4 and data[1] == _RECORD_EXT:
        value = _unpack_top_record(data)
        if value is not _SLOW:
            return value
    try:
        value = msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False, raw=False,
                                timestamp=3)
    except _NeedsRecords:
        pass
    except msgpack.ExtraData:
        pass  # a record's key array shifts the structure: decode with records below
    except msgpack.StackError:  # over 1024 levels: msgpack says nothing more than its class
        raise PayloadError(f"payload nests deeper than {MAX_DEPTH} levels") from None
    except _BAD_INPUT as exc:
        raise PayloadError(f"malformed MessagePack: {exc}") from None
    else:
        # msgpack's C decoder takes up to 1024 levels; the walker below stops at MAX_DEPTH.
        if not within_depth(value):
            raise PayloadError(f"payload nests deeper than {MAX_DEPTH} levels")
        return value
    reader = _RecordReader(bytes(data))
    try:
        value = reader.read()
    except PayloadError:
        raise
    except (IndexError, struct.error) as exc:
        raise PayloadError("MessagePack payload ends early") from exc
    except UnicodeDecodeError as exc:
        raise PayloadError(f"invalid UTF-8 in a string: {exc}") from None
    except _BAD_INPUT as exc:
        raise PayloadError(f"malformed MessagePack: {exc}") from None
    if reader.pos != len(reader.buf):
        raise PayloadError(f"{len(reader.buf) - reader.pos} bytes left after the payload")
    return value


_SLOW = object()
_ARRAY16 = b"\xdc"


def _unpack_top_record(data: bytes | memoryview) -> Any:
    """The common case in C: a payload that *is* one record (``room.send("move", {x, y})``).

    ``d4 72 <id> [k1..kn] v1..vn`` is read as the msgpack array ``[[k1..kn], v1, .., vn]`` by
    one ``unpackb`` call, 4-5 times faster than the walker below (5.7 -> 1.2 µs for a 3-key
    object). Returns _SLOW, for the walker to decide, when the values hold anything
    record-specific or suspect: a nested record definition raises in the ext hook; a nested
    record *reference* (a bare 0x40..0x7f byte, read by msgpack as an integer) leaves bytes
    over, since it stands for more values than the one integer msgpack took; nesting near the
    depth limit is left to the walker's check.
    """
    count = data[3]
    if not 0x90 <= count <= 0x9F:  # keys in a fixarray: objects of up to 15 keys
        return _SLOW
    head = _ARRAY16 + (count - 0x8F).to_bytes(2, "big")  # n values + the key array
    try:
        items = msgpack.unpackb(head + bytes(data[3:]), ext_hook=_ext_hook, strict_map_key=False,
                                raw=False, timestamp=3)
    except (_NeedsRecords, *_BAD_INPUT):
        return _SLOW
    keys, values = items[0], items[1:]
    for key in keys:
        if key.__class__ is not str:
            return _SLOW
    for value in values:
        if not within_depth(value, MAX_DEPTH - 2):
            return _SLOW
    return dict(zip(keys, values, strict=True))



_FIXED = {
    0xCA: (4, struct.Struct(">f")), 0xCB: (8, struct.Struct(">d")),
    0xCC: (1, struct.Struct(">B")), 0xCD: (2, struct.Struct(">H")),
    0xCE: (4, struct.Struct(">I")), 0xCF: (8, struct.Struct(">Q")),
    0xD0: (1, struct.Struct(">b")), 0xD1: (2, struct.Struct(">h")),
    0xD2: (4, struct.Struct(">i")), 0xD3: (8, struct.Struct(">q")),
}
_EXT_SIZES = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}


class _RecordReader:
    """A small MessagePack walker that keeps the record table of one message."""

    __slots__ = ("buf", "pos", "records", "depth")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0
        self.records: dict[int, list[str]] = {}
        self.depth = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise IndexError
        chunk = self.buf[self.pos:end]
        self.pos = end
        return chunk

    def read(self) -> Any:
        buf = self.buf
        b = buf[self.pos]
        self.pos += 1
        if b < 0x40:
            return b
        if b < 0x80:
            keys = self.records.get(b)
            return b if keys is None else self.read_record_values(keys)
        if b < 0x90:
            return self.read_map(b & 0x0F)
        if b < 0xA0:
            return self.read_array(b & 0x0F)
        if b < 0xC0:
            return self.take(b & 0x1F).decode("utf-8")
        if b >= 0xE0:
            return b - 0x100
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if b in _FIXED:
            size, st = _FIXED[b]
            return st.unpack(self.take(size))[0]
        if b in (0xD9, 0xDA, 0xDB):
            return self.take(self.length(b - 0xD9)).decode("utf-8")
        if b in (0xC4, 0xC5, 0xC6):
            return self.take(self.length(b - 0xC4))
        if b in (0xDC, 0xDD):
            return self.read_array(self.length(b - 0xDC + 1))
        if b in (0xDE, 0xDF):
            return self.read_map(self.length(b - 0xDE + 1))
        if b in _EXT_SIZES:
            return self.read_ext(_EXT_SIZES[b], fixed=True)
        if b in (0xC7, 0xC8, 0xC9):
            return self.read_ext(self.length(b - 0xC7), fixed=False)
        raise PayloadError(f"byte 0x{b:02x} at offset {self.pos - 1} starts no MessagePack value")

    def length(self, width_code: int) -> int:
        size = (1, 2, 4)[width_code]
        return int.from_bytes(self.take(size), "big")

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise PayloadError(f"payload nests deeper than {MAX_DEPTH} levels")

    def read_array(self, n: int) -> list[Any]:
        self.nested()
        out = [self.read() for _ in range(n)]
        self.depth -= 1
        return out

    def read_map(self, n: int) -> dict[Any, Any]:
        self.nested()
        out = {}
        for _ in range(n):
            key = self.read()
            if isinstance(key, list | dict):
                key = repr(key)
            out[key] = self.read()
        self.depth -= 1
        return out

    def read_ext(self, size: int, *, fixed: bool) -> Any:
        code = self.take(1)[0]
        code = code - 0x100 if code >= 0x80 else code
        if fixed and code == _RECORD_EXT and size == 1:
            record_id = self.take(1)[0]
            keys = self.read()
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise PayloadError("a record definition must be followed by an array of key strings")
            self.records[record_id] = keys
            return self.read_record_values(keys)
        data = self.take(size)
        if code == 0:
            return None
        if code == -1:  # timestamp: let msgpack turn it into a datetime
            header = {4: b"\xd6", 8: b"\xd7"}.get(size, b"\xc7" + bytes([size]))
            return msgpack.unpackb(header + b"\xff" + data, timestamp=3)
        return msgpack.ExtType(code, data)

    def read_record_values(self, keys: list[str]) -> dict[str, Any]:
        self.nested()
        out = {key: self.read() for key in keys}
        self.depth -= 1
        return out
