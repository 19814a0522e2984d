"""How deeply a client's decoded value may nest (JSON bodies, MessagePack payloads).

A decoder that accepts any depth hands room code values that the next step cannot handle:
``json.loads`` raises RecursionError past about a thousand levels, ``msgpack`` packs at most
512, and a handler that echoes such a message would fail in the room instead of the client
being told. So client input is refused past ``MAX_DEPTH`` levels, far beyond what any game
sends, with the protocol's error for malformed input.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64


def within_depth(value: Any, budget: int = MAX_DEPTH) -> bool:
    """True when ``value`` nests at most ``budget`` lists/dicts deep (a scalar: always).

    Recursion is bounded by ``budget``, never by the input. Only the exact ``list`` and
    ``dict`` the decoders return are walked: this runs on every message, so it stays cheap for
    the usual flat payload.
    """
    cls = value.__class__
    if cls is dict:
        items = value.values()
    elif cls is list:
        items = value
    else:
        return True
    if budget <= 0:
        return False
    for item in items:
        kind = item.__class__
        if (kind is dict or kind is list) and not within_depth(item, budget - 1):
            return False
    return True
