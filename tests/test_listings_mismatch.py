"""Processes on one Redis presence with different listings backends are told so (issue 17, item 1).

Run as the README once printed it (only the second process had --mongo-uri), two players of one
channel got different rooms through different processes, with no warning anywhere.
"""

import logging

from greenroom import Room, Server


class Chat(Room):
    pass


def test_a_process_listing_elsewhere_is_named_on_both_sides(redis_url, mongo_uri, caplog):
    redis_only = Server(redis_url=redis_url)
    with_mongo = Server(redis_url=redis_url, mongo_uri=mongo_uri)
    same = Server(redis_url=redis_url)
    servers = [redis_only, with_mongo, same]
    for server in servers:
        server.define("chat", Chat)
    try:
        with caplog.at_level(logging.ERROR, logger="greenroom.registry"):
            redis_only.start()
            with_mongo.start()  # the newcomer sees the other at once
            same.start()
            # Other tests' processes may still hold a lease on this Redis: check ours only.
            ours = {server.process_id for server in servers}
            assert ours & set(redis_only.registry.check_listings()) == {with_mongo.process_id}
            assert ours & set(same.registry.check_listings()) == {with_mongo.process_id}
            assert ours & set(redis_only.registry.check_listings()) == {with_mongo.process_id}
        lines = [r.getMessage() for r in caplog.records if "listings backend" in r.getMessage()]
        newcomer = [line for line in lines if f"this process {with_mongo.process_id}" in line]
        assert newcomer and f"process {redis_only.process_id} lists its rooms in RedisDriver" in newcomer[0]
        assert "MongoDriver" in newcomer[0] and "--mongo-uri" in newcomer[0]
        old_side = [line for line in lines if f"this process {redis_only.process_id}" in line]
        assert len(old_side) == 1  # once per process, not at every lease
        assert not [line for line in lines if f"process {same.process_id} lists" in line]
    finally:
        for server in servers:
            server.shutdown(1)
