"""Arbiter: an authoritative multiplayer game server on Twisted and Autobahn.

The authority (rooms, rules, state) lives in this package and never touches a
socket; the network edge is the ``protocols`` package, the pages and HTTP API
are the ``web`` package, and ``twistd arbiter`` ties them together.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
