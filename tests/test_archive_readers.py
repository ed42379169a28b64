"""Archive reads are right whatever the readers of one process do.

HDF5 keeps one internal file object per file per process; refreshing a
dataset through one handle while another handle of the same process has the
file open breaks chunk look-ups for both.  These tests run many readers in
one process (kept, closed, dropped and never collected, on several
threads) beside a writer process that rotates files, and compare every
reply with what a fresh process reads afterwards.  They do not rely on the
readers being closed.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import numpy as np
import pytest

from conftest import wait_for
from sisock.archive import h5io
from sisock.archive import index as archive_index
from sisock.archive.catalog import CLOSED, scan
from sisock.archive.reader import ArchiveReader
from sisock.archive.writer import ArchiveWriter
from sisock.core.protocol import FieldSpec

PY = sys.executable
FIELDS = [f"x{i}" for i in range(12)]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: A writer process: 5 samples (1 ms apart) every 2.5 ms, a flush every 0.1 s
#: after which the last flushed time is published in ``flushed.json``, files
#: rotated every ``rotate`` s of data time, 64-row chunks (a chunk every 0.03 s).
WRITER = textwrap.dedent("""
    import json, os, sys, time, numpy as np
    sys.path.insert(0, {root!r})
    from sisock.archive.writer import ArchiveWriter
    from sisock.core.protocol import FieldSpec
    d, marker = {d!r}, {marker!r}
    w = ArchiveWriter(d, flush_interval=1e9, rotate_seconds={rotate}, chunk_rows=64)
    w.define_timeline("live", {{"x": FieldSpec("number", "s", "the sample's own time")}})
    print("ready", flush=True)
    stop = time.time() + {seconds}
    last_flush = 0.0
    t = time.time()
    while time.time() < stop:
        t = max(t + 0.001, time.time())
        ts = t + 0.001 * np.arange(5)
        t = ts[-1]
        w.append("live", ts, {{"x": ts}})
        if time.time() - last_flush > 0.1:
            w.flush()
            last_flush = time.time()
            with open(marker + ".tmp", "w") as f:
                json.dump(t, f)
            os.replace(marker + ".tmp", marker)
        time.sleep(0.0025)
    w.close()
    print("done", flush=True)
""")

FRESH = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {root!r})
    from sisock.archive.reader import ArchiveReader
    with ArchiveReader({d!r}) as r:
        out = r.read(["x"], 0, 2e9)
    np.save({out!r}, out["timeline"]["live"]["t"] if "live" in out["timeline"] else np.zeros(0))
""")


