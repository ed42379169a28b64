"""Many small data nodes in one process, for tests of a site with hundreds of nodes.

Run as ``python tests/many_nodes.py PREFIX COUNT [SPECIAL]``: nodes
``PREFIX000`` ... each with two fields (``temp``, ``volts``) holding a
minute of samples; node number ``SPECIAL`` (default 7) also has a field
``bolometer_bias``, so a search can find exactly one field among many.
Each node is its own :class:`~sisock.wamp.service.NodeService` session.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from sisock.core.contract import DataCore
from sisock.core.protocol import FieldSpec
from sisock.core.timelines import RingBuffer, query_data, query_fields


class SmallCore(DataCore):
    """A node with a minute of 1 Hz samples of a few fields."""

    def __init__(self, name: str, special: bool) -> None:
        self.name = name
        self.description = f"test node {name}"
        specs = {"temp": FieldSpec("number", "K", "a temperature"), "volts": FieldSpec("number", "V", "a voltage")}
        if special:
            specs["bolometer_bias"] = FieldSpec("number", "uV", "bias of the bolometers")
        self.buffer = RingBuffer(120, specs)
        now = time.time()
        for k, t in enumerate(np.arange(now - 60, now)):
            self.buffer.append(float(t), {f: float(k) for f in specs})

    def get_fields(self, start: float, end: float) -> tuple[dict, dict]:
        """Fields with samples in ``[start, end)``."""
        return query_fields({"tl": self.buffer.snapshot()}, start, end)

    def get_data(self, fields, start, end, min_stride=None, method="mean", *, streaming=False):
        """Samples in ``[start, end)``."""
        return query_data(
            {"tl": self.buffer.snapshot()}, fields, start, end, min_stride, method, self.limit(streaming), live=True
        )


def main() -> None:
    """Serve the nodes until killed."""
    from sisock.site.settings import load_settings
    from sisock.wamp.service import NodeService, run_nodes

    prefix, count = sys.argv[1], int(sys.argv[2])
    special = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    settings = load_settings("server")
    run_nodes([NodeService(SmallCore(f"{prefix}{i:03d}", i == special), settings) for i in range(count)], "warn")


if __name__ == "__main__":
    main()
