"""greenroom's Redis clients keep redis-py's per-connection noise out of a debug log (issue 17).

redis-py 6.4+ logs "Failed to enable maintenance notifications" at DEBUG for every connection to
an open-source redis-server; at ``--log-level debug`` those lines outnumbered greenroom's own.
"""

import logging

from greenroom.drivers import RedisDriver
from greenroom.presence import RedisPresence


def test_no_maintenance_notification_lines_at_debug_level(redis_server, caplog):
    presence = RedisPresence(redis_server.url)
    driver = RedisDriver(redis_server.url)
    received = []
    try:
        with caplog.at_level(logging.DEBUG):
            presence.set("greenroom:test:logging", "1")
            presence.subscribe("greenroom:test:logging", received.append)
            presence.publish("greenroom:test:logging", "hello")
            assert presence.get("greenroom:test:logging") == "1"
            assert driver.query("no-such-room") == []
    finally:
        presence.close()
        driver.close()
    noisy = [r.getMessage() for r in caplog.records if "maintenance notifications" in r.getMessage()]
    assert noisy == []
