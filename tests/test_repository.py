"""Checks on the repository itself: no secrets, README commands (deployment files: test_deployment)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sisock.site import credentials

REPO = Path(__file__).resolve().parent.parent


def tracked_files() -> list[Path]:
    """Files git tracks (or would track) in this checkout."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [REPO / line for line in out.splitlines() if (REPO / line).is_file()]


SECRET_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"""(?i)(secret|password|passwd)["']?\s*[:=]\s*["'][^"'\s{}$]{6,}["']"""),
]


def test_no_secret_in_repository(stack):
    """No generated secret, private key or literal password is in any tracked file."""
    creds = credentials.read(stack.home)
    assert creds, "the test router should have generated credentials"
    secrets = [c["secret"] for c in creds.values()]
    offenders = []
    for path in tracked_files():
        try:
            text = path.read_text(errors="ignore")
        except OSError:
            continue
        for s in secrets:
            if s in text:
                offenders.append(f"{path}: generated secret")
        for pat in SECRET_PATTERNS:
            for m in pat.finditer(text):
                if "not-the-secret" in m.group(0):  # the wrong-secret test's literal
                    continue
                offenders.append(f"{path}: {m.group(0)[:60]}")
    assert offenders == []


def test_secret_pattern_catches_examples():
    """The secret patterns do flag typical leaks (so the test above can fail)."""
    q = '"'
    leaks = [
        "WAMP_SECRET = " + q + "Q5#x4%HCmgTsS!Pj" + q,  # built in pieces so this
        q + "secret" + q + ": " + q + "abcdefgh123" + q,  # file does not match itself
        "-----BEGIN EC " + "PRIVATE KEY-----",
    ]
    for leak in leaks:
        assert any(p.search(leak) for p in SECRET_PATTERNS), leak


def test_readme_starts_with_two_commands():
    """The README's first lines give exactly the run and the test command, both in the Makefile."""
    lines = (REPO / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```")]
    commands = [line.split("#")[0].strip() for line in block if line.strip()]
    assert commands == ["make run", "make test"]
    assert lines.index("```sh") < 6
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci


@pytest.mark.integration  # starts every sub-command
def test_every_command_has_help():
    """`sisock <command> --help` works for every documented sub-command."""
    for argv in (
        ["router"],
        ["hub"],
        ["serve", "weather"],
        ["serve", "sensors"],
        ["serve", "hdf5"],
        ["serve", "modbus"],
        ["sim", "modbus"],
        ["generate"],
        ["demo"],
    ):
        out = subprocess.run([sys.executable, "-m", "sisock", *argv, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: sisock" in out.stdout, (argv, out.stderr)
