"""The Colyseus wire protocol: codes, primitives, client payload decoding, frames, dialects."""

from .codes import CloseCode, Code, ErrorCode, ResponseStatus
from .dialect import Dialect

__all__ = ["Code", "ErrorCode", "CloseCode", "ResponseStatus", "Dialect"]
