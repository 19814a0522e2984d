"""gunicorn worker: gunicorn's gevent pywsgi worker serving WebSockets through the fixed Handler.

    gunicorn -k greenroom.web.gunicorn_worker.GeventWebSocketWorker app:application

Replaces ``geventwebsocket.gunicorn.workers.GeventWebSocketWorker``, which uses the unfixed handler
and loses gunicorn's access log (it swaps gunicorn's handler for gevent-websocket's).
"""

from __future__ import annotations

from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from greenroom.web.wsfixes import Handler, apply

__all__ = ["GeventWebSocketWorker", "GunicornHandler"]


class GunicornHandler(Handler, PyWSGIHandler):
    """Handler + gunicorn's environ additions (``gunicorn.sock``, ``RAW_URI``) and access log.

    A WebSocket appears in the access log when it ends, as a 101 with its duration.
    """

    log_request = PyWSGIHandler.log_request


class GeventWebSocketWorker(GeventPyWSGIWorker):
    """gunicorn's gevent worker with our Handler. gunicorn's ``patch()`` monkey-patches and wraps
    the inherited sockets; the fixes are applied right after it (docs/architecture.md, "Boot order"), before the app is
    loaded, so that nothing built by the app sees unpatched classes."""

    wsgi_handler = GunicornHandler

    def patch(self) -> None:
        super().patch()
        apply()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """Graceful stop (SIGTERM): rooms close their clients with 4001 while gunicorn stops
        accepting, instead of the sockets dying at the end of the graceful timeout."""
        from greenroom.server import shutdown_all

        gevent.spawn(shutdown_all, max(self.cfg.graceful_timeout - 1, 1))
        super().handle_exit(sig, frame)