def start_writer(d, marker: str, seconds: float, rotate: float) -> subprocess.Popen:
    """Start the writer process and wait until it has its archive open."""
    p = subprocess.Popen(
        [PY, "-c", WRITER.format(root=ROOT, d=str(d), marker=marker, seconds=seconds, rotate=rotate)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().strip() == "ready"
    return p


def fresh_read(d, tmp_path) -> np.ndarray:
    """Every sample time of the archive, as a fresh process reads it."""
    out = str(tmp_path / "fresh.npy")
    subprocess.run([PY, "-c", FRESH.format(root=ROOT, d=str(d), out=out)], check=True, timeout=120)
    return np.load(out)


class Replies:
    """Replies collected from many threads, checked afterwards."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[float, float, float, np.ndarray, np.ndarray]] = []
        self.errors: list[BaseException] = []

    def query(self, reader: ArchiveReader, marker: str, span: float) -> None:
        """One query of the last ``span`` seconds, noting what was flushed before it began."""
        try:
            with open(marker) as f:
                flushed = float(json.load(f))
        except (OSError, ValueError):
            flushed = -np.inf
        began = time.time()
        start = began - span
        try:
            out = reader.read(["x"], start, 2e9)
        except BaseException as exc:
            with self.lock:
                self.errors.append(exc)
            return
        tl = out["timeline"].get("live")
        t = tl["t"] if tl else np.zeros(0)
        with self.lock:
            self.items.append((began, start, flushed, t, out["data"]["x"]))

    def check(self, fresh: np.ndarray) -> tuple[int, float]:
        """Wrong replies and the largest lag (query start - newest time returned)."""
        wrong, lag = 0, 0.0
        for began, start, flushed, t, x in self.items:
            want = fresh[fresh >= start]
            ok = (
                t.size <= want.size
                and np.array_equal(t, want[: t.size])
                and np.array_equal(x, t)
                and bool(np.all(np.diff(t) > 0))
            )
            if flushed >= start:  # everything flushed before the query must be there
                ok = ok and t.size > 0 and t[-1] >= flushed
            wrong += not ok
            if t.size:
                lag = max(lag, began - float(t[-1]))
        return wrong, lag


@pytest.mark.integration
def test_many_readers_in_one_process_read_right(tmp_path):
    """Two kept readers, readers created and dropped without closing (and kept from
    the collector), and readers closed after each query, on four threads, beside a
    writer process that writes past many chunks and rotates files: every reply
    equals a fresh process's read, ordered, with everything flushed before it."""
    d = tmp_path / "archive"
    marker = str(tmp_path / "flushed.json")
    p = start_writer(d, marker, seconds=8, rotate=2)
    replies = Replies()
    kept = [ArchiveReader(d), ArchiveReader(d)]
    dropped: list[ArchiveReader] = []  # dropped by the test's logic, never collected
    stop = threading.Event()

    def kept_loop(reader: ArchiveReader) -> None:
        while not stop.is_set():
            replies.query(reader, marker, 3.0)
            time.sleep(0.02)

    def drop_loop() -> None:
        while not stop.is_set():
            r = ArchiveReader(d)
            replies.query(r, marker, 3.0)
            dropped.append(r)
            time.sleep(0.05)

    def closing_loop() -> None:
        while not stop.is_set():
            with ArchiveReader(d) as r:
                replies.query(r, marker, 1.0)
            time.sleep(0.05)

    threads = [threading.Thread(target=kept_loop, args=(r,)) for r in kept]
    threads += [threading.Thread(target=drop_loop), threading.Thread(target=closing_loop)]
    try:
        for th in threads:
            th.start()
        assert p.stdout.readline().strip() == "done"
        p.wait(timeout=60)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=120)
        if p.poll() is None:
            p.kill()
    fresh = fresh_read(d, tmp_path)
    assert fresh.size > 1000 and np.all(np.diff(fresh) > 0)
    assert len([n for n in os.listdir(d) if n.endswith(".h5")]) >= 3  # it did rotate
    assert not replies.errors, replies.errors[:3]
    wrong, lag = replies.check(fresh)
    print(f"\nreplies {len(replies.items)}, wrong {wrong}, max lag {lag:.2f} s, dropped readers {len(dropped)}")
    assert len(replies.items) > 50
    assert wrong == 0
    for r in kept + dropped:
        r.close()


@pytest.mark.integration
def test_rotation_is_quiet(tmp_path, caplog):
    """A writer process rotating several times a second: a reader querying in a tight
    loop never fails, logs no ERROR, and every reply is right."""
    d = tmp_path / "archive"
    marker = str(tmp_path / "flushed.json")
    p = start_writer(d, marker, seconds=6, rotate=0.1)
    replies = Replies()
    caplog.set_level(logging.WARNING, logger="sisock")
    try:
        with ArchiveReader(d) as r:
            while p.poll() is None:
                replies.query(r, marker, 0.5)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=60)
    fresh = fresh_read(d, tmp_path)
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    wrong, lag = replies.check(fresh)
    print(
        f"\nreplies {len(replies.items)}, failed {len(replies.errors)}, wrong {wrong}, "
        f"error lines {len(errors)}, files {len(os.listdir(d))}"
    )
    assert not replies.errors, replies.errors[:3]
    assert not errors, errors[:3]
    assert wrong == 0


def test_index_stays_valid_when_one_process_writes_and_reads(tmp_path):
    """The Modbus node's case: a writer and readers in one process, querying while
    the writer appends and rotates. No read sees a batch half written (within one
    process HDF5 shows the writer's state as it is in memory), every index record
    matches its file, and a restarted reader opens no file the index describes."""
    d = tmp_path / "archive"
    t0 = 1_700_000_000.0
    stop = threading.Event()
    bad: list[str] = []

    def reads_beside() -> None:  # a second reader on another thread, as the node's clients
        with ArchiveReader(d) as other:
            while not stop.is_set():
                out = other.read(FIELDS, t0, 2e9)
                tl = out["timeline"].get("tl")
                t = tl["t"] if tl else np.zeros(0)
                if not (
                    np.all(np.diff(t) > 0)
                    and all(np.array_equal(t, out["data"][k]) for k in FIELDS)
                    and (t.size == 0 or (t[0] == t0 and np.allclose(np.diff(t), 0.01, atol=1e-4)))
                ):
                    bad.append(f"{t.size} samples: not ordered, a gap, or x != t")

    d.mkdir()
    beside = threading.Thread(target=reads_beside)
    with ArchiveWriter(d, rotate_seconds=10, flush_interval=1e9, chunk_rows=64) as w:
        w.define_timeline("tl", {k: FieldSpec() for k in FIELDS})
        beside.start()
        try:
            with ArchiveReader(d) as r:
                for i in range(60):  # 6 files of 10 s, 100 samples per second
                    t = t0 + i + np.arange(100) * 0.01
                    w.append("tl", t, {k: t for k in FIELDS})
                    w.flush()
                    got = r.read(["x0"], t0, 2e9)["timeline"]["tl"]["t"]
                    assert got.size == (i + 1) * 100 and got[-1] == t[-1]
        finally:
            stop.set()
            beside.join(timeout=60)
    assert not bad, bad[:3]
    closed = [e for e in scan(str(d)).values() if e.state == CLOSED]
    assert len(closed) >= 6
    index = archive_index.IndexReader(str(d))
    index.refresh()
    stale = [e.name for e in closed if not (e.name in index.records and index.records[e.name].matches(e))]
    index.close()
    assert stale == [], f"{len(stale)} of {len(closed)} records stale: {stale}"
    with ArchiveReader(d) as fresh:
        assert fresh.timelines()["tl"]["count"] == 6000
        assert fresh.file_opens == 0 and fresh.files.read_directly == 0
        assert fresh.files.from_index == len(closed)
        out = fresh.read(["x0"], t0, 2e9)
    np.testing.assert_array_equal(out["timeline"]["tl"]["t"], out["data"]["x0"])
    assert out["timeline"]["tl"]["t"].size == 6000


