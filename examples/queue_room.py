"""A matchmaking queue: ``greenroom serve examples/queue_room.py:server``.

Players join ``queue`` with ``{rank}``; every second the queue groups them by rank and, for
each group of four, creates a ``battle`` room with a seat reserved for every member. Each
member gets ``seat`` (a seat reservation) and joins with the SDK's ``consumeSeatReservation``,
then sends ``confirm`` to the queue, which closes its connection with 1000.

@colyseus/sdk 0.18 clients use ``ws://host/v18``.
"""

from greenroom import QueueRoom, Room, Server


class Battle(Room):
    max_clients = 4

    def on_join(self, client, options, auth):
        self.broadcast("joined", {"sessionId": client.session_id, "rank": options.get("rank")})


server = Server(dialects={"/v18": "v5"})
server.define("battle", Battle)
server.define("queue", QueueRoom, match_room_name="battle", max_players=4)
