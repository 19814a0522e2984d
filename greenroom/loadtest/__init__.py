"""``greenroom loadtest``: bots on greenroom's Python client, against greenroom or Colyseus.

``cli`` is the command line, ``runner`` a run (pacing, deadline, reporting), ``bot`` one
simulated player and its script hooks, ``stats`` what is counted and reported.
"""
