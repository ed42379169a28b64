"""What ``sisock serve`` imports before its first answer (sisock.cli.lean).

Each check runs in a fresh interpreter, where nothing is imported yet.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def run(code: str) -> str:
    """Run ``code`` in a fresh interpreter; return its standard output."""
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    ).stdout.strip()


IMPORTS = """
import sys
from sisock.cli import lean
lean.prepare({url!r})
from twisted.internet import reactor
import sisock.wamp.host, sisock.wamp.service
print(sorted(m for m in ("OpenSSL", "cryptography.x509", "service_identity", "pycparser",
                         "cffi.cparser", "importlib.metadata", "click", "argon2", "passlib")
             if sys.modules.get(m)))
"""


def test_plain_router_url_imports_no_tls_and_no_c_parser():
    """With a ws:// router the node's libraries load without pyOpenSSL, X.509 or pycparser."""
    assert run(IMPORTS.format(url="ws://127.0.0.1:8080/ws")) == "[]"


def test_tls_router_url_keeps_tls():
    """With a wss:// router, TLS support is there as usual."""
    out = run(IMPORTS.format(url="wss://127.0.0.1:8080/ws") + "\nimport OpenSSL\nprint('ok')")
    assert "OpenSSL" in out and out.endswith("ok")


NVX = """
import sys
if {shim}:
    from sisock.wamp import nvx
    assert nvx.install()
from autobahn.websocket.utf8validator import Utf8Validator
from autobahn.websocket.xormasker import create_xor_masker
texts = [b"", "héllo wörld €".encode(), b"\\xff", b"abc\\xe2\\x82", "𝄞".encode() * 50,
         b"\\xed\\xa0\\x80", bytes(range(128))]
out = []
for t in texts:
    v = Utf8Validator()
    out.append(v.validate(t))
    out.append(v.validate(b"\\xac"))  # continues a split sequence, or not
for n in (1, 5, 127, 128, 1000, 100003):
    m = create_xor_masker(b"\\x01\\x7f\\xa5\\xff", n)
    data = bytes(i % 251 for i in range(n))
    out.append((m.process(data[: n // 2]) + m.process(data[n // 2:])).hex()[-64:])
    out.append(m.pointer())
print(repr(out), "autobahn.nvx._utf8validator" in sys.modules)
"""


def test_nvx_without_c_parser_matches_autobahn():
    """The compiled helpers loaded without parsing C validate and mask as autobahn's own."""
    mine = run(NVX.format(shim=True))
    theirs = run(NVX.format(shim=False))
    assert mine == theirs
    assert mine.endswith("True")


def test_server_of_another_package_keeps_optional_libraries():
    """A server from another package may use click, argon2 or passlib: they stay importable."""
    code = IMPORTS.replace("lean.prepare({url!r})", "lean.prepare({url!r}, builtin=False)")
    out = run(code.format(url="ws://127.0.0.1:8080/ws") + "\nimport click, argon2, passlib\nprint('ok')")
    assert out.endswith("ok")


LAZY_H5PY = """
import sys
from sisock.archive.core import ArchiveCore
core = ArchiveCore({d!r}, "x")
core.warm()
r = core.get_data(["x"], {start!r}, {end!r}, {stride!r})
print(len(r["data"]["x"]), "h5py" in sys.modules)
"""


def test_archive_answered_from_its_index_needs_no_h5py(tmp_path):
    """A long downsampled query that the archive index answers imports no h5py (a faster restart)."""
    import numpy as np

    from sisock.archive.writer import ArchiveWriter
    from sisock.core.protocol import FieldSpec

    t0 = 1_700_006_400.0  # a midnight
    with ArchiveWriter(tmp_path, rotate_seconds=3600, flush_interval=1e9) as w:
        w.define_timeline("tl", {"x": FieldSpec("number", "K", "x")})
        for day in range(4):
            t = t0 + day * 86400 + np.arange(0, 86400, 10.0)
            w.append("tl", t, {"x": np.sin(t / 5000)})
            w.flush()
    end = t0 + 3 * 86400  # whole closed files only
    n, imported = run(LAZY_H5PY.format(d=str(tmp_path), start=t0, end=end, stride=16384.0)).split()
    assert int(n) > 10 and imported == "False"
