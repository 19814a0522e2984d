"""Rooms of four that say which process they live in (tests/apps/capped.py, limits.py)."""

import os

from greenroom import Room


class Capped(Room):
    max_clients = 4

    def on_create(self, options):
        self.on_message("echo", lambda client, message: client.send("echo", message))

    def on_join(self, client, options, auth):
        client.send("welcome", {"processId": self.process_id, "pid": os.getpid()})
