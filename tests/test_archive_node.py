"""The HDF5 archive data node and the notebook client, through the real router."""

from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import listed, wait_for
from sisock.archive.reader import ArchiveReader
from sisock.client import CallTimeout, ClientError, NodeUnknown, RemoteError, TooMuchDataError, connect
from sisock.cli.generate import generate

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A small generated archive ending now (half a day, all field types)."""
    d = tmp_path_factory.mktemp("archive")
    generate(d, days=0.5, fast_hours=0.5, burst_minutes=2)
    return d


@pytest.fixture(scope="module")
def archive_node(stack, archive):
    """An archive node (one-message limit 100 000 values) for this module."""
    p = stack.start("hdf5", "serve", "hdf5", "--name", "arch", "--archive", str(archive), "--max-samples", "100000")
    with connect() as c:
        wait_for(lambda: "arch" in listed(c), 20, "archive node never listed:\n" + p.log())
    yield "arch"
    p.stop()


def test_fields_and_types(archive_node, client):
    """get_fields lists every field with its type, units and timeline interval."""
    field, timeline = client.fields(archive_node, -3 * 3600, 0)
    assert field["outside_temp"]["type"] == "number" and field["outside_temp"]["units"] == "C"
    assert field["compressor_on"]["type"] == "bool"
    assert field["cryo_state"]["type"] == "string"
    assert field["az"]["timeline"] == "fast"
    assert timeline["cryo"]["interval"] == pytest.approx(1.0, rel=0.05)
    assert timeline["fast"]["interval"] == pytest.approx(0.01, rel=0.05)


def data_end(archive, timeline: str, field: str) -> float:
    """Time of the archive's last sample on ``timeline`` (the archive ends when generated).

    Parameters
    ----------
    archive : pathlib.Path
        Archive directory (read with a reader closed before returning).
    timeline : str
        Timeline of ``field``.
    field : str
        A field on ``timeline``.

    Returns
    -------
    float
        Time of the last sample (Unix seconds).
    """
    with ArchiveReader(archive) as r:
        return float(r.read([field], time.time() - 4 * 3600, 4e9)["timeline"][timeline]["t"][-1])


def test_dtypes_numbers_strings_bools(archive_node, archive, client):
    """Numbers arrive as float64, bools as bool, strings as str objects, all aligned."""
    end = data_end(archive, "cryo", "stage_temp") + 1  # anchored: the test may run much later
    r = client.get_data(archive_node, ["stage_temp", "compressor_on", "cryo_state"], end - 600, end)
    t = r.timelines["cryo"].t
    assert 590 <= len(t) <= 601
    assert r.data["stage_temp"].dtype == np.float64
    assert r.data["compressor_on"].dtype == bool
    assert set(r.data["cryo_state"]) <= {"cooling", "stable", "warming"}
    assert len(r.data["cryo_state"]) == len(t) == len(r.data["compressor_on"])
    assert end - 602 <= t[0] and t[-1] < end
    assert np.all(np.diff(t) > 0)
    frames = r.to_pandas()
    assert set(frames["cryo"].columns) == {"stage_temp", "compressor_on", "cryo_state"}
    assert len(frames["cryo"]) == len(t)
    assert str(frames["cryo"].index.tz) == "UTC"


def test_json_lists_match_binary(archive_node, stack):
    """A JSON (0.x style) consumer gets the same values as lists; NaN becomes null."""
    end = time.time() - 60
    with connect(serializer="json", binary=False) as cj, connect() as cb:
        lj = cj.call("consumer.arch.get_data", ["humidity"], end - 3600, end)
        rb = cb.get_data(archive_node, ["humidity"], end - 3600, end)
    assert isinstance(lj["data"]["humidity"], list)
    as_float = np.array([np.nan if v is None else v for v in lj["data"]["humidity"]])
    np.testing.assert_array_equal(as_float, rb.data["humidity"])
    np.testing.assert_array_equal(np.array(lj["timeline"]["weather"]["t"]), rb.timelines["weather"].t)


@pytest.mark.parametrize("method", ["mean", "min", "max", "first", "last", "minmax"])
def test_min_stride_through_router(archive_node, archive, client, method):
    """Downsampled replies equal the archive's own answer and respect the spacing rule."""
    end = data_end(archive, "fast", "az") - 30  # anchored to the data, not to the clock
    r = client.get_data(archive_node, ["az"], end - 1800, end, min_stride=10.0, method=method)
    with ArchiveReader(archive) as reader:
        local = reader.read(["az"], end - 1800, end, 10.0, method)
    np.testing.assert_array_equal(r.data["az"], local["data"]["az"])
    t = r.timelines["fast"].t
    assert 150 <= len(t) / (2 if method == "minmax" else 1) <= 181
    # minmax pairs are the documented exception: a bin the range cuts is stamped inside
    # the range, so only whole bins keep the stride between their pairs
    gaps = np.diff(t) if method != "minmax" else np.diff(t[::2])[1:-1]
    assert np.all(gaps >= 10.0 - 1e-9)
    start = end - 1800
    if method == "minmax":  # stamped inside the part of each bin within the range
        assert t[0] >= start and t[-1] < end
    else:  # stamped at the centre of a bin that overlaps the range (README, "Downsampling")
        k = (t - 5.0) / 10.0
        np.testing.assert_allclose(k, np.round(k), atol=1e-6)
        assert np.floor(start / 10) * 10 < t[0] and t[-1] < np.ceil(end / 10) * 10


