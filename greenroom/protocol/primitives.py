"""The two primitive encodings of @colyseus/schema used inside frames (docs/protocol.md, "Frames").

They look like MessagePack but are little-endian, and ``number`` follows JavaScript's
int32/float32 rules, so neither the msgpack package nor struct defaults fit.
"""

from __future__ import annotations

import math
import struct

_f32 = struct.Struct("<f")
_f64 = struct.Struct("<d")
_u16 = struct.Struct("<H")
_i16 = struct.Struct("<h")
_u32 = struct.Struct("<I")
_i32 = struct.Struct("<i")

_MAX_SAFE = 9007199254740991.0
_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

# Small non-negative integers dominate (refIds, indexes, lengths): precompute them.
_SMALL = [bytes([i]) for i in range(128)]


def encode_number(value: float | int) -> bytes:
    """Encode like the official encoder: integers in int32/uint32 range as ints, else float32 or float64."""
    if value.__class__ is int or value.__class__ is bool:
        v = int(value)
        if 0 <= v < 128:
            return _SMALL[v]
        if _INT32_MIN <= v <= _INT32_MAX:
            return _encode_int(v)
        return _encode_float(float(v))
    if math.isnan(value):
        return b"\x00"
    if math.isinf(value):
        return b"\xcb" + _f64.pack(_MAX_SAFE if value > 0 else -_MAX_SAFE)
    if value == int(value) and _INT32_MIN <= value <= _INT32_MAX:
        return _encode_int(int(value))
    return _encode_float(value)


def _encode_int(v: int) -> bytes:
    if v >= 0:
        if v < 0x80:
            return _SMALL[v]
        if v < 0x100:
            return b"\xcc" + bytes([v])
        if v < 0x10000:
            return b"\xcd" + _u16.pack(v)
        return b"\xce" + _u32.pack(v)
    if v >= -0x20:
        return bytes([0xE0 | (v + 0x20)])
    if v >= -0x80:
        return b"\xd0" + struct.pack("<b", v)
    if v >= -0x8000:
        return b"\xd1" + _i16.pack(v)
    return b"\xd2" + _i32.pack(v)


def _encode_float(v: float) -> bytes:
    try:
        as32 = _f32.unpack(_f32.pack(v))[0]
    except OverflowError:
        return b"\xcb" + _f64.pack(v)
    if abs(abs(as32) - abs(v)) < 1e-4:
        return b"\xca" + _f32.pack(v)
    return b"\xcb" + _f64.pack(v)


def encode_string(value: str | None) -> bytes:
    data = value.encode("utf-8") if value else b""
    n = len(data)
    if n < 32:
        return bytes([0xA0 | n]) + data
    if n < 0x100:
        return b"\xd9" + bytes([n]) + data
    if n < 0x10000:
        return b"\xda" + _u16.pack(n) + data
    return b"\xdb" + _u32.pack(n) + data


def decode_number(buf: bytes, pos: int) -> tuple[float | int, int]:
    """Return (value, next position); raises ValueError on a byte that starts no number."""
    prefix = buf[pos]
    pos += 1
    if prefix < 0x80:
        return prefix, pos
    if prefix >= 0xE0:
        return prefix - 0x100, pos
    if prefix == 0xCA:
        return _f32.unpack_from(buf, pos)[0], pos + 4
    if prefix == 0xCB:
        return _f64.unpack_from(buf, pos)[0], pos + 8
    if prefix == 0xCC:
        return buf[pos], pos + 1
    if prefix == 0xCD:
        return _u16.unpack_from(buf, pos)[0], pos + 2
    if prefix == 0xCE:
        return _u32.unpack_from(buf, pos)[0], pos + 4
    if prefix == 0xCF:
        low, high = struct.unpack_from("<II", buf, pos)
        return high * 0x100000000 + low, pos + 8
    if prefix == 0xD0:
        return struct.unpack_from("<b", buf, pos)[0], pos + 1
    if prefix == 0xD1:
        return _i16.unpack_from(buf, pos)[0], pos + 2
    if prefix == 0xD2:
        return _i32.unpack_from(buf, pos)[0], pos + 4
    if prefix == 0xD3:
        low, high = struct.unpack_from("<Ii", buf, pos)
        return high * 0x100000000 + low, pos + 8
    raise ValueError(f"byte 0x{prefix:02x} at offset {pos - 1} does not start a number")


def decode_string(buf: bytes, pos: int) -> tuple[str, int]:
    prefix = buf[pos]
    pos += 1
    if 0xA0 <= prefix <= 0xBF:
        n = prefix & 0x1F
    elif prefix == 0xD9:
        n = buf[pos]
        pos += 1
    elif prefix == 0xDA:
        n = _u16.unpack_from(buf, pos)[0]
        pos += 2
    elif prefix == 0xDB:
        n = _u32.unpack_from(buf, pos)[0]
        pos += 4
    else:
        raise ValueError(f"byte 0x{prefix:02x} at offset {pos - 1} does not start a string")
    end = pos + n
    if end > len(buf):
        raise ValueError("string runs past the end of the frame")
    return buf[pos:end].decode("utf-8"), end


def is_string_prefix(byte: int) -> bool:
    """A message type is a string when its first byte is a non-empty fixstr or str8/16/32."""
    return 0xA1 <= byte <= 0xBF or byte in (0xD9, 0xDA, 0xDB)
