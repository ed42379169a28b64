"""The archive index: a restart does no per-file work, and the index is never
trusted over the files themselves."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from conftest import listed, wait_for
from test_archive import WRITER_SCRIPT  # one writer-process script for both files
from sisock.archive import h5io
from sisock.archive import index as archive_index
from sisock.archive.catalog import CLOSED, parse_name
from sisock.archive.datafile import ReadableFile
from sisock.archive.core import ArchiveCore
from sisock.archive.reader import ArchiveReader
from sisock.core.protocol import FieldSpec
from sisock.archive.summary import choose_stride
from sisock.archive.writer import ArchiveWriter
from sisock.core.downsample import downsample_columns

T0 = 1_700_006_400.0  # a midnight UTC
DAY = 86400.0
STEP = 10.0  # a month at 0.1 Hz: 720 hourly files, 259 200 samples
PY = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def month_samples(days: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Times and values of the month archive."""
    t = T0 + np.arange(0, days * DAY, STEP)
    return t, np.sin(t / 5000.0) + 0.001 * (t - T0) / DAY


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """A month of hourly files (720), written as a writer would, index included."""
    d = tmp_path_factory.mktemp("month")
    t, y = month_samples()
    per_day = int(DAY / STEP)
    with ArchiveWriter(d, rotate_seconds=3600, flush_interval=1e9) as w:
        w.define_timeline("tl", {"x": FieldSpec("number", "K", "a month of samples")})
        for i in range(0, t.size, per_day):
            w.append("tl", t[i : i + per_day], {"x": y[i : i + per_day]})
            w.flush()
    return d


@pytest.fixture
def opens(monkeypatch):
    """Count every archive file opened (index builds and reads alike)."""
    seen: list[str] = []
    real = h5io.open_readonly

    def counting(path):
        seen.append(path)
        return real(path)

    monkeypatch.setattr(h5io, "open_readonly", counting)
    return seen


def archive_files(d):
    """Archive file names in directory order."""
    return sorted(n for n in os.listdir(d) if parse_name(n))


def expected(t, y, start, end, min_stride, method="mean"):
    """Brute force: downsample the raw samples the way the archive promises."""
    sel = (t >= start) & (t < end)
    stride = choose_stride(min_stride)[0]
    return downsample_columns(t[sel], {"x": y[sel]}, stride, method, (start, end))


def test_restart_does_no_per_file_work(month, opens):
    """A restarted node learns the month from the index without opening a file; the
    whole-month downsampled answer and get_fields open only the two edge files."""
    assert len(archive_files(month)) == 720
    node = ArchiveCore(month, "m")
    assert node.warm() == 1
    assert opens == [] and node.reader.files.from_index == 720 and node.reader.files.read_directly == 0
    t, y = month_samples()
    start, end = T0 + 1800.5, T0 + 30 * DAY - 1800.5  # the edges fall inside files
    stride = (end - start) / 2000
    for method in ("mean", "minmax"):
        got = node.get_data(["x"], start, end, min_stride=stride, method=method)
        ref_t, ref = expected(t, y, start, end, stride, method)
        np.testing.assert_array_equal(got.timelines["tl"].t, ref_t)
        np.testing.assert_allclose(got.data["x"], ref["x"], rtol=1e-9, atol=1e-12)
    assert len(set(opens)) <= 2, sorted(set(opens))
    field, timeline = node.get_fields(start, end)
    assert field["x"] == {"description": "a month of samples", "timeline": "tl", "type": "number", "units": "K"}
    assert timeline["tl"]["interval"] == pytest.approx(STEP)
    assert len(set(opens)) <= 2, sorted(set(opens))


def test_restart_first_answer_through_client(month, stack, client):
    """A node started on the month archive answers the first whole-month query through
    the router with the archive's own answer."""
    p = stack.start("hdf5-month", "serve", "hdf5", "--name", "month", "--archive", str(month))
    try:
        wait_for(lambda: "month" in listed(client), 30, "month node never listed:\n" + p.log())
        start, end = T0 + 1800.5, T0 + 30 * DAY - 1800.5
        r = client.get_data("month", ["x"], start, end, min_stride=(end - start) / 2000)
        t, y = month_samples()
        ref_t, ref = expected(t, y, start, end, (end - start) / 2000)
        np.testing.assert_array_equal(r.timelines["tl"].t, ref_t)
        np.testing.assert_allclose(r.data["x"], ref["x"], rtol=1e-9, atol=1e-12)
    finally:
        p.stop()


def write_days(d, days, t0=T0, rotate=3600.0):
    """Write ``days`` days at 0.1 Hz from ``t0``; return (t, y)."""
    t = t0 + np.arange(0, days * DAY, STEP)
    y = np.cos(t / 3000.0)
    with ArchiveWriter(d, rotate_seconds=rotate) as w:
        w.define_timeline("tl", {"x": FieldSpec()})
        w.append("tl", t, {"x": y})
    return t, y


def whole(reader, t):
    """Raw samples of the whole archive."""
    out = reader.read(["x"], 0, 2e9)
    return out["timeline"]["tl"]["t"] if out["timeline"] else np.zeros(0), out["data"]["x"]