def test_too_much_data_names_limit(archive_node, client):
    """A reply over the node's limit gets too_much_data naming the limit and a min_stride."""
    with pytest.raises(RemoteError) as err:
        client.call("consumer.arch.get_data", ["az", "el"], -1800, 0)
    assert err.value.uri == "org.simonsobservatory.error.too_much_data"
    assert "100000" in err.value.message.replace(",", "").replace(" ", "") or "100 000" in err.value.message
    assert "min_stride" in err.value.message
    r = client.get_data(archive_node, ["az"], -1800, 0, min_stride=1.0)  # still serving
    assert len(r.data["az"]) > 1000


def test_too_much_data_carries_min_stride_and_limit(archive_node, client):
    """The refusal carries ``min_stride`` and ``limit`` as the error's keyword arguments;
    the client raises TooMuchDataError with them, and the suggested stride fits."""
    with pytest.raises(TooMuchDataError) as err:
        client.get_data(archive_node, ["az", "el"], -1800, 0, stream=False)
    assert err.value.limit == 100000 and err.value.min_stride > 0
    r = client.get_data(archive_node, ["az", "el"], -1800, 0, min_stride=err.value.min_stride, stream=False)
    assert 0 < len(r.data["az"]) + len(r.data["el"]) <= 100000


def test_client_errors(archive_node, stack):
    """Unknown node, bad field type, unreachable router and wrong secret raise clearly."""
    with connect() as c:
        with pytest.raises(NodeUnknown, match="nope"):
            c.get_data("nope", ["x"], -10, 0)
        with pytest.raises(RemoteError, match="'field'"):
            c.get_data(archive_node, [1, 2], -10, 0)
        with pytest.raises(RemoteError, match="'method'"):
            c.get_data(archive_node, ["az"], -10, 0, min_stride=1, method="median")
    from conftest import free_port

    t0 = time.monotonic()
    with pytest.raises(ClientError) as err:
        connect(f"ws://127.0.0.1:{free_port()}/ws", timeout=60)
    assert time.monotonic() - t0 < 30, "unreachable router should fail fast, not time out"
    assert not isinstance(err.value, CallTimeout)
    with pytest.raises(ClientError, match="refused the credentials"):
        connect(user="consumer", secret="not-the-secret", timeout=5)


def test_to_xarray_and_lazy_pandas(archive_node, client):
    """to_xarray gives one time dimension per timeline; importing the client skips pandas."""
    import subprocess
    import sys

    r = client.get_data(archive_node, ["az", "outside_temp"], -1200, 0)
    ds = r.to_xarray()
    assert ds["az"].dims == ("t_fast",) and ds["outside_temp"].dims == ("t_weather",)
    np.testing.assert_array_equal(ds["t_fast"].values, r.timelines["fast"].t)
    out = subprocess.run(
        [sys.executable, "-c", "import sys, sisock.client; print('pandas' in sys.modules, 'xarray' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["False", "False"]
