"""A data node written the sisock 0.x way: only ``_get_data_blocking``.

Run as ``python tests/legacy_node.py NAME``; used by the compatibility tests.
"""

import sys

from sisock.wamp.legacy import DataNodeServer, run


class LegacyNode(DataNodeServer):
    """0.x-style subclass: name, description and one blocking method."""

    name = sys.argv[1] if len(sys.argv) > 1 else "legacy"
    description = "written for sisock 0.x"

    def _get_data_blocking(self, field, start, end, min_stride=None):
        t = [start + i for i in range(5)]
        return {"data": {f: [float(i) for i in range(5)] for f in field if f == "counter"},
                "timeline": {"legacy_tl": {"t": t, "finalized_until": t[-1]}}}


if __name__ == "__main__":
    run(LegacyNode)
