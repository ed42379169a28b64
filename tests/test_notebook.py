"""The quickstart notebook runs in a real Jupyter kernel against the test router."""

from __future__ import annotations


import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO, listed, wait_for
from sisock.cli.generate import generate

pytestmark = pytest.mark.timeout(240)


def test_quickstart_notebook(stack, procs, client, tmp_path):
    """Every cell runs; the notebook lists the node, fetches a day and draws a PNG plot."""
    d = tmp_path / "archive"
    generate(d, days=1.2, fast_hours=0.1, burst_minutes=1)
    procs("hdf5", "serve", "hdf5", "--name", "archive", "--archive", str(d))
    wait_for(lambda: "archive" in listed(client), 20, "archive node never listed")
    nb = nbformat.read(REPO / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "stream"
    )
    assert "'archive'" in text
    counts = [line for line in text.splitlines() if "hourly means" in line][0].split()
    assert int(counts[0]) > 8000 and 24 <= int(counts[2]) <= 25
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
