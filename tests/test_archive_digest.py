"""The index digest: a starting reader decodes a few arrays instead of every
JSON header of the index, and gets exactly the records the index holds;
a digest that is damaged or not of the current index is never used."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sisock.archive import digest
from sisock.archive import index as archive_index
from sisock.archive.reader import ArchiveReader
from sisock.archive.writer import ArchiveWriter
from sisock.core.protocol import FieldSpec

T0 = 1_700_006_400.0

pytestmark = pytest.mark.unit


def write_archive(d, hours: int = 12, t0: float = T0) -> None:
    """Hourly files with two timelines (numbers and strings, and a bool), an index beside them."""
    with ArchiveWriter(d, rotate_seconds=3600, flush_interval=1e9) as w:
        w.define_timeline(
            "slow",
            {"x": FieldSpec("number", "K", "x"), "state": FieldSpec("string", "", "a state")},
        )
        w.define_timeline("fast", {"on": FieldSpec("bool", "", "a switch")})
        for h in range(hours):
            t = t0 + h * 3600 + np.arange(0, 3600, 10.0)
            w.append("slow", t, {"x": np.sin(t / 1000), "state": np.array([f"s{int(v) % 3}" for v in t])})
            tf = t0 + h * 3600 + np.arange(0, 3600, 1.0)
            w.append("fast", tf, {"on": (tf.astype(int) // 7) % 2 == 0})
            w.flush()


def records_of(d, use_digest: bool) -> dict:
    """The records an index reader gets, with or without the digest."""
    if not use_digest:
        digest.remove(str(d))
    ix = archive_index.IndexReader(str(d))
    ix.refresh()
    out = dict(ix.records)
    ix.close()
    return out


def same_record(a: archive_index.IndexedFile, b: archive_index.IndexedFile) -> None:
    """Assert two records describe the same file the same way (tables included)."""
    assert (a.name, a.seq, a.state, a.size, a.mtime_ns, a.span) == (b.name, b.seq, b.state, b.size, b.mtime_ns, b.span)
    assert a.timelines.keys() == b.timelines.keys()
    for tl, ia in a.timelines.items():
        ib = b.timelines[tl]
        assert ia.fields == ib.fields and ia.numeric == ib.numeric
        assert (ia.min_level, ia.count, ia.t_first, ia.t_last) == (ib.min_level, ib.count, ib.t_first, ib.t_last)
        assert a.layout[tl][0] == b.layout[tl][0]
        assert [list(x) for x in a.layout[tl][1]] == [list(x) for x in b.layout[tl][1]]
    for pa, pb in zip(archive_index.read_tables(a.parts()), archive_index.read_tables(b.parts())):
        np.testing.assert_array_equal(pa, pb)


def test_digest_gives_the_records_of_the_index(tmp_path, monkeypatch):
    """Records built from the digest equal those decoded from the index, field by field and table by table."""
    monkeypatch.setattr(digest, "WRITE_AFTER", 1)
    write_archive(tmp_path)
    from_log = records_of(tmp_path, use_digest=False)
    assert len(from_log) >= 11
    ix = archive_index.IndexReader(str(tmp_path))
    ix.refresh()  # decodes the log, then writes the digest
    ix.close()
    assert os.path.exists(digest.digest_path(str(tmp_path)))
    calls = []
    real = archive_index.read_records
    monkeypatch.setattr(
        archive_index, "read_records", lambda *a: calls.append(a[1:3]) or real(*a)
    )  # what the next reader still decodes from the log
    from_digest = records_of(tmp_path, use_digest=True)
    assert calls and all(pos == size for pos, size in calls), "the whole index came from the digest"
    assert from_digest.keys() == from_log.keys()
    for name in from_log:
        same_record(from_digest[name], from_log[name])


def test_records_appended_after_the_digest_are_read_from_the_index(tmp_path, monkeypatch):
    """A digest behind the index: its records, then the newer ones from the index."""
    monkeypatch.setattr(digest, "WRITE_AFTER", 1)
    write_archive(tmp_path, hours=4)
    records_of(tmp_path, use_digest=True)  # writes a digest of 3 closed files
    monkeypatch.setattr(digest, "WRITE_AFTER", 10**9)  # keep that old digest
    write_archive(tmp_path, hours=4, t0=T0 + 10 * 3600)
    got = records_of(tmp_path, use_digest=True)
    want = records_of(tmp_path, use_digest=False)
    assert got.keys() == want.keys() and len(want) >= 7
    for name in want:
        same_record(got[name], want[name])


def test_queries_answer_the_same_with_and_without_the_digest(tmp_path, monkeypatch):
    """Downsampled, raw and string queries are identical whether the reader started from the digest or not."""
    monkeypatch.setattr(digest, "WRITE_AFTER", 1)
    write_archive(tmp_path, hours=12)
    queries = [
        (["x", "on"], T0, T0 + 12 * 3600, 1800.0, "mean"),
        (["x", "on"], T0 + 1234.5, T0 + 9 * 3600 + 17, 600.0, "minmax"),
        (["x", "state"], T0 + 5000, T0 + 5 * 3600, None, "mean"),
        (["state", "on"], T0, T0 + 12 * 3600, 7200.0, "last"),
    ]

    def answers():
        with ArchiveReader(tmp_path) as r:
            return [r.read(*q) for q in queries]

    digest.remove(str(tmp_path))
    without = answers()  # this reader writes the digest
    assert os.path.exists(digest.digest_path(str(tmp_path)))
    with_digest = answers()
    for a, b in zip(without, with_digest):
        assert a["timeline"].keys() == b["timeline"].keys()
        for tl in a["timeline"]:
            np.testing.assert_array_equal(a["timeline"][tl]["t"], b["timeline"][tl]["t"])
        for k in a["data"]:
            np.testing.assert_array_equal(np.asarray(a["data"][k]), np.asarray(b["data"][k]))


def test_digest_of_a_rewritten_index_is_not_used(tmp_path, monkeypatch):
    """After the writer drops a vanished file's record (the index is rewritten), the old digest is not used."""
    monkeypatch.setattr(digest, "WRITE_AFTER", 1)
    write_archive(tmp_path, hours=6)
    records_of(tmp_path, use_digest=True)
    old_digest = open(digest.digest_path(str(tmp_path)), "rb").read()
    victim = sorted(n for n in os.listdir(tmp_path) if n.endswith(".h5") and ".open" not in n)[0]
    os.remove(tmp_path / victim)
    archive_index.sync(str(tmp_path))  # rewrites the index without the victim
    with open(digest.digest_path(str(tmp_path)), "wb") as f:  # an old digest left behind
        f.write(old_digest)
    got = records_of(tmp_path, use_digest=True)
    assert victim not in got
    assert got.keys() == records_of(tmp_path, use_digest=False).keys()


