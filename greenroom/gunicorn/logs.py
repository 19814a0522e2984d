"""greenroom's log lines in gunicorn's error log (master and workers)."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["route_greenroom_logs"]


def route_greenroom_logs(gunicorn_log: Any) -> None:
    """greenroom's loggers write where gunicorn's error log writes, at its level, unless the
    application configured the "greenroom" logger itself."""
    logger = logging.getLogger("greenroom")
    if logger.handlers:
        return
    error_log = gunicorn_log.error_log
    for handler in error_log.handlers:
        logger.addHandler(handler)
    logger.setLevel(error_log.level)
    logger.propagate = False
