"""Primitive field types: how a Python value is checked, and its bytes on the wire (PROTOCOL §5.1).

Checking happens at assignment so that a wrong value fails where it was written, not 50 ms later
inside the patch loop; the per-type encoders are plain functions picked once per field, so the
encoder never dispatches on a type name.
"""

from __future__ import annotations

import math
import numbers
import struct
from collections.abc import Callable
from typing import Any

from ..protocol.primitives import decode_number, decode_string, encode_number, encode_string

pack_f32 = _pack_f32 = struct.Struct("<f").pack
unpack_f32 = _unpack_f32 = struct.Struct("<f").unpack
_pack_f64 = struct.Struct("<d").pack
_pack_u16 = struct.Struct("<H").pack
# Non-negative integers below this bound are looked up, not encoded (values, refIds, indexes).
INT_TABLE_SIZE = 4096
INT_BYTES: list[bytes] = [encode_number(i) for i in range(INT_TABLE_SIZE)]
_F32_TOLERANCE = 1e-4


def fast_number(value: Any) -> bytes:
    """``encode_number`` with the common cases (small ints, finite floats) short-circuited.

    The Python patch loop spends most of its time here; the result is byte-for-byte that of
    ``protocol.primitives.encode_number`` (the tests compare both on random values), as is
    ``number_bytes`` in ``_speedups.h``, the compiled encoder's version of these steps.
    """
    cls = value.__class__
    if cls is int:
        if 0 <= value < INT_TABLE_SIZE:
            return INT_BYTES[value]
        if 0 < value < 65536:
            return b"\xcd" + _pack_u16(value)
        return encode_number(value)
    # NaN and ±inf are not "integers" either: the float32 test below fails for them (inf - inf is
    # NaN) and they go to the reference encoder.
    if cls is float and not value.is_integer():
        try:
            packed = _pack_f32(value)
        except OverflowError:      # finite but beyond float32: never within 1e-4
            packed = None
        if packed is not None:
            # |float32(v)| vs |v|: both have v's sign (or are 0), so the difference of absolute
            # values is the plain difference
            if -_F32_TOLERANCE < _unpack_f32(packed)[0] - value < _F32_TOLERANCE:
                return b"\xca" + packed
        if value - value == 0.0:
            return b"\xcb" + _pack_f64(value)
    return encode_number(value)


_STR_HEADS = [bytes([0xA0 | n]) for n in range(32)]


def fast_string(value: Any) -> bytes:
    """``encode_string`` for a str (what a checked string field holds), without its branches."""
    data = value.encode()
    n = len(data)
    if n < 32:
        return _STR_HEADS[n] + data
    return encode_string(value)


def _check_string(value: Any) -> str:
    if value.__class__ is str or isinstance(value, str):
        return value
    raise TypeError(f"expected str, got {type(value).__name__}")


def _check_number(value: Any) -> int | float:
    cls = value.__class__
    if cls is int or cls is float:
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    raise TypeError(f"expected int or float, got {type(value).__name__}")


def _check_boolean(value: Any) -> bool:
    if value is True or value is False:
        return value
    raise TypeError(f"expected bool, got {type(value).__name__}")


def _check_float(value: Any) -> float:
    cls = value.__class__
    if cls is float:
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected int or float, got {type(value).__name__}")


_FLOAT32_MAX = 3.4028234663852886e38


def _check_float32(value: Any) -> float:
    value = _check_float(value)
    if abs(value) > _FLOAT32_MAX and math.isfinite(value):
        raise ValueError(f"{value!r} is out of range for float32")
    return value


def _int_checker(name: str, lo: int, hi: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if value.__class__ is not int:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"expected int, got {type(value).__name__}")
            if isinstance(value, numbers.Integral):
                value = int(value)
            elif math.isfinite(value) and float(value).is_integer():
                value = int(value)
            else:
                raise TypeError(f"expected an integer for {name}, got {value!r}")
        if lo <= value <= hi:
            return value
        raise ValueError(f"{value} is out of range for {name} ({lo}..{hi})")

    return check


def _fixed(fmt: str) -> tuple[Callable[[Any], bytes], Callable[[bytes, int], tuple[Any, int]]]:
    packer = struct.Struct(fmt)
    pack = packer.pack
    unpack_from = packer.unpack_from
    size = packer.size

    def decode(buf: bytes, pos: int) -> tuple[Any, int]:
        return unpack_from(buf, pos)[0], pos + size

    return pack, decode


def _encode_boolean(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def _decode_boolean(buf: bytes, pos: int) -> tuple[bool, int]:
    return buf[pos] != 0, pos + 1


class Primitive:
    """One primitive wire type: its name in the reflection, checker, encoder and decoder."""

    __slots__ = ("name", "check", "encode", "decode", "fast", "bounds")

    def __init__(self, name: str, check: Callable[[Any], Any], encode: Callable[[Any], bytes],
                 decode: Callable[[bytes, int], tuple[Any, int]], fast: tuple[type, ...] = (),
                 bounds: tuple[int, int] | None = None) -> None:
        self.name = name
        self.check = check
        self.encode = encode
        self.decode = decode
        self.fast = fast  # value classes that need no check (the assignment fast path)
        # integer types: an exact int within these bounds passes ``check`` unchanged, which
        # lets the compiled assignment skip the call
        self.bounds = bounds

    def __repr__(self) -> str:
        return f"Primitive({self.name!r})"


def _build() -> dict[str, Primitive]:
    table = {
        "string": Primitive("string", _check_string, fast_string, decode_string, (str,)),
        "number": Primitive("number", _check_number, fast_number, decode_number, (int, float)),
        "boolean": Primitive("boolean", _check_boolean, _encode_boolean, _decode_boolean, (bool,)),
    }
    ints = {
        "int8": ("<b", -(2**7), 2**7 - 1), "uint8": ("<B", 0, 2**8 - 1),
        "int16": ("<h", -(2**15), 2**15 - 1), "uint16": ("<H", 0, 2**16 - 1),
        "int32": ("<i", -(2**31), 2**31 - 1), "uint32": ("<I", 0, 2**32 - 1),
        "int64": ("<q", -(2**63), 2**63 - 1), "uint64": ("<Q", 0, 2**64 - 1),
    }
    for name, (fmt, lo, hi) in ints.items():
        encode, decode = _fixed(fmt)
        table[name] = Primitive(name, _int_checker(name, lo, hi), encode, decode, (), (lo, hi))
    for name, fmt, check in (("float32", "<f", _check_float32), ("float64", "<d", _check_float)):
        encode, decode = _fixed(fmt)
        table[name] = Primitive(name, check, encode, decode, (float,) if name == "float64" else ())
    return table


PRIMITIVES: dict[str, Primitive] = _build()