@pytest.mark.parametrize("damage", ["flip_blob", "flip_meta", "truncate", "garbage", "other_tail", "empty"])
def test_damaged_or_foreign_digest_is_ignored_and_replaced(tmp_path, monkeypatch, damage):
    """A damaged digest, or one naming other index bytes, is ignored; the reader decodes
    the index and writes a good one."""
    monkeypatch.setattr(digest, "WRITE_AFTER", 1)
    write_archive(tmp_path, hours=6)
    want = records_of(tmp_path, use_digest=False)
    records_of(tmp_path, use_digest=True)
    path = digest.digest_path(str(tmp_path))
    data = bytearray(open(path, "rb").read())
    if damage == "flip_blob":
        data[-5] ^= 0xFF
    elif damage == "flip_meta":
        data[len(digest.MAGIC) + digest.HEAD.size + 10] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif damage == "empty":
        data = bytearray()
    else:  # a valid digest that names bytes the index does not hold
        ix = archive_index.IndexReader(str(tmp_path))
        ix.refresh()
        data = bytearray(digest.encode(list(ix.records.values()), ix.source.inode, ix.parsed, 12345))
        ix.close()
    with open(path, "wb") as f:
        f.write(bytes(data))
    got = records_of(tmp_path, use_digest=True)
    assert got.keys() == want.keys()
    for name in want:
        same_record(got[name], want[name])
    fixed = open(path, "rb").read()
    assert fixed != bytes(data)  # replaced by a good one
    ix = archive_index.IndexReader(str(tmp_path))
    ix.refresh()
    assert digest.read(str(tmp_path), ix.source.fd, ix.source.inode, ix.parsed) is not None
    ix.close()


def test_reader_without_write_access_goes_without_a_digest(tmp_path, monkeypatch):
    """A reader that cannot write the directory still reads every record (and writes nothing)."""
    monkeypatch.setattr(digest, "WRITE_AFTER", 1)
    write_archive(tmp_path, hours=4)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(digest.tempfile, "mkstemp", refuse)
    got = records_of(tmp_path, use_digest=False)
    assert len(got) >= 3
    assert not os.path.exists(digest.digest_path(str(tmp_path)))


def test_writer_keeps_the_digest_current(tmp_path, monkeypatch):
    """Every WRITE_AFTER files it closes, the writer brings the digest up to date, so a
    reader that cannot write the directory still starts from a digest at most that far behind."""
    monkeypatch.setattr(digest, "WRITE_AFTER", 3)
    write_archive(tmp_path, hours=8)  # 7 files closed by this writer (the 8th by its close)
    monkeypatch.setattr(digest, "WRITE_AFTER", 10**9)  # this reader writes none
    ix = archive_index.IndexReader(str(tmp_path))
    ix.refresh()
    covered = digest.read(str(tmp_path), ix.source.fd, ix.source.inode, ix.parsed)
    total = len(ix.records)
    ix.close()
    assert covered is not None
    assert total - len(covered) < 3, (total, len(covered))