def test_readers_are_released_promptly(tmp_path):
    """A reader is a context manager, close() may be called twice, and a reader dropped
    without close() is freed at once (no reference cycle), its files released."""
    d = tmp_path / "archive"
    with ArchiveWriter(d) as w:
        w.define_timeline("tl", {"x": FieldSpec()})
        w.append("tl", np.arange(10.0) + 1e9, {"x": np.arange(10.0)})
    with ArchiveReader(d) as r:
        assert r.read(["x"], 0, 2e9)["data"]["x"].size == 10
    r.close()
    r.close()
    collecting = gc.isenabled()
    gc.disable()
    try:
        r = ArchiveReader(d)
        r.read(["x"], 0, 2e9)
        gone = weakref.ref(r)
        del r
        assert gone() is None
    finally:
        if collecting:
            gc.enable()
    wait_for(lambda: h5io.pool().open_count == 0, timeout=10, message="every file released")


def test_in_process_reader_never_sees_half_a_batch(tmp_path, monkeypatch):
    """Within one process HDF5 shows a reader the writer's state as it is in memory.
    A read that arrives while the writer has resized a field but not yet filled it
    must wait for the batch, not return the fill values."""
    from sisock.archive import h5io as io

    d = tmp_path / "archive"
    t0 = 1_700_000_000.0
    paused, resume = threading.Event(), threading.Event()
    real = io._extend

    def slow_extend(ds, rows):  # pause once, between resizing field "y" and filling it
        if ds.name.endswith("/f/y") and ds.shape[0] and not paused.is_set():
            ds.resize(ds.shape[0] + len(rows), axis=0)
            paused.set()
            resume.wait(timeout=2)  # with the fix the reader waits for us: go on regardless
            ds[ds.shape[0] - len(rows) :] = rows
            return
        real(ds, rows)

    monkeypatch.setattr(io, "_extend", slow_extend)
    with ArchiveWriter(d, flush_interval=1e9) as w:
        w.define_timeline("tl", {"x": FieldSpec(), "y": FieldSpec()})
        t = t0 + np.arange(100.0)
        w.append("tl", t, {"x": t, "y": t})
        w.flush()
        with ArchiveReader(d) as r:
            assert r.read(["y"], t0, 2e9)["data"]["y"].size == 100
            got: dict = {}

            def read_during_the_batch() -> None:
                paused.wait(timeout=60)
                got["result"] = r.read(["x", "y"], t0, 2e9)
                resume.set()

            reader = threading.Thread(target=read_during_the_batch)
            reader.start()
            t2 = t0 + 100 + np.arange(100.0)
            w.append("tl", t2, {"x": t2, "y": t2})
            w.flush()
            reader.join(timeout=60)
    assert paused.is_set()
    result = got["result"]
    t = result.timelines["tl"].t
    np.testing.assert_array_equal(result.data["x"], t)
    np.testing.assert_array_equal(result.data["y"], t)


def test_file_renamed_during_a_query_is_found_under_its_new_name(tmp_path, monkeypatch):
    """The writer renames the file it closes right after a query listed the directory:
    the query meets the old name, lists again and answers from the new one."""
    from sisock.archive import catalog
    from sisock.archive.fileset import FileSet

    d = tmp_path / "archive"
    t0 = 1_700_000_000.0
    w = ArchiveWriter(d, flush_interval=1e9)
    w.define_timeline("tl", {"x": FieldSpec()})
    t = t0 + np.arange(100.0)
    w.append("tl", t, {"x": t})
    w.flush()
    with ArchiveReader(d) as r:
        assert r.read(["x"], t0, 2e9)["data"]["x"].size == 100  # knows the .open.h5 file
        real = FileSet.refresh

        def refresh_then_rename(self):
            snapshot = real(self)
            if not w._closed:
                for f in list(self._files.values()):  # not open (as when many files are
                    self.handles.discard(f.path)  # used): the read opens it by name
                w.close()  # renamed to .h5 between the listing and the read
            return snapshot

        monkeypatch.setattr(FileSet, "refresh", refresh_then_rename)
        out = r.read(["x"], t0, 2e9)
    np.testing.assert_array_equal(out["data"]["x"], t)
    assert [n for n in os.listdir(d) if n.endswith(".h5")] == [catalog.file_name(t0, 1, catalog.CLOSED)]
