"""Request planning and decoding of raw Modbus data (pure numpy, no I/O).

Planning
--------
:func:`plan_requests` turns the points of one poll group into as few reads
as possible. Points are sorted by kind and address, and a read is extended
greedily to the next point while

- the read stays within the protocol limit (125 registers for holding /
  input registers, 2000 bits for coils / discrete inputs), and
- the run of addresses that no point uses between them is at most
  ``max_gap`` registers (``16 * max_gap`` bits).

Greedy extension from the lowest address gives the minimum number of reads
for these two constraints. Bridging a gap costs 2 bytes per register in the
response, while a separate read costs a whole round trip (hundreds of
microseconds on a LAN, milliseconds through gateways), so the default of
16 registers (32 bytes) is a clear win. Some devices answer "illegal data
address" for addresses they do not define; set ``max_gap = 0`` for those.

Decoding
--------
Registers arrive as unsigned 16-bit integers. Each register is big-endian
on the wire (high byte first); ``byte_order = "little"`` swaps the two bytes
of each register, ``word_order = "little"`` puts the least significant
register first in multi-register values. Decoding reorders the registers
(fancy indexing), then reinterprets the bytes with ``np.frombuffer`` in one
call per (type, word order, byte order) within each request.

- Numeric types (``uint16`` ... ``float64``) are reported as float64,
  ``value = scale * raw + offset`` (so NaN can mark a gap; integers up to
  2**53 are exact).
- ``bool`` on coils / discrete inputs is the bit; on registers it is bit
  ``bit`` (0 = least significant) of the register.
- ``string`` is ASCII, 2 characters per register (first character in the
  high byte unless ``byte_order = "little"``), cut at the first NUL and
  stripped of surrounding spaces; bytes that are not ASCII become U+FFFD.

Every decoded value is a 1-element numpy array (one sample per poll).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import (
    BIT_KINDS,
    MAX_BITS,
    MAX_REGISTERS,
    GroupConfig,
    PointConfig,
)

__all__ = [
    "Request",
    "RequestDecoder",
    "GroupDecoder",
    "plan_requests",
    "decode_point",
    "DEFAULT_MAX_GAP",
    "FUNCTION_CODES",
]

#: Default largest bridged run of unused registers (see module docstring).
DEFAULT_MAX_GAP = 16

#: Modbus read function code of each point kind.
FUNCTION_CODES = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}

#: Big-endian numpy dtype of each register data type (reads and writes).
NUMPY_TYPE = {
    "uint16": ">u2",
    "int16": ">i2",
    "uint32": ">u4",
    "int32": ">i4",
    "float32": ">f4",
    "uint64": ">u8",
    "int64": ">i8",
    "float64": ">f8",
}


@dataclass(frozen=True)
class Request:
    """One read of a contiguous range.

    Attributes
    ----------
    kind : str
        ``holding``, ``input``, ``coil`` or ``discrete``.
    address : int
        First address read.
    count : int
        Number of registers (or bits) read.
    points : tuple of PointConfig
        Points decoded from this read, by address.
    """

    kind: str
    address: int
    count: int
    points: tuple[PointConfig, ...]

    @property
    def function_code(self) -> int:
        """Modbus function code of this read (1, 2, 3 or 4)."""
        return FUNCTION_CODES[self.kind]


def plan_requests(group: GroupConfig, max_gap: int = DEFAULT_MAX_GAP) -> list[Request]:
    """Merge the points of ``group`` into as few reads as possible.

    Parameters
    ----------
    group : GroupConfig
        The poll group.
    max_gap : int
        Largest run of unused registers bridged by one read (bits:
        ``16 * max_gap``); 0 never reads an unused address.

    Returns
    -------
    list of Request
        Sorted by kind (in :data:`FUNCTION_CODES` order) and address.
    """
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    out: list[Request] = []
    for kind in FUNCTION_CODES:
        pts = sorted((p for p in group.points if p.kind == kind), key=lambda p: (p.address, p.width))
        if not pts:
            continue
        limit, gap = (MAX_BITS, 16 * max_gap) if kind in BIT_KINDS else (MAX_REGISTERS, max_gap)
        start = pts[0].address
        end = start + pts[0].width  # exclusive
        members = [pts[0]]
        for p in pts[1:]:
            p_end = p.address + p.width
            new_end = max(end, p_end)
            if p.address - end <= gap and new_end - start <= limit:
                end = new_end
                members.append(p)
                continue
            out.append(Request(kind, start, end - start, tuple(members)))
            start, end, members = p.address, p_end, [p]
        out.append(Request(kind, start, end - start, tuple(members)))
    return out


class RequestDecoder:
    """Decode every point of one :class:`Request` from its raw response.

    Parameters
    ----------
    request : Request
        The planned read.

    Notes
    -----
    Index arrays are built once here so that :meth:`decode` does one
    fancy-index and one ``np.frombuffer`` per (type, word order, byte
    order) in the request, whatever the number of points.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self._bits = request.kind in BIT_KINDS
        # numeric batches: (names, index matrix, numpy dtype, swap bytes, scale, offset)
        batches: dict[tuple[str, str, str], list[PointConfig]] = {}
        self._flags: list[tuple[list[str], np.ndarray, np.ndarray]] = []
        self._strings: list[tuple[str, np.ndarray, bool]] = []
        self._numeric: list[tuple[list[str], np.ndarray, str, bool, np.ndarray, np.ndarray]] = []
        if self._bits:
            names = [p.name for p in request.points]
            idx = np.array([p.address - request.address for p in request.points])
            self._bit_batch = (names, idx)
            return
        flag_pts: list[PointConfig] = []
        for p in request.points:
            rel = p.address - request.address
            if p.type == "bool":
                flag_pts.append(p)
            elif p.type == "string":
                self._strings.append((p.name, np.arange(rel, rel + p.length), p.byte_order == "little"))
            else:
                batches.setdefault((p.type, p.word_order, p.byte_order), []).append(p)
        if flag_pts:
            self._flags.append(
                (
                    [p.name for p in flag_pts],
                    np.array([p.address - request.address for p in flag_pts]),
                    np.array([p.bit for p in flag_pts], dtype=np.uint16),
                )
            )
        for (typ, word, byte), pts in batches.items():
            width = pts[0].width
            cols = np.arange(width)
            if word == "little":
                cols = cols[::-1]
            idx = np.array([p.address - request.address for p in pts])[:, None] + cols
            self._numeric.append(
                (
                    [p.name for p in pts],
                    idx,
                    NUMPY_TYPE[typ],
                    byte == "little",
                    np.array([p.scale for p in pts]),
                    np.array([p.offset for p in pts]),
                )
            )

    def decode(self, raw: Sequence[int] | Sequence[bool] | np.ndarray) -> dict[str, np.ndarray]:
        """Decode a response.

        Parameters
        ----------
        raw : sequence
            ``response.registers`` (register kinds) or ``response.bits``
            (bit kinds; may be padded past ``count``).

        Returns
        -------
        dict of str to numpy.ndarray
            Point name -> 1-element array (float64, bool or str).
        """
        out: dict[str, np.ndarray] = {}
        if self._bits:
            names, idx = self._bit_batch
            bits = np.asarray(raw[: self.request.count], dtype=bool)
            out.update(zip(names, bits[idx].reshape(-1, 1)))
            return out
        regs = np.asarray(raw, dtype=np.uint16)
        if regs.shape != (self.request.count,):
            raise ValueError(
                f"expected {self.request.count} registers from {self.request.kind} "
                f"{self.request.address}, got {regs.shape[0] if regs.ndim else 0}"
            )
        for names, idx, dtype, swap, scale, offset in self._numeric:
            sub = regs[idx]
            if swap:
                sub = sub.byteswap()
            vals = np.frombuffer(sub.astype(">u2").tobytes(), dtype=dtype)
            vals = vals.astype(np.float64) * scale + offset
            out.update(zip(names, vals.reshape(-1, 1)))
        for names, idx, bits in self._flags:
            vals = ((regs[idx] >> bits) & 1).astype(bool)
            out.update(zip(names, vals.reshape(-1, 1)))
        for name, idx, swap in self._strings:
            sub = regs[idx]
            if swap:
                sub = sub.byteswap()
            out[name] = np.array([_text(sub.astype(">u2").tobytes())])
        return out