def test_lost_index_is_rebuilt(tmp_path, opens):
    """Without its index a reader reads every file directly (same answers);
    ``sisock archive reindex`` and the next writer both rebuild it."""
    from sisock.cli.main import main

    t, y = write_days(tmp_path, 0.5)
    n_files = len(archive_files(tmp_path))
    os.remove(archive_index.index_path(tmp_path))
    r = ArchiveReader(tmp_path)
    got_t, got_y = whole(r, t)
    np.testing.assert_array_equal(got_t, t)
    np.testing.assert_array_equal(got_y, y)
    assert r.files.read_directly == n_files and r.files.from_index == 0
    assert main(["archive", "reindex", str(tmp_path)]) == 0
    opens.clear()
    r2 = ArchiveReader(tmp_path)
    assert r2.timelines()["tl"]["count"] == t.size
    assert opens == [] and r2.files.from_index == n_files
    os.remove(archive_index.index_path(tmp_path))
    ArchiveWriter(tmp_path).close()  # a writer's start indexes what it finds
    r3 = ArchiveReader(tmp_path)
    np.testing.assert_array_equal(whole(r3, t)[1], y)
    assert r3.files.from_index == n_files and r3.files.read_directly == 0


def test_stale_index_is_not_trusted(tmp_path):
    """A file missing from the index or changed since is read directly; a record
    whose file vanished is dropped; answers always follow the files."""
    t, y = write_days(tmp_path, 0.25)  # 6 files
    names = archive_files(tmp_path)
    index_size = os.path.getsize(archive_index.index_path(tmp_path))
    t2, y2 = write_days(tmp_path, 0.25, t0=T0 + 0.25 * DAY)
    # the newest files lose their records (as if the index were older than them)
    os.truncate(archive_index.index_path(tmp_path), index_size)
    r = ArchiveReader(tmp_path)
    got_t, got_y = whole(r, None)
    np.testing.assert_array_equal(got_t, np.concatenate((t, t2)))
    assert r.files.from_index == len(names) and r.files.read_directly == len(archive_files(tmp_path)) - len(names)
    # a file removed: its record is ignored, its samples are gone
    gone = os.path.join(tmp_path, names[2])
    os.remove(gone)
    keep = (t < T0 + 2 * 3600) | (t >= T0 + 3 * 3600)
    r2 = ArchiveReader(tmp_path)
    np.testing.assert_array_equal(whole(r2, None)[0], np.concatenate((t[keep], t2)))
    assert r.read(["x"], T0 + 2 * 3600, T0 + 3 * 3600)["timeline"] == {}  # the live reader too
    # a file changed since its record (here only its mtime): read directly
    os.utime(os.path.join(tmp_path, names[0]), ns=(1, 1))
    r3 = ArchiveReader(tmp_path)
    r3.timelines()
    assert r3.files.read_directly == 1 + len(archive_files(tmp_path)) - (len(names) - 1)
    np.testing.assert_array_equal(whole(r3, None)[1], np.concatenate((y[keep], y2)))
    # the next writer drops the vanished record and indexes the others
    ArchiveWriter(tmp_path).close()
    r4 = ArchiveReader(tmp_path)
    r4.timelines()
    assert r4.files.read_directly == 0 and r4.files.from_index == len(archive_files(tmp_path))
    ix = archive_index.IndexReader(str(tmp_path))
    ix.refresh()
    assert names[2] not in ix.records and len(ix.records) == len(archive_files(tmp_path))


def test_crashed_files_count(tmp_path):
    """A crashed writer's file is served while open (read directly) and, once the
    next writer marks it crashed, from its index record."""
    t = T0 + np.arange(0, 3 * 3600, STEP)
    w = ArchiveWriter(tmp_path, rotate_seconds=3600, flush_interval=0.0)
    w.define_timeline("tl", {"x": FieldSpec()})
    w.append("tl", t, {"x": t - T0})
    w.flush()
    w._file.wf.close()  # simulate kill -9: no summary of the last buckets, no rename
    w._file = None
    w._lock.release()
    w._closed = True
    assert archive_files(tmp_path)[-1].endswith(".open.h5")
    r = ArchiveReader(tmp_path)
    np.testing.assert_array_equal(whole(r, None)[0], t)
    assert r.files.read_directly == 1
    with ArchiveWriter(tmp_path, rotate_seconds=3600) as w2:
        w2.define_timeline("tl", {"x": FieldSpec()})
        w2.append("tl", np.array([t[-1] + 5.0]), {"x": np.array([0.5])})
    assert any(n.endswith(".crashed.h5") for n in archive_files(tmp_path))
    r2 = ArchiveReader(tmp_path)
    got_t, got_y = whole(r2, None)
    np.testing.assert_array_equal(got_t, np.append(t, t[-1] + 5.0))
    assert r2.files.read_directly == 0 and r2.files.from_index == len(archive_files(tmp_path))
    ds = r2.read(["x"], T0, T0 + 4 * 3600, min_stride=1024.0)["data"]["x"]
    ref_t, ref = downsample_columns(got_t, {"x": got_y}, 1024.0, "mean")
    np.testing.assert_allclose(ds, ref["x"], rtol=1e-12)


