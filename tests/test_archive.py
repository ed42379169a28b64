"""Tests of the archive writer and reader (sisock.archive)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import wait_for
from sisock.archive.catalog import parse_name
from sisock.archive.lock import ArchiveLocked
from sisock.archive.reader import ArchiveReader
from sisock.core.protocol import FieldSpec
from sisock.archive.writer import ArchiveWriter
from sisock.core.errors import BadArgument, TooMuchData

T0 = 1_700_000_000.0
SPECS = {
    "temp": FieldSpec("number", "K", "a temperature"),
    "ok": FieldSpec("bool", None, "a flag"),
    "state": FieldSpec("string", None, "a state"),
}
PY = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_simple(d, n=100, dt=1.0, t0=T0, **kw):
    """Write one timeline 'a' with n samples; return (t, values)."""
    t = t0 + np.arange(n) * dt
    vals = {
        "temp": np.sin(np.arange(n) / 7.0),
        "ok": np.arange(n) % 3 == 0,
        "state": np.array([f"s{i % 4}" for i in range(n)]),
    }
    with ArchiveWriter(d, **kw) as w:
        w.define_timeline("a", SPECS)
        w.append("a", t, vals)
    return t, vals


def archive_files(d):
    """Archive file names in directory order."""
    return sorted(n for n in os.listdir(d) if parse_name(n))


def test_roundtrip_types_and_half_open_range(tmp_path):
    """Raw reads return exactly what was written, in [start, end), with API dtypes."""
    t, vals = write_simple(tmp_path)
    r = ArchiveReader(tmp_path)
    out = r.read(["temp", "ok", "state"], t[10], t[20])
    np.testing.assert_array_equal(out["timeline"]["a"]["t"], t[10:20])
    np.testing.assert_array_equal(out["data"]["temp"], vals["temp"][10:20])
    assert out["data"]["ok"].dtype == bool
    np.testing.assert_array_equal(out["data"]["ok"], vals["ok"][10:20])
    assert list(out["data"]["state"]) == list(vals["state"][10:20])
    assert out["timeline"]["a"]["finalized_until"] is None  # everything is in closed files


def test_unknown_field_and_no_data_give_empty_arrays(tmp_path):
    """A missing field gets an empty array; a timeline without data in range is absent."""
    write_simple(tmp_path)
    r = ArchiveReader(tmp_path)
    out = r.read(["temp", "nope"], T0 - 100, T0 - 50)
    assert out["data"]["temp"].size == 0 and out["data"]["nope"].size == 0
    assert out["timeline"] == {}
    out = r.read(["nope"], T0, T0 + 50)
    assert out["timeline"] == {} and out["data"]["nope"].size == 0


def test_fields_shape_and_overlap(tmp_path):
    """get_fields shape; only timelines with data overlapping the range are listed."""
    with ArchiveWriter(tmp_path) as w:
        w.define_timeline("a", {"x": FieldSpec("number", "V", "volts")})
        w.define_timeline("b", {"y": FieldSpec("bool")})
        w.append("a", T0 + np.arange(11.0) * 2, {"x": np.arange(11.0)})
        w.append("b", T0 + 1000 + np.arange(5.0), {"y": np.ones(5, bool)})
    r = ArchiveReader(tmp_path)
    field, timeline = r.fields(T0, T0 + 100)
    assert field == {"x": {"description": "volts", "timeline": "a", "type": "number", "units": "V"}}
    assert timeline == {"a": {"interval": 2.0, "field": ["x"]}}
    field, timeline = r.fields(T0, T0 + 2000)
    assert set(field) == {"x", "y"} and timeline["b"]["interval"] == 1.0
    spans = r.timelines()
    assert spans["a"]["count"] == 11 and spans["b"]["t_first"] == T0 + 1000


def test_out_of_order_and_duplicates_rejected_nothing_written(tmp_path):
    """Non-increasing times (within or across batches) raise and leave no trace."""
    w = ArchiveWriter(tmp_path)
    w.define_timeline("a", SPECS)
    w.append("a", T0 + np.arange(5.0), {"temp": np.arange(5.0)})
    for bad in ([10.0, 9.0], [20.0, 20.0], [3.0, 30.0], [4.0], [np.nan]):
        with pytest.raises(BadArgument, match="'a'") as err:
            w.append("a", T0 + np.array(bad), {"temp": np.zeros(len(bad))})
        assert "t[" in str(err.value)
    with pytest.raises(BadArgument, match="'nofield'"):
        w.append("a", T0 + np.array([50.0]), {"nofield": np.zeros(1)})
    with pytest.raises(BadArgument, match="2 values for 1 times"):
        w.append("a", T0 + np.array([50.0]), {"temp": np.zeros(2)})
    with pytest.raises(BadArgument, match="not defined"):
        w.append("zz", T0 + np.array([50.0]), {})
    w.close()
    out = ArchiveReader(tmp_path).read(["temp"], 0, 2e9)
    np.testing.assert_array_equal(out["timeline"]["a"]["t"], T0 + np.arange(5.0))


def test_missing_fields_are_filled(tmp_path):
    """Fields absent from a batch are NaN / False / ""."""
    with ArchiveWriter(tmp_path) as w:
        w.define_timeline("a", SPECS)
        w.append("a", T0 + np.arange(3.0), {"temp": np.ones(3)})
    out = ArchiveReader(tmp_path).read(["temp", "ok", "state"], 0, 2e9)["data"]
    assert list(out["temp"]) == [1, 1, 1] and not out["ok"].any() and list(out["state"]) == ["", "", ""]


def test_monotonic_across_restart(tmp_path):
    """A restarted writer knows the last time of each timeline from the files."""
    write_simple(tmp_path, n=10)
    with ArchiveWriter(tmp_path) as w:
        w.define_timeline("a", SPECS)
        assert w.last_time("a") == T0 + 9
        with pytest.raises(BadArgument, match="not after the last appended time"):
            w.append("a", np.array([T0 + 9]), {"temp": [0.0]})
        w.append("a", np.array([T0 + 10]), {"temp": [0.0]})
    assert len(archive_files(tmp_path)) == 2  # new file, never appended to the old one


def test_rotation_by_time_names_sort_in_time_order(tmp_path):
    """Hourly rotation splits a batch at hour boundaries; name order is time order."""
    t, _ = write_simple(tmp_path, n=4 * 3600 // 10, dt=10.0, t0=T0 + 1800, rotate_seconds=3600)
    names = archive_files(tmp_path)
    assert len(names) == 5 and all(n.endswith(".h5") and ".open" not in n for n in names)
    r = ArchiveReader(tmp_path)
    firsts = []
    files = r.files.refresh().by_seq
    for seq in sorted(files):
        info = files[seq].timelines["a"]
        assert int(info.t_first // 3600) == int(info.t_last // 3600)  # one clock hour per file
        firsts.append(info.t_first)
    assert firsts == sorted(firsts) and [parse_name(n)[0] for n in names] == sorted(parse_name(n)[0] for n in names)
    out = r.read(["temp"], 0, 2e9)
    np.testing.assert_array_equal(out["timeline"]["a"]["t"], t)


def test_rotation_by_size(tmp_path):
    """A file that reaches rotate_bytes after a flush is closed; data continues intact."""
    t = T0 + np.arange(200_000) * 0.01
    with ArchiveWriter(tmp_path, rotate_bytes=300_000, flush_interval=0.0) as w:
        w.define_timeline("a", {"x": FieldSpec()})
        for i in range(0, t.size, 20_000):
            w.append("a", t[i : i + 20_000], {"x": np.arange(i, i + 20_000, dtype=float)})
    names = archive_files(tmp_path)
    assert len(names) >= 4
    assert all(os.path.getsize(tmp_path / n) < 300_000 + 2 * 20_000 * 16 + 200_000 for n in names)
    out = ArchiveReader(tmp_path).read(["x"], 0, 2e9)
    np.testing.assert_array_equal(out["data"]["x"], np.arange(t.size, dtype=float))


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest(), os.stat(path).st_mtime_ns


def test_closed_files_are_immutable(tmp_path):
    """Once renamed complete, a file's bytes never change while writing goes on."""
    w = ArchiveWriter(tmp_path, rotate_seconds=100, flush_interval=0.0)
    w.define_timeline("a", {"x": FieldSpec()})
    w.append("a", T0 + np.arange(250.0), {"x": np.arange(250.0)})
    closed = [n for n in archive_files(tmp_path) if ".open" not in n]
    assert len(closed) >= 2
    before = {n: _digest(tmp_path / n) for n in closed}
    for i in range(5):
        w.append("a", T0 + 250 + i * 10 + np.arange(10.0), {"x": np.zeros(10)})
        ArchiveReader(tmp_path).read(["x"], 0, 2e9, min_stride=300)
    w.close()
    assert {n: _digest(tmp_path / n) for n in closed} == before


