"""The two wire dialects (docs/protocol.md, "Dialects"): v3 for colyseus.js 0.16 and @colyseus/sdk 0.17, v5 for sdk 0.18."""

from enum import Enum


class Dialect(str, Enum):
    V3 = "v3"
    V5 = "v5"

    @classmethod
    def parse(cls, value: "str | Dialect") -> "Dialect":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown wire dialect {value!r}: use 'v3' (colyseus.js 0.16, "
                             f"@colyseus/sdk 0.17) or 'v5' (@colyseus/sdk 0.18)") from None
