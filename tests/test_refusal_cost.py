"""A query the archive will refuse costs little: it is refused before field values are read."""

from __future__ import annotations

import pytest

from sisock.archive import ArchiveReader
from sisock.archive.datafile import ReadableFile
from sisock.cli.generate import generate
from sisock.core.errors import TooMuchData


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    """Half a day, 100 Hz for the last hour (hourly files)."""
    d = tmp_path_factory.mktemp("refusal")
    info = generate(d, days=0.5, fast_hours=1.0, burst_rate=0, progress=False)
    return d, info["end"]


@pytest.mark.parametrize("method", ["mean", "minmax"])
def test_binned_query_over_budget_reads_no_field_values(small_archive, monkeypatch, method):
    """A tiny ``min_stride`` (binned from raw samples) over the budget is refused
    before any field value is read; with a stride that fits, the same query answers."""
    d, end = small_archive
    reads: list[str] = []
    read_field, read_into = ReadableFile.read_field, ReadableFile.read_into

    def counting_field(self, tl, name, i0, i1):
        reads.append(name)
        return read_field(self, tl, name, i0, i1)

    def counting_into(self, tl, columns, i0, i1):
        reads.extend(name for name, _ in columns if name is not None)  # None: the times
        return read_into(self, tl, columns, i0, i1)

    monkeypatch.setattr(ReadableFile, "read_field", counting_field)
    monkeypatch.setattr(ReadableFile, "read_into", counting_into)
    with ArchiveReader(d) as reader:
        with pytest.raises(TooMuchData) as err:
            reader.read(["az", "el"], end - 3600, end, 1e-6, method, max_samples=50_000)
        assert err.value.details["min_stride"] > 0
        assert reads == [], "field values were read for a query that was refused"
        fits = reader.read(["az", "el"], end - 3600, end, err.value.details["min_stride"], method, max_samples=50_000)
        assert 0 < fits["data"]["az"].size * 2 <= 50_000
        assert reads, "the query that fits reads its values"
