"""What each install gives: the client without server libraries, a CLI that imports
only what the chosen command needs, servers found through entry points."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

from sisock.cli import main as cli, serve

HEAVY = ("h5py", "hdf5plugin", "pymodbus", "psutil", "twisted", "crossbar")

#: Runs code with the server-side libraries made unimportable (as after
#: ``pip install sisock`` without extras) and prints what got imported.
BLOCKED = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in {heavy!r}:
                raise ImportError(f"{{name}} is not installed")
    sys.meta_path.insert(0, Block())
    {code}
""")


def run_blocked(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where the server libraries cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", BLOCKED.format(heavy=HEAVY, code=code)], capture_output=True, text=True, timeout=120
    )


def test_client_needs_no_server_library():
    """``import sisock.client`` and building a result work without h5py, pymodbus,
    psutil, Twisted or Crossbar (what ``pip install sisock`` installs)."""
    out = run_blocked("import sisock.client, sisock.core.protocol; print('ok')")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["web", "--help"]])
def test_help_imports_no_server_library(argv):
    """``sisock --help`` (and the help of commands that need none) imports no h5py or pymodbus."""
    out = run_blocked(
        textwrap.dedent(f"""
        from sisock.cli.main import main
        try:
            main({argv!r})
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        print('ok')
    """)
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_servers_are_declared_as_entry_points():
    """Every built-in server is in the ``sisock.servers`` entry-point group, with the module
    ``sisock serve`` would import."""
    declared = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="sisock.servers")}
    assert declared == {name: module for name, (module, _) in serve.BUILTIN.items()}


def test_a_site_server_plugs_in_through_an_entry_point(monkeypatch, capsys):
    """A server declared by another package's entry point is listed by ``sisock serve``
    and gets its own arguments."""
    real = importlib.metadata.entry_points
    extra = importlib.metadata.EntryPoint("cryostat", "sisock.servers.weather", "sisock.servers")

    def entry_points(**kw):
        found = list(real(**kw))
        return found + [extra] if kw.get("group") == "sisock.servers" else found

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert "cryostat" in serve.servers()
    with pytest.raises(SystemExit):
        cli.main(["serve", "cryostat", "--help"])
    assert "--router-url" in capsys.readouterr().out
