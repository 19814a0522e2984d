"""The pre-fork cluster of ``greenroom serve --workers N``: everything the master runs.

Nothing here imports gevent, the application, or greenroom's room, matchmaker or web code: the
master forks clean interpreters, and each worker monkey-patches first (greenroom.serving).

* :mod:`.master` -- the master's loop: signals, reaping, heartbeats, generations, respawns
* :mod:`.workers` -- what the master knows of a worker; how a forked child becomes one
* :mod:`.listeners` -- the listening sockets, bound once and inherited
* :mod:`.heartbeat` -- the unlinked temp file a worker keeps touching
* :mod:`.redis_embedded` -- the private redis-server when no Redis URL is given
* :mod:`.handoff` -- the channel that carries a connection's fd between workers (SEQPACKET)
* :mod:`.naming` -- processIds and the run dir, the conventions everyone agrees on
* :mod:`.cpu` -- how many workers ``auto`` means
* :mod:`.children`, :mod:`.config` -- forking helpers; what the master is asked to run
"""
