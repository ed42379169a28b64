"""Every data core shipped answers the data-core contract (``sisock.core.contract.DataCore``)
the same way: the same checks run against each of them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sisock.core.contract import DataCore
from sisock.core.errors import TooMuchData
from sisock.core.protocol import FIELD_TYPES, Result

pytestmark = pytest.mark.unit


def weather_core(tmp_path):
    """The weather example (in-memory timelines from text files)."""
    from sisock.servers.weather import WeatherCore, load_directory, make_example

    return WeatherCore(load_directory(make_example(tmp_path / "weather")))


def sensors_core(tmp_path):
    """The sensors example (a ring buffer), with a minute of samples."""
    from sisock.servers.sensors import SensorsCore

    core = SensorsCore(interval=1.0)
    now = time.time()
    for i in range(60):
        core.sample(now - 60 + i)
    return core


_ARCHIVES: dict[str, str] = {}


def archive_core(tmp_path):
    """The HDF5 archive core over a small generated archive (generated once per session)."""
    from sisock.archive.core import ArchiveCore
    from sisock.cli.generate import generate

    if "dir" not in _ARCHIVES:
        _ARCHIVES["dir"] = str(tmp_path / "archive")
        generate(_ARCHIVES["dir"], days=0.5, fast_hours=0.1, fast_rate=10.0, progress=False)
    return ArchiveCore(_ARCHIVES["dir"])


CORES = {"weather": weather_core, "sensors": sensors_core, "archive": archive_core}


@pytest.fixture(params=sorted(CORES))
def core(request, tmp_path):
    """Each shipped core in turn."""
    c = CORES[request.param](tmp_path)
    yield c
    reader = getattr(c, "reader", None)
    if reader is not None:
        reader.close()


def span_of(core: DataCore) -> tuple[float, float, dict, dict]:
    """A range holding every sample of the core, and its ``get_fields`` answer there."""
    start, end = 1.0, time.time() + 10
    fields, timelines = core.get_fields(start, end)
    return start, end, fields, timelines


def test_is_a_data_core(core):
    """The core has the contract's attributes and methods."""
    assert isinstance(core, DataCore)
    assert isinstance(core.name, str) and core.name
    assert isinstance(core.description, str)
    assert core.limit(False) == core.max_samples and core.limit(True) == core.max_samples_streamed


def test_get_fields_shape(core):
    """``get_fields`` gives ``field[name] = {description, timeline, type, units}`` and
    ``timeline[name] = {interval, field}``, each consistent with the other."""
    _, _, fields, timelines = span_of(core)
    assert fields and timelines
    for name, f in fields.items():
        assert set(f) == {"description", "timeline", "type", "units"}
        assert f["type"] in FIELD_TYPES and f["timeline"] in timelines
        assert name in timelines[f["timeline"]]["field"]
    for tl in timelines.values():
        assert set(tl) == {"interval", "field"}
        assert tl["interval"] is None or tl["interval"] > 0
    assert core.get_fields(1.0, 2.0) == ({}, {})  # nothing in 1970


def test_get_data_shape(core):
    """``get_data`` returns a Result: an array per requested field (empty for an unknown
    one), times strictly increasing inside the range, one length per timeline."""
    start, end, fields, _ = span_of(core)
    names = sorted(fields)[:6] + ["no_such_field"]
    r = core.get_data(names, start, end)
    assert isinstance(r, Result)
    assert set(r.data) == set(names) and len(r.data["no_such_field"]) == 0
    for name in names[:-1]:
        tl = r.field_timeline[name]
        t = r.timelines[tl].t
        assert len(r.data[name]) == len(t) > 0
        assert np.all(np.diff(t) > 0) and t[0] >= start and t[-1] < end
        fu = r.timelines[tl].finalized_until
        assert fu is None or fu <= t[-1] + 1e-9


def test_min_stride_spacing(core):
    """With ``min_stride`` successive samples are at least that far apart."""
    start, end, fields, timelines = span_of(core)
    name = sorted(fields)[0]
    stride = 600.0
    r = core.get_data([name], start, end, min_stride=stride)
    t = r.timelines[r.field_timeline[name]].t
    assert len(t) > 0 and np.all(np.diff(t) >= stride * (1 - 1e-9))


def test_too_much_data_names_a_min_stride_that_fits(core):
    """Over ``max_samples`` the core raises TooMuchData naming a ``min_stride`` that fits."""
    start, end, fields, _ = span_of(core)
    name = sorted(fields)[0]
    n = len(core.get_data([name], start, end).data[name])
    core.max_samples = max(2, n // 4)
    with pytest.raises(TooMuchData) as err:
        core.get_data([name], start, end)
    suggested = float(str(err.value).split("min_stride >= ")[1].split()[0])
    r = core.get_data([name], start, end, min_stride=suggested)
    assert 0 < len(r.data[name]) <= core.max_samples


def test_minmax_stamps_stay_inside_the_range(core):
    """``minmax`` never returns a time before ``start`` or at/after ``end``, even when the
    range cuts a bin; times stay strictly increasing."""
    start, end, fields, _ = span_of(core)
    numbers = sorted(f for f, i in fields.items() if i["type"] == "number")
    full = core.get_data(numbers, start, end)

    def regular(f: str) -> bool:  # samples all along the field's span (no long gap)
        t = full.timelines[full.field_timeline[f]].t if f in full.field_timeline else np.zeros(0)
        return len(t) > 20 and float(np.diff(t).max()) < (t[-1] - t[0]) / 20

    name = next(f for f in numbers if regular(f))
    t_all = full.timelines[full.field_timeline[name]].t
    stride = float(t_all[-1] - t_all[0]) / 10
    # bins are aligned to the epoch: start 0.9 bin into one, end 0.1 bin into another
    lo = (np.floor(t_all[0] / stride) + 1.9) * stride
    hi = (np.floor(t_all[-1] / stride) - 1.9) * stride
    r = core.get_data([name], lo, hi, min_stride=stride, method="minmax")
    t = r.timelines[r.field_timeline[name]].t
    assert len(t) >= 2 and t[0] >= lo and t[-1] < hi and np.all(np.diff(t) > 0)
