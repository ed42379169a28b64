"""Tests of ``sisock generate`` (sisock.cli.generate)."""

from __future__ import annotations

import argparse
import time

import numpy as np
import pytest

from sisock.cli import generate as gen
from sisock.archive.reader import ArchiveReader

END = 1_750_000_000.0


def test_small_archive_contents(tmp_path):
    """Timelines, types, rates, gaps, NaNs, string and bool fields are all present."""
    s = gen.generate(tmp_path, days=3.0, end=END, fast_hours=0.1, fast_rate=100.0, burst_minutes=1.0, seed=1)
    assert set(s["timelines"]) == {"weather", "cryo", "fast", "burst"}
    assert s["end"] == END and s["start"] == END - 3 * 86400
    r = ArchiveReader(tmp_path)
    field, timeline = r.fields(END - 3 * 86400, END)
    assert field["cryo_state"]["type"] == "string" and field["compressor_on"]["type"] == "bool"
    assert field["outside_temp"]["units"] == "C" and field["az"]["timeline"] == "fast"
    assert abs(timeline["fast"]["interval"] - 0.01) < 1e-6
    assert abs(timeline["cryo"]["interval"] - 1.0) < 0.01  # one 30-min gap in 3 days
    out = r.read(["humidity", "outside_temp"], END - 3 * 86400, END)
    t = out["timeline"]["weather"]["t"]
    assert np.isnan(out["data"]["humidity"]).any() and not np.isnan(out["data"]["outside_temp"]).any()
    assert np.diff(t).max() >= 6 * 3600 - 10  # the weather outage
    assert t[-1] < END and t[0] >= END - 3 * 86400
    cryo = r.read(["cryo_state", "compressor_on"], END - 86400 - 100, END - 86400 + 2000)
    assert set(cryo["data"]["cryo_state"]) <= {"cooling", "stable", "warming"}
    assert cryo["data"]["compressor_on"].dtype == bool
    assert np.diff(cryo["timeline"]["cryo"]["t"]).max() >= 1800  # the cryo gap
    fast = r.read(["az"], END - 3600, END)["timeline"]["fast"]["t"]
    assert fast.size == 360 * 100  # the last 0.1 h at 100 Hz
    burst = r.timelines()["burst"]
    assert burst["count"] >= 200 * 60 * 3


def test_same_seed_same_values(tmp_path):
    """Generation is deterministic for a given seed and end."""
    a = gen.generate(tmp_path / "a", days=0.2, end=END, fast_hours=0.01, seed=7)
    b = gen.generate(tmp_path / "b", days=0.2, end=END, fast_hours=0.01, seed=7)
    ra, rb = ArchiveReader(tmp_path / "a"), ArchiveReader(tmp_path / "b")
    fields = ["stage_temp", "humidity", "az", "accel"]
    da, db = ra.read(fields, 0, 2e9), rb.read(fields, 0, 2e9)
    for k in fields:
        np.testing.assert_array_equal(da["data"][k], db["data"][k])
    assert a["timelines"] == b["timelines"]


@pytest.mark.integration  # writes a whole demo week
def test_cli_default_is_a_week_with_fast_data(tmp_path, capsys):
    """The default command writes ~a week ending now with >=100 Hz data for the last 2 h.

    How long it takes is printed (and measured in the benchmarks), not asserted:
    a busy machine may take any time.
    """
    parser = argparse.ArgumentParser()
    gen.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "demo")])
    assert gen.run(args) == 0
    assert "fast" in capsys.readouterr().out
    r = ArchiveReader(tmp_path / "demo")
    spans = r.timelines()
    now = time.time()
    assert now - 8 * 86400 < spans["cryo"]["t_first"] < now - 6.9 * 86400
    assert spans["fast"]["t_last"] > now - 120 and spans["fast"]["t_first"] < now - 2 * 3600 + 60
    assert spans["fast"]["count"] >= 100 * 2 * 3600 - 100


def test_cli_reports_errors(tmp_path, capsys):
    """Generating into an archive that already has later data fails with a message, not a traceback."""
    gen.generate(tmp_path, days=0.1, end=END, fast_hours=0.01)
    parser = argparse.ArgumentParser()
    gen.add_arguments(parser)
    assert gen.run(parser.parse_args([str(tmp_path), "--days", "0.1", "--end", str(END - 100)])) == 1
    assert "not after the last appended time" in capsys.readouterr().err
    assert (
        gen.run(
            parser.parse_args(
                [str(tmp_path), "--days", "0.1", "--end", str(END - 100), "--overwrite", "--fast-hours", "0.01"]
            )
        )
        == 0
    )
