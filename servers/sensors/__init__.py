"""``sensors``: a live data node sampling this machine (load, memory, temperatures).

Every ``interval`` seconds :meth:`SensorsCore.sample` reads the load
average, CPU and memory use and any temperature sensors psutil can see,
appends them to a bounded :class:`~sisock.core.timelines.RingBuffer`, and returns
the new sample so the WAMP shell can publish it on the node's ``live``
topic.
"""

from __future__ import annotations

import argparse
import os
import re
import time

import numpy as np
import psutil

from sisock.core.contract import DataCore
from sisock.core.timelines import RingBuffer, query_data, query_fields
from sisock.core.protocol import FieldSpec, Result
from sisock.core.plan import Plan, Publish
from sisock.site.settings import Settings

HELP = "live example: this machine's load and memory"
REACTOR = "default"


def _temperatures() -> dict[str, tuple[FieldSpec, float]]:
    """Every temperature psutil can read: field name -> (spec, current value)."""
    try:
        sensors = psutil.sensors_temperatures()
    except (AttributeError, OSError):
        return {}
    out = {}
    for chip, entries in sensors.items():
        for i, entry in enumerate(entries):
            label = re.sub(r"\W+", "_", f"{chip}_{entry.label or i}").strip("_").lower()
            out[f"temp_{label}"] = (FieldSpec("number", "C", f"Temperature {chip} {entry.label}"), float(entry.current))
    return out


class SensorsCore(DataCore):
    """Node core: this machine's sensors in a ring buffer.

    Parameters
    ----------
    interval : float
        Seconds between samples (for ``get_fields``' interval).
    capacity : int
        Samples kept (default one day at 2 s).
    """

    timeline = "sensors"

    def __init__(self, name: str = "sensors", interval: float = 2.0, capacity: int = 43_200) -> None:
        self.name = name
        self.description = f"Live load, memory and temperatures of {os.uname().nodename}"
        self.interval = interval
        specs = {
            "load_1min": FieldSpec("number", None, "1-minute load average"),
            "cpu_percent": FieldSpec("number", "%", "CPU use"),
            "mem_percent": FieldSpec("number", "%", "Memory use"),
            "mem_available": FieldSpec("number", "GiB", "Available memory"),
        }
        specs.update({k: spec for k, (spec, _) in _temperatures().items()})
        self.buffer = RingBuffer(capacity, specs)
        psutil.cpu_percent(None)  # prime the CPU counter

    def sample(self, now: float | None = None) -> Result:
        """Take one sample, store it, and return it in ``get_data`` shape."""
        now = time.time() if now is None else now
        vm = psutil.virtual_memory()
        values = {
            "load_1min": os.getloadavg()[0],
            "cpu_percent": psutil.cpu_percent(None),
            "mem_percent": vm.percent,
            "mem_available": vm.available / 2**30,
        }
        values.update({k: v for k, (_, v) in _temperatures().items()})
        self.buffer.append(now, values)
        out = Result()
        out.add(
            self.timeline, np.asarray([now]), {k: np.asarray([values.get(k, np.nan)]) for k in self.buffer.specs}, now
        )
        return out

    def _timelines(self):
        return {self.timeline: self.buffer.snapshot()}

    def get_fields(self, start: float, end: float) -> tuple[dict, dict]:
        """Fields with samples in ``[start, end)``."""
        return query_fields(self._timelines(), start, end)

    def get_data(self, fields, start, end, min_stride=None, method="mean", *, streaming=False) -> Result:
        """Buffered samples in ``[start, end)``."""
        return query_data(self._timelines(), fields, start, end, min_stride, method, self.limit(streaming), live=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sisock serve sensors``."""
    parser.add_argument("--name", default="sensors", help="data node name")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between samples (default 2)")
    parser.add_argument("--capacity", type=int, default=43_200, help="samples kept in memory (default 43200)")


def build(args: argparse.Namespace, settings: Settings) -> Plan:
    """The sensors core, and a loop that samples and publishes every ``--interval`` s."""
    core = SensorsCore(args.name, args.interval, args.capacity)

    def start(publish: Publish) -> None:
        from twisted.internet.task import LoopingCall

        LoopingCall(lambda: publish(core.sample())).start(args.interval, now=True)

    return Plan(core, start=[start])
