"""Client payloads: msgpackr records as the official SDKs write them (docs/protocol.md, "Payloads")."""

import msgpack
import pytest

from greenroom.protocol.depth import MAX_DEPTH
from greenroom.protocol.msgpackr import PayloadError, unpack

# Bytes written by @colyseus/sdk's Packr (docs/protocol.md, "Payloads", and the captures).
SDK_VECTORS = [
    ("d4724092a178a1790acb4034800000000000", {"x": 10, "y": 20.5}),
    ("d4724090", {}),
    ("92d4724092a178a1790102400304", [{"x": 1, "y": 2}, {"x": 3, "y": 4}]),
    ("d4724092a161a1620203", {"a": 2, "b": 3}),
    ("d40000", None),
    ("ac6e756d657269632074797065", "numeric type"),
    ("cc40", 64),
]


@pytest.mark.parametrize("hexdata,expected", SDK_VECTORS)
def test_sdk_vectors(hexdata, expected):
    assert unpack(bytes.fromhex(hexdata)) == expected


def test_record_redefinition_overwrites_the_old_keys():
    # id 0x40 defined as [a], then redefined as [b, c]: the second object must use the new keys
    data = bytes.fromhex("92" + "d4724091a16101" + "d4724092a162a1630203")
    assert unpack(data) == [{"a": 1}, {"b": 2, "c": 3}]


def test_nested_records_and_references():
    data = bytes.fromhex("d4724092a170a171" + "d4724191a17a01" + "41" + "02")
    assert unpack(data) == {"p": {"z": 1}, "q": {"z": 2}}


def test_plain_msgpack_takes_the_same_path():
    value = {"list": [1, 2, 3], "bin": b"\x00\x01", "neg": -5, "f": 1.5, "64": 64, "s": "x" * 40}
    assert unpack(msgpack.packb(value, use_bin_type=True)) == value


def test_bare_record_id_without_definition_is_a_fixint():
    assert unpack(bytes.fromhex("9240cc41")) == [64, 65]


@pytest.mark.parametrize("hexdata", [
    "d4724093a178", "c1", "92", "d4724001", "a5616263", "dc",
    "81910102",                                   # a list as a map key: TypeError in msgpack
    "d7ffffffffffffffffff",                       # timestamp with nanoseconds > 999999999
    "c70cff000000007fffffffffffffff",             # timestamp past year 9999: OverflowError
    "d4724091a178d7ffffffffffffffffff",           # the same inside a record (the walker's path)
    "d4724091a178c70cff000000007fffffffffffffff",
])
def test_malformed_payloads_raise_payload_error(hexdata):
    with pytest.raises(PayloadError):
        unpack(bytes.fromhex(hexdata))


def test_depth_limit():
    with pytest.raises(PayloadError, match="deeper"):
        unpack(bytes.fromhex("d4724091a161" + "91" * 100 + "c0"))


# A payload that is one record takes a C fast path; these must come out as the walker decodes
# them (the walker is the reference: it is what the vectors above were checked with).
FAST_PATH_VECTORS = [
    "d4724093a178a179a46e616d65cb402900000000000007a8706c617965722d31",  # {x, y, name}
    "d4724092a161a16293010203c0",                 # {a: [1, 2, 3], b: null}
    "d4724091a16181a162c3",                       # {a: {b: true}} (a plain map inside)
    "d4724091a170" + "4001",                      # {p: {p: 1}}: a reference to the top record
    "d4724092a161a16291" + "40010203",            # {a: [{a: 1, b: 2}], b: 3}: same, in an array
    "d4724092a170a171" + "d4724191a17a01" + "41" + "02",  # nested definitions
    "d4724091a164d6ff00000000",                   # {d: Date(0)}
    "d4724091a175d40000",                         # {u: undefined}
    "d4724091a161" + "91" * 61 + "c0",            # deep, but under the limit
]


@pytest.mark.parametrize("hexdata", FAST_PATH_VECTORS)
def test_top_level_record_fast_path_agrees_with_the_walker(hexdata):
    from greenroom.protocol.msgpackr import _RecordReader

    data = bytes.fromhex(hexdata)
    assert unpack(data) == _RecordReader(data).read()


def test_nested_reference_to_the_top_record_is_decoded_as_a_record():
    assert unpack(bytes.fromhex("d4724091a1704001")) == {"p": {"p": 1}}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 600, 2000])
def test_plain_messagepack_has_the_walkers_depth_limit(depth):
    """The C path took up to 1024 levels (then StackError without a message); both paths now
    refuse past MAX_DEPTH, with the same reason."""
    with pytest.raises(PayloadError, match=f"deeper than {MAX_DEPTH} levels"):
        unpack(b"\x91" * depth + b"\xc0")


def test_plain_messagepack_up_to_the_limit_decodes():
    value = unpack(b"\x81\xa1k" + b"\x91" * (MAX_DEPTH - 1) + b"\xc0")
    assert list(value) == ["k"]
