"""Field listings of an archive kept while nothing can change them (sisock.archive.listings)."""

from __future__ import annotations

import numpy as np
import pytest

from sisock.archive.core import ArchiveCore
from sisock.archive.writer import ArchiveWriter
from sisock.core.protocol import FieldSpec

pytestmark = pytest.mark.unit


def write(directory, t0: float, n: int, fields=("x",)) -> None:
    """One closed file: ``n`` samples at 1 Hz from ``t0`` on timeline ``tl``."""
    t = t0 + np.arange(n, dtype=float)
    with ArchiveWriter(directory) as w:
        w.define_timeline("tl", {k: FieldSpec("number", units="V") for k in fields})
        w.append("tl", t, {k: np.ones(n) for k in fields})


@pytest.fixture
def core(tmp_path):
    """An archive core over one closed file (samples 1000..1099)."""
    write(tmp_path, 1000.0, 100)
    c = ArchiveCore(tmp_path, "arch")
    yield c
    c.reader.close()


def count_reads(core) -> list:
    """Record every listing the reader computes."""
    calls = []
    fields = core.reader.fields

    def counted(start, end):
        calls.append((start, end))
        return fields(start, end)

    core.reader.fields = counted
    return calls


def test_same_range_again_is_not_read_again(core):
    """A listing asked again, with nothing changed, comes from the cache (and is equal)."""
    reads = count_reads(core)
    first = core.get_fields(900.0, 1200.0)
    again = core.get_fields(900.0, 1200.0)
    assert again == first
    assert first[0]["x"]["units"] == "V" and first[1]["tl"]["field"] == ["x"]
    assert reads == [(900.0, 1200.0)]
    core.get_fields(900.0, 1100.0)  # another range is computed
    assert reads == [(900.0, 1200.0), (900.0, 1100.0)]


def test_a_new_file_changes_the_answer(core, tmp_path):
    """A file added to the directory makes every kept listing stale."""
    before = core.get_fields(0.0, 5000.0)
    assert before[0].keys() == {"x"}
    write(tmp_path, 2000.0, 50, fields=("x", "y"))
    after = core.get_fields(0.0, 5000.0)
    assert after[0].keys() == {"x", "y"}
    assert after[1]["tl"]["interval"] != before[1]["tl"]["interval"]


def test_growing_file_is_never_cached(tmp_path):
    """While a writer appends, each listing is computed (its counts change at every poll)."""
    write(tmp_path, 1000.0, 100)
    core = ArchiveCore(tmp_path, "arch")
    reads = count_reads(core)
    with ArchiveWriter(tmp_path) as w:
        w.define_timeline("tl", {"x": FieldSpec("number")})
        w.append("tl", 3000.0 + np.arange(10.0), {"x": np.ones(10)})
        w.flush()
        first = core.get_fields(0.0, 5000.0)
        w.append("tl", 3010.0 + np.arange(90.0), {"x": np.ones(90)})
        w.flush()
        second = core.get_fields(0.0, 5000.0)
    assert len(reads) == 2
    assert second[1]["tl"]["interval"] != first[1]["tl"]["interval"]
    core.reader.close()


def test_caller_editing_an_answer_does_not_change_the_next(core):
    """Answers are copies: editing one leaves the kept listing intact."""
    first = core.get_fields(900.0, 1200.0)
    first[0]["x"]["units"] = "mangled"
    first[1]["tl"]["field"].append("mangled")
    del first[0]["x"]
    again = core.get_fields(900.0, 1200.0)
    assert again[0]["x"]["units"] == "V"
    assert again[1]["tl"]["field"] == ["x"]


def test_bad_range_is_refused_every_time(core):
    """A bad range raises the reader's error, and nothing is kept for it."""
    from sisock.core.errors import BadArgument

    for _ in range(2):
        with pytest.raises(BadArgument):
            core.get_fields(float("nan"), 1200.0)
