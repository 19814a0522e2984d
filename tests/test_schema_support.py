"""Shared helpers of the schema tests: the official decoders in one node process, expected states.

Not a test module (it holds no tests); the schema test modules import it. The node process is a
module-level singleton so that the whole pytest session uses a single process, whichever test
module needs it first.
"""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from greenroom.schema import ArraySchema, MapSchema, Schema
from greenroom.schema.fields import PRIM, REF

HERE = Path(__file__).resolve().parent
JS_DIR = HERE / "js"
VECTORS = HERE / "vectors"

V3_LIBS = ("schema3", "schema4")
V5_LIBS = ("schema5",)
ALL_LIBS = V3_LIBS + V5_LIBS


def dialect_of(lib: str) -> str:
    return "v5" if lib in V5_LIBS else "v3"


class OfficialDecoders:
    """One `node tests/js/schema_decode.mjs` process; requests are JSON lines, answered in order."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["node", "schema_decode.mjs"],
            cwd=JS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.stderr: list[str] = []
        self._ids = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def request(self, **req: Any) -> Any:
        with self._lock:
            self._ids += 1
            req["id"] = self._ids
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the node decoder process died: {''.join(self.stderr)}")
        answer = json.loads(line, parse_int=_js_int)
        assert answer["id"] == req["id"]
        if self.stderr:
            raise AssertionError(f"decoder wrote to stderr: {''.join(self.stderr)}")
        if answer["warnings"]:
            raise AssertionError(f"{req.get('op')} printed: {answer['warnings']}")
        if not answer["ok"]:
            raise AssertionError(f"{req.get('op')} failed: {answer['error']}")
        return answer["state"]

    def open(self, lib: str, handshake: bytes) -> JsSession:
        return JsSession(self, lib, handshake)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class JsSession:
    """One official decoder instance (one simulated client)."""

    _count = 0

    def __init__(self, decoders: OfficialDecoders, lib: str, handshake: bytes) -> None:
        JsSession._count += 1
        self.decoders = decoders
        self.lib = lib
        self.name = f"{lib}-{JsSession._count}"
        decoders.request(op="open", session=self.name, lib=lib, handshake=handshake.hex())

    def decode(self, body: bytes) -> Any:
        return self.decoders.request(op="decode", session=self.name, hex=body.hex())

    def close(self) -> None:
        self.decoders.request(op="close", session=self.name)


def _js_int(text: str) -> int | float:
    """JSON from JavaScript: digits beyond 2**53 are a double printed without exponent."""
    value = int(text)
    return value if abs(value) <= 2**53 else float(text)


_decoders: OfficialDecoders | None = None


def official_decoders() -> OfficialDecoders:
    """The session's node process, started on first use (skips when node is not installed)."""
    global _decoders
    if _decoders is None:
        if shutil.which("node") is None or not (JS_DIR / "node_modules" / "schema5").is_dir():
            pytest.skip("node and tests/js/node_modules are needed for the official decoders")
        _decoders = OfficialDecoders()
        atexit.register(_decoders.close)
    return _decoders


def wire(spec: Any, value: Any) -> Any:
    """``value`` as a client decodes it (numbers go through their wire encoding)."""
    if value is None:
        return None
    if spec.kind == PRIM:
        prim = spec.primitive
        return prim.decode(prim.encode(value), 0)[0]
    if spec.kind == REF:
        return expected(value)
    child = spec.child
    if isinstance(value, MapSchema):
        return {k: wire(child, v) for k, v in value.items()}
    assert isinstance(value, ArraySchema)
    return [wire(child, v) for v in value]


def expected(obj: Schema) -> dict[str, Any]:
    """What a client that sees everything should hold for ``obj``."""
    result = {}
    for fd in type(obj)._gr_fields:
        value = obj.__dict__[fd.name]
        if value is not None:
            result[fd.name] = wire(fd.spec, value)
    return result


def load_capture(name: str) -> list[dict[str, Any]]:
    with open(VECTORS / name) as f:
        return [json.loads(line) for line in f if line.strip()]


def number_vectors() -> dict[str, Any]:
    with open(VECTORS / "number_vectors.json") as f:
        return json.load(f)
