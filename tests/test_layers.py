"""The layers of ``sisock/`` as the README's "Layout" section states them.

Every import in the package (module level and inside functions) is read
with :mod:`ast`; a module may import only from its own layer and the
layers listed for it. The pure layers import no reactor and no network
library, and h5py stays inside the archive's I/O module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent

#: layer -> the other sisock layers it may import.
ALLOWED = {
    "core": set(),
    "consumer": {"core"},
    "writes": {"core"},
    "archive": {"core"},
    "site": {"core"},
    "wamp": {"core", "consumer", "writes", "site"},
    "web": {"core", "consumer", "wamp", "site"},
    "hub": {"core", "wamp", "site", "cli"},  # cli: ``python -m sisock.hub`` only
    "servers": {"core", "archive", "writes", "site"},
}

#: Pure layers: no reactor, no network library, no HDF5.
PURE = {"core", "consumer", "writes"}
IO_LIBRARIES = {"twisted", "autobahn", "txaio", "h5py", "hdf5plugin", "pymodbus", "zope"}

#: The only exceptions to :data:`PURE`, each a function-level import:
#: the reply budget measures a message with the serializer autobahn will use.
PURE_EXCEPTIONS = {("sisock.core.budget", "autobahn")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in ("hub", "servers"):
        parts = ["sisock"] + parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(module imported, at module level?)`` for every import of ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                targets = [".".join(base + ([node.module] if node.module else []))]
            else:
                targets = [node.module or ""]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        out += [(t, id(node) in top) for t in targets]
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _files() -> list[Path]:
    return sorted(p for d in ("sisock", "hub", "servers") for p in (ROOT / d).rglob("*.py"))


def test_layers_import_only_what_the_layout_allows():
    """No module imports from a layer above it (``sisock.cli`` may import everything)."""
    wrong = []
    for path in _files():
        me = _module_name(path)
        layer = _layer(me)
        if layer not in ALLOWED:
            continue
        for target, _ in _imports(path):
            if not target.startswith("sisock."):
                continue
            other = _layer(target)
            if other != layer and other not in ALLOWED[layer]:
                wrong.append(f"{me} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_pure_layers_import_no_reactor_network_or_hdf5():
    """``sisock.core``, ``sisock.consumer`` and ``sisock.writes`` are plain Python/numpy."""
    wrong = []
    for path in _files():
        me = _module_name(path)
        if _layer(me) not in PURE:
            continue
        for target, _ in _imports(path):
            lib = target.split(".")[0]
            if lib in IO_LIBRARIES and (me, lib) not in PURE_EXCEPTIONS:
                wrong.append(f"{me} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_h5py_only_in_the_archive_io_module():
    """h5py (and its compression plugins) are imported by ``sisock.archive.h5io`` only."""
    users = {
        _module_name(p) for p in _files() for target, _ in _imports(p) if target.split(".")[0] in ("h5py", "hdf5plugin")
    }
    assert users == {"sisock.archive.h5io"}


def test_no_module_left_at_the_top_of_the_package():
    """``sisock/`` holds only subpackages plus the two public 0.x-era import paths."""
    top = sorted(p.name for p in (ROOT / "sisock").glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "_quiet.py", "base.py", "client.py"]


@pytest.mark.integration  # child Pythons: the client (asyncio) and the 0.x layer (Twisted) exclude each other
def test_public_import_paths_still_work():
    """``sisock.base`` (0.x API), ``sisock.client.connect`` and the archive classes import."""
    import subprocess

    for code in (
        "import sisock.base as b; assert b.DataNodeServer and b.uri and b.sisock_to_unix_time;"
        "assert b.BASE_URI and b.run",
        "import sisock.client as c; assert c.connect and c.Client and c.TooMuchDataError",
        "import sisock.archive as a; assert a.ArchiveReader and a.ArchiveWriter",
    ):
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
