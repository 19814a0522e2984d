"""greenroom inside gunicorn, with as many workers as you like.

    gunicorn -c python:greenroom.gunicorn.conf -w 4 --bind 0.0.0.0:2567 app:application

``greenroom.gunicorn.Worker`` is the worker class (the conf module selects it);
``greenroom.gunicorn.conf`` holds the server hooks (embedded Redis, exits of workers). The
worker is imported lazily: a gunicorn config that imports the hooks loads no gevent in the master.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Worker"]


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from .worker import Worker

        return Worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
