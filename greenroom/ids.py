"""Identifiers in the Colyseus style: 9 characters from [A-Za-z0-9_-] (PROTOCOL.md §1)."""

import secrets

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def generate_id(length: int = 9) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def is_valid_id(value: str, max_length: int = 64) -> bool:
    return 0 < len(value) <= max_length and all(c in _ALPHABET for c in value)
