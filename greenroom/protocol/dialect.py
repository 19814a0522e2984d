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


def from_environment(dialect: "str | Dialect", dialects: "dict[str, str | Dialect]",
                     environ: "dict[str, str]") -> "tuple[Dialect, dict[str, Dialect]]":
    """What ``greenroom serve --dialect D --dialect-path PREFIX=D`` asked for
    (``GREENROOM_DIALECT``, ``GREENROOM_DIALECT_PATHS="/v18=v5,..."``) over the code's choice,
    so serving 0.18 needs no code change. Raises ValueError naming the bad setting."""
    root = Dialect.parse(environ.get("GREENROOM_DIALECT") or dialect)
    paths = {k: Dialect.parse(v) for k, v in dialects.items()}
    for item in (environ.get("GREENROOM_DIALECT_PATHS") or "").split(","):
        if not item.strip():
            continue
        prefix, sep, name = item.strip().partition("=")
        if not sep or not prefix.strip("/"):
            raise ValueError(f"GREENROOM_DIALECT_PATHS: {item.strip()!r} is not PREFIX=DIALECT "
                             "(e.g. /v18=v5)")
        paths["/" + prefix.strip("/")] = Dialect.parse(name.strip())
    return root, paths