def _text(b: bytes) -> str:
    """ASCII text of a string register block: cut at NUL, strip spaces."""
    return b.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip(" ")


class GroupDecoder:
    """Plan, decode and derive every field of one poll group.

    Parameters
    ----------
    group : GroupConfig
        The poll group.
    max_gap : int
        Passed to :func:`plan_requests`.

    Attributes
    ----------
    requests : list of Request
        The reads to issue on each poll, in order.
    """

    def __init__(self, group: GroupConfig, max_gap: int = DEFAULT_MAX_GAP) -> None:
        self.group = group
        self.requests = plan_requests(group, max_gap)
        self._decoders = [RequestDecoder(r) for r in self.requests]
        self._bool_names = {p.name for p in group.points if p.type == "bool"}
        self._kinds = {p.name: p.field_type for p in group.points}

    def decode(self, raws: Sequence[Sequence[int] | Sequence[bool]]) -> dict[str, np.ndarray]:
        """Decode one poll: one raw response per request, in order.

        Returns
        -------
        dict of str to numpy.ndarray
            Every point, every derived point and ``<group>_ok`` (True),
            each a 1-element array.
        """
        if len(raws) != len(self._decoders):
            raise ValueError(f"expected {len(self._decoders)} responses, got {len(raws)}")
        values: dict[str, np.ndarray] = {}
        for dec, raw in zip(self._decoders, raws):
            values.update(dec.decode(raw))
        self._derive(values)
        values[self.group.ok_field] = np.ones(1, dtype=bool)
        return values

    def gap(self) -> dict[str, np.ndarray]:
        """Values of a failed poll (a gap).

        Numeric and derived points are NaN, bool points False, strings ``""``
        and ``<group>_ok`` False; each a fresh 1-element array.
        """
        values: dict[str, np.ndarray] = {}
        for p in self.group.points:
            kind = self._kinds[p.name]
            if kind == "number":
                values[p.name] = np.full(1, np.nan)
            elif kind == "bool":
                values[p.name] = np.zeros(1, dtype=bool)
            else:
                values[p.name] = np.array([""])
        for d in self.group.derived:
            values[d.name] = np.full(1, np.nan)
        values[self.group.ok_field] = np.zeros(1, dtype=bool)
        return values

    def _derive(self, values: dict[str, np.ndarray]) -> None:
        for d in self.group.derived:
            env = {
                n: values[n].astype(np.float64) if n in self._bool_names else values[n] for n in d.expression.references
            }
            values[d.name] = d.expression(env).reshape(1)


def decode_point(point: PointConfig, raw: Sequence[int] | Sequence[bool]):
    """Decode a single point from the registers (or bits) it occupies.

    Convenience for tests and tools; the poller uses :class:`RequestDecoder`.

    Parameters
    ----------
    point : PointConfig
        The point.
    raw : sequence
        Exactly ``point.width`` registers (or bits), starting at
        ``point.address``.

    Returns
    -------
    float, bool or str
    """
    req = Request(point.kind, point.address, point.width, (point,))
    return RequestDecoder(req).decode(raw)[point.name][0].item()
