"""A data node whose ``get_data`` takes ``SLOW_SECONDS`` (default 30) seconds.

Run as ``python tests/slow_node.py NAME``; ``get_fields`` answers at once.
Used by the fault tests: a slow query must block neither other nodes, nor
the hub, nor the node's own ``get_fields``. Each ``get_data`` call writes
:data:`STARTED` to standard output (the test's log) when it begins, so a
test can wait until the slow call is really running in the node.
"""

import os
import sys
import time

import numpy as np

SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "30"))
#: Line written when a ``get_data`` call begins (followed by the call's number).
STARTED = "slow get_data started"


class SlowNode:
    """Core: one number field; get_data sleeps before answering."""

    description = "answers get_data slowly (tests)"

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def get_fields(self, start, end):
        """One field on one timeline."""
        return (
            {"x": {"description": "x", "timeline": "tl", "type": "number", "units": None}},
            {"tl": {"interval": 1.0, "field": ["x"]}},
        )

    def get_data(self, fields, start, end, min_stride=None, method="mean", *, streaming=False):
        """Announce the call on standard output, sleep, then return three samples."""
        self.calls += 1
        out = sys.__stdout__  # Twisted redirects sys.stdout into its log
        if out is not None:
            out.write(f"{STARTED} {self.calls}\n")
            out.flush()
        time.sleep(SLOW_SECONDS)
        t = np.array([start, start + 1.0, start + 2.0])
        return {
            "data": {f: np.arange(3.0) for f in fields if f == "x"},
            "timeline": {"tl": {"t": t, "finalized_until": None}},
        }


if __name__ == "__main__":
    # imported here: the fault tests import STARTED without choosing a reactor
    from sisock.wamp.service import NodeService, run_nodes
    from sisock.site.settings import load_settings

    run_nodes([NodeService(SlowNode(sys.argv[1]), load_settings("server"))])
