"""sisock 0.x API at its 0.x import path: ``from sisock.base import DataNodeServer``.

Old data nodes and the 0.x Grafana bridge import from here and run unchanged.
The code lives in :mod:`sisock.wamp.legacy`.
"""

from sisock.wamp import legacy as _legacy
from sisock.wamp.legacy import DataNodeServer, run, sisock_to_unix_time, uri

__all__ = [
    "DataNodeServer",
    "run",
    "sisock_to_unix_time",
    "uri",
    *(name for name in _legacy.__all__ if name not in ("DataNodeServer", "run", "sisock_to_unix_time", "uri")),
]


def __getattr__(name: str):
    """Module constants of the 0.x API (``BASE_URI``, ...), as in 0.x."""
    return getattr(_legacy, name)
