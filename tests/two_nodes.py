"""Two data nodes in one process: ``SLOW`` (get_data sleeps) and ``QUICK``.

Run as ``python tests/two_nodes.py SLOW QUICK``. Both are hosted by
:class:`sisock.wamp.host.NodeHost`, as ``sisock serve`` hosts several
nodes. The multi-node tests use it to show that calls stuck in one core
leave the other node's calls answered.
"""

import sys

from slow_node import SlowNode


class QuickNode(SlowNode):
    """Same field as :class:`SlowNode`, answered at once."""

    description = "answers at once (tests)"

    def get_data(self, fields, start, end, min_stride=None, method="mean", *, streaming=False):
        """Three samples, no waiting."""
        import numpy as np

        t = np.array([start, start + 1.0, start + 2.0])
        return {
            "data": {f: np.arange(3.0) for f in fields if f == "x"},
            "timeline": {"tl": {"t": t, "finalized_until": None}},
        }


if __name__ == "__main__":
    from sisock.core.plan import Plan
    from sisock.site.settings import load_settings
    from sisock.wamp.host import NodeHost

    plans = [Plan(SlowNode(sys.argv[1])), Plan(QuickNode(sys.argv[2]))]
    sys.exit(NodeHost(plans, load_settings("server")).run())
