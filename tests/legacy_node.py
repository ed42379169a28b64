"""A data node written the sisock 0.x way: only ``_get_data_blocking``.

Run as ``python tests/legacy_node.py NAME``; used by the compatibility tests.
"""

import sys

from sisock.base import DataNodeServer, run


class LegacyNode(DataNodeServer):
    """0.x-style subclass: name, description and one blocking method."""

    name = sys.argv[1] if len(sys.argv) > 1 else "legacy"
    description = "written for sisock 0.x"

    def _get_data_blocking(self, field, start, end, min_stride=None):
        if "big" in field:  # one sample a second over the range: a year is far over 1 MiB
            step = float(min_stride) if min_stride else 1.0
            t = [start + i * step for i in range(int((end - start) // step))]
            return {
                "data": {"big": [float(i % 7) for i in range(len(t))]},
                "timeline": {"big_tl": {"t": t, "finalized_until": None}},
            }
        t = [start + i for i in range(5)]
        return {
            "data": {f: [float(i) for i in range(5)] for f in field if f == "counter"},
            "timeline": {"legacy_tl": {"t": t, "finalized_until": t[-1]}},
        }


if __name__ == "__main__":
    run(LegacyNode)
