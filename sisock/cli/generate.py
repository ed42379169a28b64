"""``sisock generate DIR``: write a synthetic archive for demos, tests and benchmarks.

The archive ends at ``end`` (default: now) and covers ``days`` days.  It holds
four timelines, written chronologically one rotation period at a time so
that the files rotate exactly as a live writer's would:

``weather`` (``slow_rate``, default 0.1 Hz, whole span)
    ``outside_temp`` [C], ``humidity`` [%] (about 1 % NaN), ``pressure``
    [hPa]; a 6-hour outage two days before the end.
``cryo`` (``mid_rate``, default 1 Hz, whole span)
    ``stage_temp`` [K], ``plate_temp`` [K], ``compressor_on`` (bool),
    ``cryo_state`` (string: ``cooling``/``stable``/``warming``); a
    30-minute gap one day before the end.
``fast`` (``fast_rate``, default 100 Hz, last ``fast_hours`` hours)
    ``az``, ``el`` [deg] (a scanning telescope).
``burst`` (``burst_rate``, default 200 Hz, the last ``burst_minutes``
    minutes of every day) ``accel`` [g].

Values are smooth random walks plus daily cycles (numpy, vectorised), so the
defaults (about 4.4 M samples, 7 days) take well under a minute.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from typing import Any

import numpy as np

from sisock.archive.catalog import parse_name
from sisock.core.protocol import FieldSpec
from sisock.archive.writer import ArchiveWriter

log = logging.getLogger(__name__)

DAY = 86400.0

TIMELINES: dict[str, dict[str, FieldSpec]] = {
    "weather": {
        "outside_temp": FieldSpec("number", "C", "outside air temperature"),
        "humidity": FieldSpec("number", "%", "relative humidity"),
        "pressure": FieldSpec("number", "hPa", "barometric pressure"),
    },
    "cryo": {
        "stage_temp": FieldSpec("number", "K", "cold stage temperature"),
        "plate_temp": FieldSpec("number", "K", "4 K plate temperature"),
        "compressor_on": FieldSpec("bool", None, "compressor running"),
        "cryo_state": FieldSpec("string", None, "cryostat state"),
    },
    "fast": {
        "az": FieldSpec("number", "deg", "telescope azimuth"),
        "el": FieldSpec("number", "deg", "telescope elevation"),
    },
    "burst": {
        "accel": FieldSpec("number", "g", "vibration sensor acceleration"),
    },
}


def _times(lo: float, hi: float, rate: float) -> np.ndarray:
    """Sample times ``k / rate`` in ``[lo, hi)`` (epoch-aligned grid)."""
    if rate <= 0 or hi <= lo:
        return np.zeros(0)
    k0, k1 = math.ceil(lo * rate), math.ceil(hi * rate)
    return np.arange(k0, k1, dtype=np.float64) / rate


def _walk(rng: np.random.Generator, n: int, scale: float, state: list[float]) -> np.ndarray:
    """A random walk continuing from ``state[0]`` (updated in place)."""
    if n == 0:
        return np.zeros(0)
    w = state[0] + np.cumsum(rng.normal(0.0, scale, n))
    state[0] = float(w[-1]) * 0.999  # gentle pull back to zero
    return w


class _Synth:
    """Stateful generators of the four timelines (chunk by chunk)."""

    def __init__(
        self, seed: int, start: float, end: float, fast_start: float, gaps: dict[str, tuple[float, float]]
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.start, self.end, self.fast_start = start, end, fast_start
        self.gaps = gaps
        self.state: dict[str, list[float]] = {k: [0.0] for k in ("wt", "wh", "wp", "cs", "cp", "bz")}

    def _cut(self, name: str, t: np.ndarray) -> np.ndarray:
        gap = self.gaps.get(name)
        return t if gap is None else t[(t < gap[0]) | (t >= gap[1])]

    def weather(self, t: np.ndarray) -> dict[str, np.ndarray]:
        day = np.sin(2 * np.pi * (t / DAY - 0.6))
        temp = 5 + 8 * day + _walk(self.rng, t.size, 0.02, self.state["wt"])
        hum = np.clip(60 - 20 * day + _walk(self.rng, t.size, 0.1, self.state["wh"]), 0, 100)
        hum[self.rng.random(t.size) < 0.01] = np.nan
        pres = 1013 + _walk(self.rng, t.size, 0.01, self.state["wp"])
        return {"outside_temp": temp, "humidity": hum, "pressure": pres}

    def cryo(self, t: np.ndarray) -> dict[str, np.ndarray]:
        cycle = np.sin(2 * np.pi * t / (3 * DAY))
        stage = (
            0.1
            + 0.02 * cycle
            + 1e-4 * self.rng.normal(size=t.size)
            + 1e-3 * _walk(self.rng, t.size, 0.01, self.state["cs"])
        )
        plate = 3.2 + 0.3 * cycle + 0.01 * _walk(self.rng, t.size, 0.01, self.state["cp"])
        on = np.sin(2 * np.pi * t / 1800.0) > -0.2
        state = np.where(cycle > 0.5, "warming", np.where(cycle < -0.5, "cooling", "stable"))
        return {"stage_temp": stage, "plate_temp": plate, "compressor_on": on, "cryo_state": state}

    def fast(self, t: np.ndarray) -> dict[str, np.ndarray]:
        az = 180 + 60 * np.sin(2 * np.pi * t / 40.0) + 0.001 * self.rng.normal(size=t.size)
        el = 50 + 0.01 * np.sin(2 * np.pi * t / 600.0) + 0.0005 * self.rng.normal(size=t.size)
        return {"az": az, "el": el}

    def burst(self, t: np.ndarray) -> dict[str, np.ndarray]:
        a = 0.05 * self.rng.normal(size=t.size) + 0.2 * np.sin(2 * np.pi * 17.0 * t)
        return {"accel": a}


def generate(
    directory: str | os.PathLike,
    *,
    days: float = 7.0,
    end: float | None = None,
    fast_hours: float = 2.0,
    fast_rate: float = 100.0,
    slow_rate: float = 0.1,
    mid_rate: float = 1.0,
    burst_rate: float = 200.0,
    burst_minutes: float = 10.0,
    seed: int = 0,
    rotate_seconds: float = 3600.0,
    compression: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write a synthetic archive.

    Parameters
    ----------
    directory : str or os.PathLike
        Archive directory (created if missing).
    days : float
        Span of the archive.
    end : float, optional
        UNIX time of the end of the archive; default now.
    fast_hours, fast_rate : float
        The ``fast`` timeline covers the last ``fast_hours`` at ``fast_rate`` Hz.
    slow_rate, mid_rate : float
        Rates of ``weather`` and ``cryo`` in Hz (0 leaves them out).
    burst_rate, burst_minutes : float
        The ``burst`` timeline: ``burst_minutes`` at the end of every day at
        ``burst_rate`` Hz (0 leaves it out).
    seed : int
        Random seed (same seed, same values).
    rotate_seconds : float
        File period of the writer.
    compression : {None, "lz4", "gzip"}
        Passed to :class:`~sisock.archive.writer.ArchiveWriter`.
    overwrite : bool
        Delete existing archive files in ``directory`` first (only files
        named like archive files).
    progress : bool, optional
        Show a tqdm progress bar; default: when stderr is a terminal.

    Returns
    -------
    dict
        ``directory``, ``start``, ``end``, ``files``, ``bytes``, ``seconds``
        and per timeline ``rate``, ``samples`` and ``fields``.
    """
    t_wall = time.perf_counter()
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    if overwrite:
        for name in os.listdir(directory):
            if parse_name(name):
                os.remove(os.path.join(directory, name))
    end = time.time() if end is None else float(end)
    start = end - days * DAY
    fast_start = end - fast_hours * 3600.0
    gaps = {"weather": (end - 2 * DAY - 3 * 3600, end - 2 * DAY + 3 * 3600), "cryo": (end - DAY, end - DAY + 1800)}
    synth = _Synth(seed, start, end, fast_start, gaps)
    rates = {"weather": slow_rate, "cryo": mid_rate, "fast": fast_rate, "burst": burst_rate}
    counts = {k: 0 for k in TIMELINES}
    chunk = rotate_seconds if math.isfinite(rotate_seconds) and rotate_seconds > 0 else 3600.0
    edges = np.arange(math.floor(start / chunk) * chunk, end + chunk, chunk)
    edges = np.clip(edges, start, end)
    edges = np.unique(edges)
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm import tqdm

    bar = tqdm(total=len(edges) - 1, unit="period", desc="generate", disable=not progress)
    with ArchiveWriter(directory, flush_interval=math.inf, rotate_seconds=rotate_seconds, compression=compression) as w:
        for name, specs in TIMELINES.items():
            if rates[name] > 0:
                w.define_timeline(name, specs)
        for lo, hi in zip(edges[:-1], edges[1:]):
            for name in TIMELINES:
                rate = rates[name]
                if rate <= 0:
                    continue
                a = lo
                if name == "fast":
                    a = max(lo, fast_start)
                t = _times(a, hi, rate)
                if name == "burst":
                    day_end = (np.floor(t / DAY) + 1) * DAY
                    t = t[(day_end - t <= burst_minutes * 60.0) | (t >= end - burst_minutes * 60.0)]
                t = synth._cut(name, t)
                if t.size == 0:
                    continue
                vals = getattr(synth, name)(t)
                w.append(name, t, vals)
                counts[name] += t.size
            w.flush()
            bar.update(1)
    bar.close()
    files = [n for n in os.listdir(directory) if parse_name(n)]
    size = sum(os.path.getsize(os.path.join(directory, n)) for n in files)
    summary = {
        "directory": directory,
        "start": start,
        "end": end,
        "files": len(files),
        "bytes": size,
        "seconds": time.perf_counter() - t_wall,
        "timelines": {
            k: {"rate": rates[k], "samples": counts[k], "fields": list(TIMELINES[k])} for k in TIMELINES if counts[k]
        },
    }
    log.info("generated %s: %d files, %d bytes", directory, len(files), size)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sisock generate`` options to ``parser``."""
    parser.add_argument("directory", metavar="DIR", help="archive directory to write")
    parser.add_argument("--days", type=float, default=7.0, help="span in days (default 7)")
    parser.add_argument("--end", type=float, default=None, help="UNIX time of the end of the archive (default: now)")
    parser.add_argument(
        "--fast-hours", type=float, default=2.0, help="hours covered by the fast timeline, ending at --end (default 2)"
    )
    parser.add_argument("--fast-rate", type=float, default=100.0, help="fast timeline rate in Hz (default 100)")
    parser.add_argument("--slow-rate", type=float, default=0.1, help="weather timeline rate in Hz (default 0.1)")
    parser.add_argument("--mid-rate", type=float, default=1.0, help="cryo timeline rate in Hz (default 1)")
    parser.add_argument(
        "--burst-rate", type=float, default=200.0, help="burst timeline rate in Hz (default 200; 0 disables)"
    )
    parser.add_argument(
        "--burst-minutes", type=float, default=10.0, help="minutes of burst data at the end of each day (default 10)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--rotate-seconds", type=float, default=3600.0, help="file rotation period in seconds (default 3600)"
    )
    parser.add_argument(
        "--compression", choices=("none", "lz4", "gzip"), default="none", help="compression of raw data (default none)"
    )
    parser.add_argument("--overwrite", action="store_true", help="delete existing archive files in DIR first")


def run(args: argparse.Namespace) -> int:
    """Run ``sisock generate`` with parsed arguments; print a summary."""
    try:
        summary = generate(
            args.directory,
            days=args.days,
            end=args.end,
            fast_hours=args.fast_hours,
            fast_rate=args.fast_rate,
            slow_rate=args.slow_rate,
            mid_rate=args.mid_rate,
            burst_rate=args.burst_rate,
            burst_minutes=args.burst_minutes,
            seed=args.seed,
            rotate_seconds=args.rotate_seconds,
            compression=None if args.compression == "none" else args.compression,
            overwrite=args.overwrite,
        )
    except Exception as exc:
        print(f"sisock generate: error: {exc}", file=sys.stderr)
        return 1
    total = sum(v["samples"] for v in summary["timelines"].values())
    print(
        f"wrote {summary['directory']}: {summary['files']} files, {summary['bytes'] / 2**20:.1f} MiB, "
        f"{total} samples in {summary['seconds']:.1f} s"
    )
    for name, v in summary["timelines"].items():
        print(f"  {name:8s} {v['rate']:g} Hz  {v['samples']:>10d} samples  fields: {', '.join(v['fields'])}")
    return 0


__all__ = ["generate", "add_arguments", "run", "TIMELINES"]
