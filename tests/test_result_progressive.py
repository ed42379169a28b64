"""One result type from the archive reader to the wire, read progressively when streamed."""

from __future__ import annotations

import numpy as np
import pytest

from sisock.archive.reader import ArchiveReader
from sisock.archive.writer import ArchiveWriter
from sisock.core import wire
from sisock.core.protocol import FieldSpec, Result

pytestmark = pytest.mark.unit

T0 = 1_700_000_000.0


def _archive(d, hours: int = 3, rate: float = 50.0, open_last: bool = False):
    """``hours`` hourly files of timeline ``tl`` (``x`` number, ``b`` bool); the writer
    is returned still open when ``open_last`` (its last file growing)."""
    w = ArchiveWriter(d, rotate_seconds=3600)
    w.define_timeline("tl", {"x": FieldSpec("number"), "b": FieldSpec("bool")})
    for h in range(hours):
        t = T0 + h * 3600 + np.arange(int(3600 * rate)) / rate
        w.append("tl", t, {"x": np.sin(t), "b": (t.astype(np.int64) % 3) == 0})
        w.flush()
    if open_last:
        return w
    w.close()
    return None


def test_reader_returns_a_result(tmp_path):
    """The reader's answer is a Result: arrays, timelines and each field's timeline."""
    _archive(tmp_path, hours=1)
    with ArchiveReader(tmp_path) as r:
        got = r.read(["x", "nope"], T0, T0 + 10)
    assert isinstance(got, Result) and got.pending is None
    assert got.field_timeline == {"x": "tl"} and len(got.data["nope"]) == 0
    assert got.timelines["tl"].t.size == got.data["x"].size == 500


@pytest.mark.parametrize("open_last", [False, True])
def test_progressive_read_equals_the_eager_read(tmp_path, open_last):
    """Read slab by slab, the arrays end equal to a read of everything at once, and
    ``filled`` only grows; a growing last file is read at once."""
    writer = _archive(tmp_path, open_last=open_last)
    try:
        with ArchiveReader(tmp_path) as r:
            eager = r.read(["x", "b", "nope"], T0 + 100, T0 + 3 * 3600 - 100)
            files = set(r.last_files_read)
            lazy = r.read(["x", "b", "nope"], T0 + 100, T0 + 3 * 3600 - 100, progressive=True)
            assert lazy.pending is not None and lazy.rows_ready("tl") == 0
            assert set(r.last_files_read) == files and len(files) >= 3
            seen = [lazy.rows_ready("tl")]
            while lazy.step():
                if lazy.pending is not None:
                    seen.append(lazy.rows_ready("tl"))
            assert seen == sorted(seen) and len(seen) > 3
            assert lazy.rows_ready("tl") == eager.timelines["tl"].t.size
    finally:
        if writer is not None:
            writer.close()
    np.testing.assert_array_equal(lazy.timelines["tl"].t, eager.timelines["tl"].t)
    np.testing.assert_array_equal(lazy.data["x"], eager.data["x"])
    np.testing.assert_array_equal(lazy.data["b"], eager.data["b"])
    assert lazy.data["b"].dtype == bool and lazy.field_timeline == eager.field_timeline
    assert lazy.timelines["tl"].finalized_until == eager.timelines["tl"].finalized_until


def test_streamed_parts_of_a_progressive_result(tmp_path):
    """Parts cut from a progressive result rebuild the same arrays as from a complete one."""
    _archive(tmp_path, hours=2)
    with ArchiveReader(tmp_path) as r:
        lazy = r.read(["x"], T0, T0 + 7200, progressive=True)
        whole = r.read(["x"], T0, T0 + 7200)
        asm = wire.Assembler()
        for part in wire.chunk_reply(lazy, 2**16):
            asm.add(part)
    np.testing.assert_array_equal(asm.data["x"], whole.data["x"])
    np.testing.assert_array_equal(asm.timeline["tl"]["t"], whole.timelines["tl"].t)


def test_progressive_result_after_its_reader_closed(tmp_path):
    """Rows still pending when the reader closes are refused, and no file is left open."""
    from sisock.archive import h5io

    _archive(tmp_path, hours=2)
    with ArchiveReader(tmp_path) as r:
        lazy = r.read(["x"], T0, T0 + 7200, progressive=True)
    with pytest.raises(RuntimeError, match="closed before"):
        lazy.complete()
    assert h5io.pool().open_count == 0


def test_budget_and_streaming_take_the_result_itself():
    """The reply budget and the part cutter work on the Result (no dict in between)."""
    from sisock.core import budget

    r = Result()
    t = np.arange(100_000, dtype=np.float64)
    r.add("tl", t, {"x": t * 2, "s": np.array(["a"] * 100_000, dtype=object)})
    r.data["alone"] = np.array(["z"])
    ranges, rest = wire.split_plan(r, 2**16)
    assert {p.timeline for p in ranges} == {"tl"} and rest == ["s", "alone"]
    assert sum(p.i1 - p.i0 for p in ranges) == 100_000
    reply, part = budget.plan_reply(r, 0.0, 1e5, 2**24, "binary", True)
    assert reply is None and part > 0
