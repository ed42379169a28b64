"""``weather``: a historical data node over text files of ``time value`` lines.

Each ``*.dat`` file holds one field. A small header of ``# key: value``
lines names it and gives its metadata::

    # field: temperature
    # timeline: weather
    # units: C
    # description: Air temperature at the weather mast
    1700000000.0 12.5
    1700000300.0 12.4

``field`` defaults to the file name, ``timeline`` to the field name; files
sharing a ``timeline`` must have the same times. With no directory,
:func:`make_example` writes a week of synthetic weather ending now.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from sisock.core.contract import DataCore
from sisock.core.errors import BadArgument
from sisock.core.timelines import Timeline, query_data, query_fields
from sisock.core.protocol import FieldSpec, Result
from sisock.core.plan import Plan
from sisock.site.settings import Settings

HELP = "historical example: text files of 'time value'"
REACTOR = "default"


def read_dat(path: Path) -> tuple[dict[str, str], np.ndarray, np.ndarray]:
    """Read one ``.dat`` file: header dict, times, values."""
    header: dict[str, str] = {}
    rows: list[tuple[float, float]] = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                key, _, value = line[1:].partition(":")
                if value:
                    header[key.strip().lower()] = value.strip()
                continue
            parts = line.split()
            if len(parts) != 2:
                raise BadArgument(f"{path}:{lineno}: expected 'time value', got {line!r}")
            rows.append((float(parts[0]), float(parts[1])))
    arr = np.asarray(rows, dtype=float).reshape(-1, 2)
    order = np.argsort(arr[:, 0], kind="stable")
    return header, arr[order, 0], arr[order, 1]


def load_directory(directory: Path) -> dict[str, Timeline]:
    """Load every ``*.dat`` file of ``directory`` into timelines."""
    timelines: dict[str, Timeline] = {}
    files = sorted(Path(directory).glob("*.dat"))
    if not files:
        raise BadArgument(f"no *.dat files in {directory}")
    for path in files:
        header, t, v = read_dat(path)
        name = header.get("field", path.stem)
        tl_name = header.get("timeline", name)
        spec = FieldSpec("number", header.get("units"), header.get("description"))
        tl = timelines.get(tl_name)
        if tl is None:
            timelines[tl_name] = Timeline(t, {name: v}, {name: spec})
        else:
            if len(tl.t) != len(t) or not np.array_equal(tl.t, t):
                raise BadArgument(f"{path}: times differ from the other files of timeline {tl_name!r}")
            tl.values[name] = v
            tl.specs[name] = spec
    return timelines


EXAMPLE_FIELDS = {
    "temperature": ("C", "Air temperature at the mast"),
    "humidity": ("%", "Relative humidity"),
    "pressure": ("hPa", "Barometric pressure"),
    "windspeed": ("m/s", "Wind speed"),
}


def make_example(
    directory: Path, days: float = 7.0, step: float = 300.0, end: float | None = None, seed: int = 1
) -> Path:
    """Write a synthetic week of weather (one file per field) ending at ``end``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    end = time.time() if end is None else end
    t = np.arange(np.floor((end - days * 86400) / step) * step, end, step)
    rng = np.random.default_rng(seed)
    day = 2 * np.pi * t / 86400
    series = {
        "temperature": -2 + 6 * np.sin(day - 2.0) + np.cumsum(rng.normal(0, 0.05, t.size)),
        "humidity": np.clip(40 + 20 * np.sin(day + 1.0) + rng.normal(0, 2, t.size), 0, 100),
        "pressure": 555 + np.cumsum(rng.normal(0, 0.02, t.size)),
        "windspeed": np.abs(5 + 3 * np.sin(day / 3) + rng.normal(0, 1.5, t.size)),
    }
    for name, values in series.items():
        units, desc = EXAMPLE_FIELDS[name]
        lines = [f"# field: {name}", "# timeline: weather", f"# units: {units}", f"# description: {desc}"]
        lines += [f"{a:.1f} {b:.4f}" for a, b in zip(t, values)]
        tmp = directory / f".{name}.dat.{os.getpid()}"
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, directory / f"{name}.dat")  # atomic: concurrent starts are safe
    return directory


class WeatherCore(DataCore):
    """Node core serving the files of one directory (loaded once)."""

    def __init__(
        self,
        timelines: dict[str, Timeline],
        name: str = "weather",
        description: str = "Weather station (text files)",
        max_samples: int = 1_000_000,
    ) -> None:
        self.name = name
        self.description = description
        self.timelines = timelines
        self.max_samples = self.max_samples_streamed = max_samples

    def get_fields(self, start: float, end: float) -> tuple[dict, dict]:
        """Fields with data in ``[start, end)``."""
        return query_fields(self.timelines, start, end)

    def get_data(self, fields, start, end, min_stride=None, method="mean", *, streaming=False) -> Result:
        """Samples in ``[start, end)``, downsampled when ``min_stride`` is given.

        A station's files grow, so like a live core this says samples are
        final up to the last one loaded (``finalized_until``).
        """
        return query_data(self.timelines, fields, start, end, min_stride, method, self.limit(streaming), live=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sisock serve weather``."""
    parser.add_argument(
        "directory",
        nargs="?",
        type=Path,
        help="directory of *.dat files (default: a generated example week in $SISOCK_HOME/examples/weather)",
    )
    parser.add_argument("--name", default="weather", help="data node name")
    parser.add_argument("--description", default="Weather station (text files)")


def build(args: argparse.Namespace, settings: Settings) -> Plan:
    """The weather core for parsed arguments (nothing else to start)."""
    directory = args.directory
    if directory is None:
        directory = make_example(Path(settings.home) / "examples" / "weather")
    return Plan(WeatherCore(load_directory(directory), args.name, args.description))
