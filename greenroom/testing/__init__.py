"""greenroom's test kit: boot a Server in the test process, join it, wait on events.

As a pytest plugin, in the top-level ``conftest.py``::

    pytest_plugins = ["greenroom.testing"]

    @pytest.fixture
    def greenroom_app():
        return make_server()          # your Server, fresh for each test

then a test takes the ``greenroom`` fixture (a running :class:`TestServer`), or
``greenroom_boot`` to boot Servers of its own. Outside pytest, ``with boot(server) as test:``.

The plugin is opt-in rather than registered for every pytest run: it monkey-patches gevent on
import (the kit's server and clients are gevent code, as under ``greenroom serve``), which is
nothing to impose on projects that merely have greenroom installed. Import it before anything
imports socket, ssl, redis or pymongo: list it first in the top-level conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

from .kit import Response, TestServer, boot  # noqa: E402

__all__ = ["Response", "TestServer", "boot"]

try:
    import pytest
except ImportError:  # boot() works without pytest; the fixtures need it
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def greenroom_app() -> Any:
        """Override it: return the Server (a fresh one per test) that ``greenroom`` boots."""
        raise pytest.UsageError(
            "the greenroom fixture boots the Server your greenroom_app fixture returns: "
            "define greenroom_app in your conftest.py or test module")

    @pytest.fixture
    def greenroom_boot() -> Iterator[Callable[..., TestServer]]:
        """``greenroom_boot(server)`` -> a running TestServer, shut down after the test."""
        started: list[TestServer] = []

        def start(server: Any, host: str = "127.0.0.1", port: int = 0) -> TestServer:
            test_server = boot(server, host, port)
            started.append(test_server)
            return test_server

        yield start
        for test_server in reversed(started):
            test_server.shutdown()

    @pytest.fixture
    def greenroom(greenroom_app: Any, greenroom_boot: Callable[..., TestServer]) -> TestServer:
        """The ``greenroom_app`` Server, running on a free port for this test."""
        return greenroom_boot(greenroom_app)
