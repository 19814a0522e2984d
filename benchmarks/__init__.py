"""greenroom vs Colyseus, side by side: ``python -m benchmarks.run`` (see benchmarks/README.md).

A package only so that the harness runs with ``-m`` from the repository root; nothing in
greenroom imports it, and nothing here is needed to run greenroom.
"""