def test_one_writer_per_directory(tmp_path):
    """A second writer is refused while the first lives; the lock is released on close."""
    w = ArchiveWriter(tmp_path)
    with pytest.raises(ArchiveLocked, match=str(os.getpid())):
        ArchiveWriter(tmp_path)
    w.close()
    ArchiveWriter(tmp_path).close()


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time, numpy as np
    sys.path.insert(0, {root!r})
    from sisock.archive.writer import ArchiveWriter
    from sisock.core.protocol import FieldSpec
    w = ArchiveWriter({d!r}, flush_interval={fi}, rotate_seconds={rotate})
    w.define_timeline("live", {{"x": FieldSpec()}})
    print("ready", flush=True)
    while True:
        now = time.time()
        w.append("live", np.array([now]), {{"x": np.array([now])}})
        time.sleep(0.005)
""")


def _start_writer(d, fi=0.2):
    """Start :data:`WRITER_SCRIPT` on ``d`` without rotation; return it once it is ready.

    Parameters
    ----------
    d : pathlib.Path
        Archive directory.
    fi : float
        The writer's flush interval (seconds).

    Returns
    -------
    subprocess.Popen
        The writer process (appending 'live' samples until killed).
    """
    p = subprocess.Popen(
        [PY, "-c", WRITER_SCRIPT.format(root=ROOT, d=str(d), fi=fi, rotate=1e9)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "ready"
    return p


def flushed(d, timeline="live") -> int:
    """Samples of ``timeline`` a fresh reader finds in archive ``d`` (0 before any file).

    The reader is closed before returning.

    Parameters
    ----------
    d : pathlib.Path
        Archive directory.
    timeline : str
        Timeline of field ``x``.

    Returns
    -------
    int
        Number of samples flushed so far.
    """
    if not archive_files(d):
        return 0
    with ArchiveReader(d) as r:
        tl = r.read(["x"], 0, 2e9)["timeline"].get(timeline)
    return 0 if tl is None else len(tl["t"])


@pytest.mark.integration  # kills a writer process
def test_kill_9_loses_at_most_flush_interval_and_restart_uses_new_file(tmp_path):
    """SIGKILL a writer: data up to ~flush_interval before the kill survives and is served;
    a new writer takes over the stale lock and continues in a new file."""
    fi = 0.2
    p = _start_writer(tmp_path, fi)
    try:
        wait_for(lambda: flushed(tmp_path) > 50, 30, "the writer flushed 50 samples or fewer")
        t_kill = time.time()
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    names = archive_files(tmp_path)
    assert len(names) == 1 and names[0].endswith(".open.h5")
    with ArchiveReader(tmp_path) as r:
        out = r.read(["x"], 0, 2e9)
    t = out["timeline"]["live"]["t"]
    assert t.size > 50
    assert t[-1] >= t_kill - fi - 0.3  # loss bounded by the flush interval (+ scheduling slack)
    np.testing.assert_array_equal(out["data"]["x"], t)
    with ArchiveWriter(tmp_path) as w:  # stale lock taken over
        w.define_timeline("live", {"x": FieldSpec()})
        assert w.last_time("live") == t[-1]
        w.append("live", np.array([t[-1] + 1]), {"x": np.array([1.0])})
    names = archive_files(tmp_path)
    assert len(names) == 2 and names[0].endswith(".crashed.h5") and ".open" not in names[1]
    with ArchiveReader(tmp_path) as r:
        t2 = r.read(["x"], 0, 2e9)["timeline"]["live"]["t"]
    np.testing.assert_array_equal(t2, np.append(t, t[-1] + 1))


@pytest.mark.integration  # starts a writer process
def test_reader_concurrent_with_writer_process(tmp_path):
    """A reader follows a live writer in another process: data grows, stays ordered,
    finalized_until is set, and new files are picked up without restart."""
    p = _start_writer(tmp_path, 0.05)
    try:
        with ArchiveReader(tmp_path) as r:
            sizes = []

            def grown() -> bool:
                out = r.read(["x"], 0, 2e9)
                if "live" in out["timeline"]:
                    t = out["timeline"]["live"]["t"]
                    assert np.all(np.diff(t) > 0)
                    np.testing.assert_array_equal(out["data"]["x"], t)
                    fin = out["timeline"]["live"]["finalized_until"]
                    assert fin is not None and fin == t[-1]
                    sizes.append(t.size)
                return len(sizes) > 5 and sizes[-1] > sizes[0]

            wait_for(grown, 30, "the reader did not see the archive grow")
            ds = r.read(["x"], 0, 2e9, min_stride=0.5)["timeline"]["live"]
        fin = ds["finalized_until"]  # start of the bin holding the last stored sample
        assert fin % 0.5 == 0 and ds["t"][-1] - 0.5 < fin <= ds["t"][-1] + 0.25
    finally:
        p.kill()
        p.wait(timeout=10)


def test_reader_picks_up_new_files_without_restart(tmp_path):
    """Files written after the reader was created are found by the next query."""
    write_simple(tmp_path, n=10)
    r = ArchiveReader(tmp_path)
    assert r.read(["temp"], 0, 2e9)["data"]["temp"].size == 10
    with ArchiveWriter(tmp_path) as w:
        w.define_timeline("a", SPECS)
        w.append("a", T0 + 100 + np.arange(5.0), {"temp": np.ones(5)})
        w.flush()
        out = r.read(["temp"], 0, 2e9)  # growing file
        assert out["data"]["temp"].size == 15
        assert out["timeline"]["a"]["finalized_until"] == T0 + 104
    out = r.read(["temp"], 0, 2e9)  # now closed and renamed
    assert out["data"]["temp"].size == 15 and out["timeline"]["a"]["finalized_until"] is None


def test_query_touches_only_overlapping_files(tmp_path):
    """After the catalog is loaded, a query reads data only from files overlapping it."""
    with ArchiveWriter(tmp_path, rotate_seconds=600) as w:
        w.define_timeline("a", {"x": FieldSpec()})
        w.append("a", T0 + np.arange(0, 6000, 5.0), {"x": np.arange(1200.0)})
    r = ArchiveReader(tmp_path)
    r.timelines()
    spans = {s: (f.timelines["a"].t_first, f.timelines["a"].t_last) for s, f in r.files.refresh().by_seq.items()}
    assert len(spans) >= 10
    for a, b, kw in (
        (T0 + 1300, T0 + 2500, {}),
        (T0 + 2000, T0 + 4000, {"min_stride": 300.0}),
        (T0 + 10, T0 + 50, {"min_stride": 1.0}),
    ):
        r.read(["x"], a, b, **kw)
        over = {s for s, (f0, f1) in spans.items() if f0 < b and f1 >= a}
        assert r.last_files_read and r.last_files_read <= over, (r.last_files_read, over)
        assert len(r.last_files_read) < len(spans)


def test_too_much_data_names_limit_and_suggests_stride(tmp_path):
    """max_samples is enforced before reading; the suggested min_stride fits."""
    write_simple(tmp_path, n=5000)
    r = ArchiveReader(tmp_path)
    with pytest.raises(TooMuchData, match="max_samples=1000") as err:
        r.read(["temp", "ok"], 0, T0 + 5000, max_samples=1000)
    assert "min_stride" in str(err.value)
    with pytest.raises(TooMuchData):
        r.read(["temp", "ok"], T0, T0 + 5000, max_samples=1000)
    suggested = float(str(err.value).split("min_stride >= ")[1].split(" ")[0])
    for method in ("mean", "minmax"):
        try:
            out = r.read(["temp"], T0, T0 + 5000, min_stride=suggested * 2, method=method, max_samples=1000)
        except TooMuchData:
            pytest.fail("suggested stride did not fit")
        assert 0 < out["data"]["temp"].size <= 1000


def test_bad_arguments(tmp_path):
    """Bad method, stride and range raise BadArgument naming the argument."""
    write_simple(tmp_path, n=10)
    r = ArchiveReader(tmp_path)
    with pytest.raises(BadArgument, match="'method'"):
        r.read(["temp"], 0, 2e9, min_stride=1.0, method="median")
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(BadArgument, match="'min_stride'"):
            r.read(["temp"], 0, 2e9, min_stride=bad)
    raw = r.read(["temp"], 0, 2e9)
    zero = r.read(["temp"], 0, 2e9, min_stride=0)  # sisock 0.x: 0 means no downsampling
    np.testing.assert_array_equal(zero["data"]["temp"], raw["data"]["temp"])
    with pytest.raises(BadArgument, match="'end'"):
        r.read(["temp"], 10, 5)
    with pytest.raises(BadArgument, match="timeline name"):
        ArchiveWriter(tmp_path / "x").define_timeline("a/b", SPECS)


def test_too_much_data_counts_every_field_asked(tmp_path):
    """A refusal counts the fields of the whole request (not those of one timeline) and
    suggests a min_stride that fits them all."""
    t = 1_700_000_000.0 + np.arange(1000.0)
    with ArchiveWriter(tmp_path) as w:
        w.define_timeline("a", {f"x{i}": FieldSpec() for i in range(5)})
        w.define_timeline("b", {f"y{i}": FieldSpec() for i in range(5)})
        w.append("a", t, {f"x{i}": t for i in range(5)})
        w.append("b", t, {f"y{i}": t for i in range(5)})
    fields = [f"x{i}" for i in range(5)] + [f"y{i}" for i in range(5)]
    with ArchiveReader(tmp_path) as r:
        with pytest.raises(TooMuchData) as err:
            r.read(fields, t[0], t[-1] + 1, max_samples=7000)
        assert "(10 field(s))" in str(err.value)
        fits = err.value.details["min_stride"]
        out = r.read(fields, t[0], t[-1] + 1, min_stride=fits, max_samples=7000)
    assert sum(len(v) for v in out["data"].values()) <= 7000
