"""autobahn's compiled WebSocket helpers, loaded without parsing C at import.

autobahn ships two compiled helpers (NVX): a UTF-8 validator and the XOR
masker every WebSocket client runs over each byte it sends (for a data
node, every reply). They are out-of-line cffi modules
(``_nvx_utf8validator``, ``_nvx_xormasker``), but autobahn reaches them
through ``autobahn.nvx._utf8validator`` and ``autobahn.nvx._xormasker``,
which double as their build scripts: importing them runs ``ffi.cdef``,
i.e. pycparser parsing C declarations, about 40 ms of CPU in every process
start (a tenth of a data node's imports).

:func:`install` registers, under those two names, small modules that give
autobahn the same classes built on the compiled modules' own ``ffi`` and
``lib`` (the code below follows autobahn's wrappers line for line). It
does so only for the autobahn versions it was checked against
(:data:`CHECKED`), only before autobahn is imported, and only when the
compiled modules are there and ``AUTOBAHN_USE_NVX`` does not turn NVX off;
otherwise autobahn imports its own wrappers as usual.
``tests/test_lean_start.py`` compares the results with autobahn's.
"""

from __future__ import annotations

import os
import sys
import types

#: autobahn versions whose ``autobahn/nvx/_utf8validator.py`` and
#: ``_xormasker.py`` the classes below follow.
CHECKED = ("26.10.", "26.11.")

UTF8 = "autobahn.nvx._utf8validator"
XOR = "autobahn.nvx._xormasker"


class Utf8Validator:
    """Incremental UTF-8 validator (autobahn's NVX wrapper, same methods)."""

    def __init__(self) -> None:
        from _nvx_utf8validator import ffi, lib

        self.ffi = ffi
        self.lib = lib
        self._vld = ffi.gc(lib.nvx_utf8vld_new(), lib.nvx_utf8vld_free)

    def reset(self) -> None:
        self.lib.nvx_utf8vld_reset(self._vld)

    def validate(self, ba: bytes) -> tuple[bool, bool, int, int]:
        res = self.lib.nvx_utf8vld_validate(self._vld, ba, len(ba))
        current_index = self.lib.nvx_utf8vld_get_current_index(self._vld)
        total_index = self.lib.nvx_utf8vld_get_total_index(self._vld)
        return (res >= 0, res == 0, current_index, total_index)


class XorMaskerNvx:
    """XOR masker on the compiled helper (autobahn's NVX wrapper, same methods)."""

    __slots__ = ("ffi", "lib", "_masker", "_mask_buffer")

    def __init__(self, mask: bytes, use_simd: bool = True) -> None:
        assert len(mask) == 4, "Mask must be exactly 4 bytes"
        from _nvx_xormasker import ffi, lib

        self.ffi = ffi
        self.lib = lib
        self._mask_buffer = ffi.new("uint8_t[4]", mask)
        self._masker = ffi.gc(lib.nvx_xormask_new(self._mask_buffer), lib.nvx_xormask_free)
        lib.nvx_xormask_set_impl(self._masker, 2 if use_simd else 1)

    def pointer(self) -> int:
        return self.lib.nvx_xormask_pointer(self._masker)

    def reset(self) -> None:
        self.lib.nvx_xormask_reset(self._masker)

    def process(self, data: bytes) -> bytes:
        n = len(data)
        buffer = self.ffi.new("uint8_t[]", n)
        self.ffi.memmove(buffer, data, n)
        self.lib.nvx_xormask_process(self._masker, buffer, n)
        return bytes(self.ffi.buffer(buffer, n))


class XorMaskerSimple(XorMaskerNvx):
    """Scalar masker (small payloads)."""

    def __init__(self, mask: bytes) -> None:
        super().__init__(mask, use_simd=False)


class XorMaskerShifted1(XorMaskerNvx):
    """SIMD masker (large payloads)."""

    def __init__(self, mask: bytes) -> None:
        super().__init__(mask, use_simd=True)


def create_xor_masker(mask: bytes, length: int | None = None) -> XorMaskerNvx:
    """The masker autobahn would pick: scalar below 128 bytes, SIMD above."""
    if length is None or length < 128:
        return XorMaskerSimple(mask)
    return XorMaskerShifted1(mask)


def _autobahn_version() -> str | None:
    """autobahn's version, read without importing autobahn (its package imports txaio)."""
    import importlib.util

    spec = importlib.util.find_spec("autobahn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "_version.py")
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("__version__"):
                    return line.split("=", 1)[1].strip().strip("\"'")
    except OSError:
        return None
    return None


def install() -> bool:
    """Register the two modules before autobahn imports its own; True if done."""
    if "autobahn" in sys.modules or UTF8 in sys.modules or XOR in sys.modules:
        return False
    if os.environ.get("AUTOBAHN_USE_NVX", "").strip().lower() in ("0", "no", "false"):
        return False
    version = _autobahn_version()
    if version is None or not version.startswith(CHECKED):
        return False
    try:
        import _nvx_utf8validator  # noqa: F401
        import _nvx_xormasker  # noqa: F401
    except ImportError:
        return False
    utf8 = types.ModuleType(UTF8, __doc__)
    utf8.Utf8Validator = Utf8Validator  # type: ignore[attr-defined]
    xor = types.ModuleType(XOR, __doc__)
    for cls in (XorMaskerNvx, XorMaskerSimple, XorMaskerShifted1):
        setattr(xor, cls.__name__, cls)
    xor.create_xor_masker = create_xor_masker  # type: ignore[attr-defined]
    sys.modules[UTF8] = utf8
    sys.modules[XOR] = xor
    return True
