"""greenroom: a multiplayer room server for Python on gevent, wire-compatible with Colyseus."""

__version__ = "0.1.0.dev0"