def test_torn_index_record_is_cut(tmp_path):
    """A record torn by a crash is ignored by readers and cut off by the next writer."""
    t, _ = write_days(tmp_path, 0.25)
    path = archive_index.index_path(tmp_path)
    good = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(archive_index.RECORD.pack(archive_index.RECORD_MAGIC, 100, 100, 0) + b"{")
    r = ArchiveReader(tmp_path)
    np.testing.assert_array_equal(whole(r, None)[0], t)
    assert r.files.read_directly == 0
    ArchiveWriter(tmp_path).close()
    assert os.path.getsize(path) == good
    with open(path, "wb") as f:  # not an index at all: the writer rebuilds it
        f.write(b"garbage")
    ArchiveWriter(tmp_path).close()
    r2 = ArchiveReader(tmp_path)
    np.testing.assert_array_equal(whole(r2, None)[0], t)
    assert r2.files.from_index == len(archive_files(tmp_path))


@pytest.mark.integration  # starts a writer process
def test_reader_follows_writer_and_its_index(tmp_path):
    """Beside a writer process rotating files fast, a reader's answers stay whole and
    ordered, and closed files come to be described by the index."""
    p = subprocess.Popen(
        [PY, "-c", WRITER_SCRIPT.format(root=ROOT, d=str(tmp_path), fi=0.02, rotate=0.25)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline().strip() == "ready"
        with ArchiveReader(tmp_path) as r:
            seen_index = []

            def grown():
                out = r.read(["x"], 0, 2e9)
                if "live" in out["timeline"]:
                    t = out["timeline"]["live"]["t"]
                    assert np.all(np.diff(t) > 0)
                    np.testing.assert_array_equal(out["data"]["x"], t)
                seen_index.append(r.files.from_index)
                return r.files.from_index >= 5

            wait_for(grown, 60, "the reader never saw indexed files")
        closed = [n for n in archive_files(tmp_path) if parse_name(n)[1] == CLOSED]
        assert len(closed) >= 5
    finally:
        p.kill()
        p.wait(timeout=10)


def test_get_fields_not_blocked_by_a_long_read(tmp_path, monkeypatch):
    """While one caller's read is stuck inside the archive, another caller's
    get_fields and get_data are answered."""
    write_days(tmp_path, 0.25)
    node = ArchiveCore(tmp_path, "n")
    node.warm()
    entered, release = threading.Event(), threading.Event()
    real = ReadableFile.read_into  # raw rows of immutable files are read straight into place

    def slow_read_into(self, *args):
        if threading.current_thread().name == "slow":
            entered.set()
            release.wait(60)
        return real(self, *args)

    monkeypatch.setattr(ReadableFile, "read_into", slow_read_into)
    slow = threading.Thread(target=node.get_data, args=(["x"], T0, T0 + 3600), name="slow")
    slow.start()
    try:
        assert entered.wait(30)
        answers = []
        other = threading.Thread(
            target=lambda: answers.append(
                (node.get_fields(T0 + 100.5, T0 + 7000.5), node.get_data(["x"], T0 + 10, T0 + 50))
            )
        )
        other.start()
        other.join(60)
        assert not other.is_alive(), "get_fields waited for another caller's read"
        fields, data = answers[0]
        assert "x" in fields[0] and data.data["x"].size == 4
        assert slow.is_alive()  # the slow read was still in progress
    finally:
        release.set()
        slow.join(30)


@pytest.mark.integration  # runs `python -m sisock` in a child process
def test_reindex_command_help():
    """``sisock archive reindex --help`` documents the command."""
    out = subprocess.run([PY, "-m", "sisock", "archive", "reindex", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "usage: sisock archive reindex" in out.stdout, out.stderr
    assert "DIR" in out.stdout


def test_damaged_index_table_is_not_used(tmp_path):
    """A summary table of the index that fails its CRC is not used: the reader reads
    the file, answers stay exact, and the next writer re-describes the file."""
    t, y = write_days(tmp_path, 0.25)
    r0 = ArchiveReader(tmp_path)
    r0.timelines()
    record = next(iter(r0.files.refresh().by_seq.values())).index_record
    _, offset, rows, cols, _ = record.part("tl", 2)
    with open(archive_index.index_path(tmp_path), "r+b") as f:
        f.seek(offset + 8)  # the first row's count: make it wrong
        f.write(np.array([1e9]).tobytes())
    r = ArchiveReader(tmp_path)
    got = r.read(["x"], T0, T0 + 6 * 3600, min_stride=4096.0)
    ref_t, ref = downsample_columns(t, {"x": y}, 4096.0, "mean")
    np.testing.assert_allclose(got["data"]["x"], ref["x"], rtol=1e-12)
    ArchiveWriter(tmp_path).close()
    ix = archive_index.IndexReader(str(tmp_path))
    ix.refresh()
    assert all(archive_index.intact(rec) for rec in ix.records.values())
    assert len(ix.records) == len(archive_files(tmp_path))
