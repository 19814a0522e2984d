"""The former path of greenroom's gunicorn worker: ``greenroom.gunicorn.Worker`` now.

    gunicorn -k greenroom.web.gunicorn_worker.GeventWebSocketWorker app:application

keeps working (it is the same class).
"""

from __future__ import annotations

from ..gunicorn.worker import GunicornHandler, Worker

__all__ = ["GeventWebSocketWorker", "GunicornHandler"]

GeventWebSocketWorker = Worker
