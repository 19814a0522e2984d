"""A test application: rooms of four that say which process they live in."""

from capped_room import Capped

from greenroom import Server

server = Server(heartbeat=0.5, lease=2.0, rpc_timeout=2.0)
server.define("capped", Capped)


class SlowCreate(Capped):
    """on_create blocks (a database query, say): the window in which a second process could
    open a duplicate room unless creation is serialised across processes."""

    def on_create(self, options):
        import gevent

        gevent.sleep(0.3)
        super().on_create(options)


server.define("slow", SlowCreate)
