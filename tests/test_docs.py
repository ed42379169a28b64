"""The site documentation (docs/) is linked, its commands parse, its example node runs."""

from __future__ import annotations

import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import listed, wait_for
from sisock.cli.main import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted((REPO / "docs").glob("*.md"))


def blocks(path: Path, lang: str) -> list[str]:
    """The fenced code blocks of one language in a Markdown file."""
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(), re.M | re.S)


def test_every_doc_is_linked_and_links_resolve():
    """README links every page of docs/; every relative link in them points at a file."""
    readme = (REPO / "README.md").read_text()
    assert DOCS
    for doc in DOCS:
        assert f"docs/{doc.name}" in readme, f"README does not link docs/{doc.name}"
    for page in [REPO / "README.md", *DOCS]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_documented_sisock_commands_parse():
    """Every `sisock ...` line of a shell block in docs/ parses with the real command line."""
    seen = 0
    for doc in DOCS:
        for block in blocks(doc, "sh"):
            for line in block.splitlines():
                line = line.split(" #")[0].strip().rstrip("&").strip()
                if not line.startswith("sisock "):
                    continue
                argv = shlex.split(line)[1:]
                try:
                    build_parser().parse_args(argv)
                except SystemExit:
                    pytest.fail(f"{doc.name}: `{line}` does not parse")
                seen += 1
    assert seen >= 10


@pytest.mark.integration  # runs `sisock router` in child processes
def test_router_print_config_with_proxies(tmp_path):
    """`sisock router --proxies 2 --print-config` (as documented) renders two proxy workers."""
    import json
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
    env["SISOCK_HOME"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "sisock", "router", "--proxies", "2", "--print-config"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    config = json.loads(Path(out.stdout.strip()).read_text())
    assert [w["type"] for w in config["workers"]] == ["router", "proxy", "proxy"]
    bad = subprocess.run(
        [sys.executable, "-m", "sisock", "router", "--proxies", "99", "--print-config"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode != 0 and "--proxies must be between 0 and 64" in bad.stderr


@pytest.mark.integration
def test_writing_a_node_example_runs(stack, procs, client, tmp_path):
    """The complete node of docs/writing-a-node.md serves a CSV file through the real router."""
    doc = REPO / "docs" / "writing-a-node.md"
    (source,) = [b for b in blocks(doc, "python") if b.startswith('"""thermo.py')]
    assert 25 <= len(source.splitlines()) <= 45
    script = tmp_path / "thermo.py"
    script.write_text(source)
    now = time.time()
    t = np.arange(now - 7200, now - 10, 10.0)
    v = 4.0 + 0.01 * np.sin(t / 600)
    np.savetxt(tmp_path / "plate.csv", np.column_stack([t, v]), delimiter=",", fmt="%.6f")
    node = procs("thermo", sys.executable, str(script), str(tmp_path / "plate.csv"), module="")
    wait_for(lambda: "thermo" in listed(client), 30, "example node never listed:\n" + node.log())
    field, timeline = client.fields("thermo", -7200, 0)
    assert field["temperature"]["units"] == "K" and field["temperature"]["timeline"] == "plate"
    r = client.get_data("thermo", ["temperature"], t[0] - 1, t[-1] + 1)
    np.testing.assert_allclose(r.data["temperature"], v, atol=1e-6)
    usage = [b for b in blocks(doc, "python") if "connect()" in b]
    assert usage, "the doc shows how to read the node"
    exec(compile(usage[0], "writing-a-node.md", "exec"), {})  # the documented reader runs
    d = client.get_data("thermo", ["temperature"], -3600, 0, min_stride=60)
    assert 55 <= len(d.data["temperature"]) <= 61
