"""State synchronisation compatible with @colyseus/schema 3, 4 and 5 (docs/protocol.md, "State").

Declare the state with ``Schema`` and ``field()``::

    class Player(Schema):
        name = field("string", default="")
        x = field("number", default=0)
        hand = field(["string"], view=True)      # private: see StateView

    class State(Schema):
        tick = field("uint16", default=0)
        players = field({"map": Player})         # a MapSchema, created empty
        log = field(["string"])                  # an ArraySchema, created empty
        leader = field(Player)                   # a child, None by default

Assignments are checked (TypeError/ValueError naming ``Class.field``) and recorded; the room's
``SchemaSerializer`` turns the recorded changes into ROOM_STATE / ROOM_STATE_PATCH bodies (see
serializer.py for the call order it relies on), ``StateView`` shows private fields to some clients
only, and ``StateDecoder`` reads the bytes back into plain dicts/lists (Python client, tests).
Lower level: ``ChangeTracker(state)`` + ``encode_all`` / ``encode_patch`` / ``encode_reflection``.
"""

from .changes import ChangeTracker
from .collections import ArraySchema, MapSchema
from .decoder import StateDecoder
from .encoder import encode_all, encode_patch
from .errors import DecodeError, EncodeError, SchemaDefinitionError
from .fields import field
from .reflection import encode_reflection
from .schema import Schema
from .serializer import SchemaSerializer
from .view import StateView

__all__ = [
    "Schema", "MapSchema", "ArraySchema", "field", "StateView",
    "SchemaSerializer", "ChangeTracker", "encode_all", "encode_patch", "encode_reflection",
    "StateDecoder", "SchemaDefinitionError", "EncodeError", "DecodeError",
]
