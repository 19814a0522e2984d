"""Connection options greenroom passes to every redis-py pool it creates.

redis-py 6.4+ asks each new connection to enable "maintenance notifications" (a Redis Enterprise
and Redis Cloud feature). An open-source redis-server refuses the subcommand and redis-py logs a
DEBUG line per connection, so at ``--log-level debug`` those lines drowned greenroom's own.
greenroom has no use for the feature: it is turned off where the installed redis-py knows it.
"""

from __future__ import annotations

from typing import Any

try:
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # redis-py before 6.4: nothing to turn off
    MaintNotificationsConfig = None


def pool_options() -> dict[str, Any]:
    """Keyword arguments for ``ConnectionPool.from_url`` (and ``BlockingConnectionPool``)."""
    if MaintNotificationsConfig is None:
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}
