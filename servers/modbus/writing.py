"""Operator writes of the Modbus node: declared points, encoding, one send.

Configuration
-------------
Writable points are declared in the node's TOML file, each naming a point
that a poll group already reads (a ``holding`` register of any numeric
type, or a ``coil``)::

    [writes]                    # optional, node-wide
    rate = 5.0                  # writes per second per operator (default 10)
    burst = 10                  # writes allowed at once (default 20)
    audit = "/var/lib/sisock/audit/modbus_sim.sqlite"   # default $SISOCK_HOME/audit/<name>.sqlite

    [[write]]
    point = "setpoint"          # a holding register or coil point of a [[group]]
    min = 280.0                 # engineering units (after scale and offset)
    max = 320.0
    max_step = 10.0             # largest change from the current value
    min_interval = 1.0          # seconds between two writes of this point
    readback = "setpoint"       # point read back to verify (default: the point itself)
    tolerance = 0.05            # accepted |read-back - requested|
    settle = 0.2                # seconds to wait before reading back
    # allowed = [290.0, 295.0]  # or: the only values accepted

The point's ``type``, ``word_order``, ``byte_order``, ``scale`` and
``offset`` say how a value is encoded: the raw value is
``(value - offset) / scale`` and must be a whole number for integer types
(nothing is rounded) and fit the register (nothing is clipped). Strings,
and bools on a bit of a register (a read-modify-write that another master
could interleave), cannot be declared writable. A bad declaration stops the
node at start with a message naming the key.

Sending
-------
A write goes out on the poller's connection, inside the same
``asyncio.Lock`` a poll holds for its whole cycle, so a write never falls
between the reads of a poll and never shares the wire with another
request. The pymodbus client's retries are set to 0 for the write (pymodbus
re-sends a timed-out request ``retries`` times, each with a new
transaction id), so it is sent exactly once. When the connection is down
the write is refused at once (``device_unavailable``); nothing is queued.
A request sent whose answer does not arrive is ``unverified``: the device
may have applied it.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sisock.archive.node import ArchiveNode
from sisock.writes import DeviceUnavailable, PointSpec, Readback, WriteUncertain

from .config import ConfigError, NodeConfig, PointConfig, _float, _int, _no_unknown, _str

__all__ = ["WriteConfig", "parse_writes", "point_spec", "encode_registers", "ModbusCore",
           "WRITABLE_KINDS"]

WRITABLE_KINDS = ("holding", "coil")

_RAW_RANGE = {
    "uint16": (0, 2**16 - 1), "int16": (-2**15, 2**15 - 1),
    "uint32": (0, 2**32 - 1), "int32": (-2**31, 2**31 - 1),
    "uint64": (0, 2**64 - 1), "int64": (-2**63, 2**63 - 1),
    "float32": (-float(np.finfo(np.float32).max), float(np.finfo(np.float32).max)),
    "float64": (-float(np.finfo(np.float64).max), float(np.finfo(np.float64).max)),
}
_NUMPY = {"uint16": ">u2", "int16": ">i2", "uint32": ">u4", "int32": ">i4", "float32": ">f4",
          "uint64": ">u8", "int64": ">i8", "float64": ">f8"}

_WRITE_KEYS = {"point", "min", "max", "allowed", "max_step", "min_interval", "readback",
               "tolerance", "settle", "description"}


@dataclass(frozen=True)
class WriteConfig:
    """The write declarations of a node.

    Attributes
    ----------
    points : dict of str to PointSpec
        Writable points by name.
    targets : dict of str to PointConfig
        The polled point each writable point writes.
    rate : float
        Writes per second per operator.
    burst : int
        Writes allowed at once.
    audit : pathlib.Path or None
        The audit database (None: the default under ``SISOCK_HOME``).
    """

    points: dict
    targets: dict
    rate: float = 10.0
    burst: int = 20
    audit: Path | None = None


def point_spec(p: PointConfig, w: dict[str, Any], where: str,
               points: dict[str, PointConfig]) -> PointSpec:
    """Check one ``[[write]]`` table against its point; return its :class:`PointSpec`."""
    if p.kind not in WRITABLE_KINDS:
        raise ConfigError(f"{where}: point {p.name!r} is a {p.kind}, which Modbus cannot "
                          f"write; writable kinds: {', '.join(WRITABLE_KINDS)}")
    if p.type == "string":
        raise ConfigError(f"{where}: point {p.name!r} is a string; strings are not writable")
    if p.bit is not None:
        raise ConfigError(f"{where}: point {p.name!r} is bit {p.bit} of a register; writing "
                          "one bit needs a read-modify-write of the whole register, which is "
                          "not offered: declare the whole register (uint16) instead")
    is_bool = p.type == "bool"
    integer = not is_bool and p.type in _RAW_RANGE and not p.type.startswith("float")
    if is_bool:
        ptype = "bool"
    elif integer and p.scale == 1.0 and p.offset == 0.0:
        ptype = "integer"
    else:
        ptype = "number"
    limits: dict[str, float | None] = {}
    for key in ("min", "max", "max_step", "min_interval", "tolerance", "settle"):
        if key in w:
            if is_bool and key in ("min", "max", "max_step", "tolerance"):
                raise ConfigError(f"{where}: {key!r} does not apply to the bool point {p.name!r}")
            v = _float(w, key, where, 0.0)
            if not math.isfinite(v):
                raise ConfigError(f"{where}: {key} must be a finite number, got {v}")
            limits[key] = v
        else:
            limits[key] = None
    for key in ("max_step", "min_interval", "tolerance", "settle"):
        if limits[key] is not None and limits[key] < 0:
            raise ConfigError(f"{where}: {key} must be >= 0, got {limits[key]}")
    if limits["max_step"] == 0:
        raise ConfigError(f"{where}: max_step must be > 0 (omit it for no step limit)")
    if limits["settle"] is not None and limits["settle"] > 60:
        raise ConfigError(f"{where}: settle must be at most 60 seconds, got {limits['settle']}")
    lo, hi = limits["min"], limits["max"]
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"{where}: min ({lo}) is above max ({hi})")
    allowed = None
    if "allowed" in w:
        raw_allowed = w["allowed"]
        if not isinstance(raw_allowed, list) or not raw_allowed:
            raise ConfigError(f"{where}: allowed must be a non-empty array of values")
        for v in raw_allowed:
            ok = isinstance(v, bool) if is_bool else (
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
            if not ok:
                raise ConfigError(f"{where}: allowed value {v!r} is not a "
                                  f"{'bool' if is_bool else 'finite number'}")
        allowed = tuple(raw_allowed)
    rb_name = _str(w, "readback", where) or p.name
    if rb_name not in points:
        raise ConfigError(f"{where}: readback {rb_name!r} is not a point of this node")
    if points[rb_name].type == "string":
        raise ConfigError(f"{where}: readback {rb_name!r} is a string point")
    readback = Readback(rb_name, limits["tolerance"] or 0.0, limits["settle"] or 0.0)
    raw_min = raw_max = None
    if not is_bool:
        raw_min, raw_max = _RAW_RANGE[p.type]
        if p.scale == 0:
            raise ConfigError(f"{where}: point {p.name!r} has scale 0 and cannot be written")
        ends = sorted(((raw_min * p.scale + p.offset), (raw_max * p.scale + p.offset)))
        for key, v in (("min", lo), ("max", hi)):
            if v is not None and not ends[0] <= v <= ends[1]:
                raise ConfigError(f"{where}: {key} = {v} does not fit point {p.name!r} "
                                  f"({p.type}, scale {p.scale:g}, offset {p.offset:g}: "
                                  f"{ends[0]:g}..{ends[1]:g})")
    description = _str(w, "description", where) or p.description
    return PointSpec(name=p.name, type=ptype, units=p.units, description=description,
                     min=lo, max=hi, allowed=allowed, max_step=limits["max_step"],
                     min_interval=limits["min_interval"], readback=readback,
                     scale=p.scale, offset=p.offset, raw_min=raw_min, raw_max=raw_max,
                     raw_integer=integer)


def parse_writes(data: dict[str, Any], config: NodeConfig) -> WriteConfig | None:
    """Check the ``[writes]`` table and the ``[[write]]`` tables of a parsed TOML file.

    Returns
    -------
    WriteConfig or None
        None when the file declares no writable point.

    Raises
    ------
    ConfigError
        Naming the ``[[write]]`` entry and the key.
    """
    raw = data.get("write")
    node = data.get("writes", {})
    if raw is None and not node:
        return None
    if not isinstance(node, dict):
        raise ConfigError("writes must be a table ([writes])")
    _no_unknown(node, {"rate", "burst", "audit"}, "[writes]")
    rate = _float(node, "rate", "[writes]", 10.0)
    if not 0 < rate < math.inf:
        raise ConfigError(f"[writes]: rate must be > 0 writes per second, got {rate}")
    burst = _int(node, "burst", "[writes]", 20, 1, 10_000)
    audit = _str(node, "audit", "[writes]")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ConfigError("write must be an array of tables ([[write]])")
    points = {p.name: p for g in config.groups for p in g.points}
    specs: dict[str, PointSpec] = {}
    targets: dict[str, PointConfig] = {}
    for i, w in enumerate(raw):
        where = f"write #{i + 1}"
        if not isinstance(w, dict):
            raise ConfigError(f"{where}: must be a table")
        name = _str(w, "point", where, required=True)
        where = f"write {name!r}"
        _no_unknown(w, _WRITE_KEYS, where)
        if name not in points:
            raise ConfigError(f"{where}: point {name!r} is not a point of any [[group]] "
                              "(a writable point must also be read)")
        if name in specs:
            raise ConfigError(f"{where}: point {name!r} is declared writable twice")
        specs[name] = point_spec(points[name], w, where, points)
        targets[name] = points[name]
    return WriteConfig(specs, targets, rate, burst, Path(audit).expanduser() if audit else None)


def encode_registers(p: PointConfig, raw: float) -> list[int]:
    """Registers holding ``raw`` as point ``p`` decodes them (word and byte order applied)."""
    dtype = _NUMPY[p.type]
    value = float(raw) if p.type.startswith("float") else int(raw)
    regs = np.frombuffer(np.array([value], dtype=dtype).tobytes(), dtype=">u2")
    out = [int(r) for r in regs]
    if p.word_order == "little":
        out.reverse()
    if p.byte_order == "little":
        out = [((r & 0xFF) << 8) | (r >> 8) for r in out]
    return out


class ModbusCore(ArchiveNode):
    """The Modbus node's core: reads from the archive, writes through the poller.

    Parameters
    ----------
    directory, name, description
        As for :class:`~sisock.archive.node.ArchiveNode`.
    config : NodeConfig
        The node configuration.
    writes : WriteConfig
        Its write declarations.

    Notes
    -----
    :meth:`attach` gives it the running poller and the event loop; until
    then every write is refused as ``device_unavailable``. The methods of
    the write side run in a worker thread and hop to the loop.
    """

    #: Seconds a write waits for a poll in progress to finish.
    LOCK_WAIT = 5.0

    def __init__(self, directory: Any, name: str, description: str, config: NodeConfig,
                 writes: WriteConfig) -> None:
        super().__init__(directory, name, description)
        self.config = config
        self.writes = writes
        self.write_rate = writes.rate
        self.write_burst = writes.burst
        if writes.audit is not None:
            self.audit_path = writes.audit
        self._points = {p.name: (g.name, p) for g in config.groups for p in g.points}
        self._poller: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Write requests sent to the device (for tests and statistics).
        self.sent = 0

    def attach(self, poller: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``poller``'s connections on ``loop`` (call once polling runs)."""
        self._poller = poller
        self._loop = loop

    # -- the write side ------------------------------------------------------
    def write_points(self) -> dict[str, PointSpec]:
        """The declared writable points."""
        return dict(self.writes.points)

    def _run(self, coro_fn, *args) -> Any:
        if self._poller is None or self._loop is None:
            raise DeviceUnavailable(f"node {self.name!r} is not polling its device yet")
        timeout = self.LOCK_WAIT + 2 * self.config.device.timeout + 5.0
        fut = asyncio.run_coroutine_threadsafe(coro_fn(*args), self._loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def _connection(self, name: str):
        group, point = self._points[name]
        conn = self._poller.connection(group)
        if conn is None or not conn.client.connected:
            dev = self.config.device
            raise DeviceUnavailable(f"device {dev.host}:{dev.port} is not connected (the node "
                                    "reconnects by itself); nothing was sent or queued",
                                    point=name)
        return conn, point

    async def _locked(self, conn) -> None:
        try:
            await asyncio.wait_for(conn.lock.acquire(), self.LOCK_WAIT)
        except asyncio.TimeoutError:
            raise DeviceUnavailable(f"the device connection stayed busy for {self.LOCK_WAIT:g} s; "
                                    "nothing was sent") from None

    def read_point(self, name: str) -> Any:
        """The point's current value, read from the device now."""
        if name not in self._points:
            raise DeviceUnavailable(f"node {self.name!r} has no point {name!r} to read")
        try:
            return self._run(self._read, name)
        except TimeoutError:
            raise DeviceUnavailable(f"reading {name!r} took too long; nothing was written",
                                    point=name) from None

    async def _read(self, name: str) -> Any:
        from .decode import Request, decode_point
        from .poller import _DeviceError

        conn, p = self._connection(name)
        await self._locked(conn)
        try:
            if not conn.client.connected:
                raise DeviceUnavailable("device connection lost; nothing was sent", point=name)
            try:
                raw = await conn.read(Request(p.kind, p.address, p.width, (p,)))
            except _DeviceError as exc:
                raise DeviceUnavailable(f"the device refused to read {name!r}: {exc}",
                                        point=name) from None
            except Exception as exc:  # timeout, connection lost
                raise DeviceUnavailable(f"cannot read {name!r} from the device: "
                                        f"{type(exc).__name__}: {exc}", point=name) from None
        finally:
            conn.lock.release()
        return decode_point(p, list(raw)[: p.width])

    def write_point(self, name: str, value: Any) -> None:
        """Send one write of ``value`` (already checked) to the device, once."""
        try:
            return self._run(self._write, name, value)
        except TimeoutError:
            raise WriteUncertain("no outcome from the device connection in time") from None

    async def _write(self, name: str, value: Any) -> None:
        conn, p = self._connection(name)
        dev = self.config.device.device_id
        await self._locked(conn)
        try:
            if not conn.client.connected:
                raise DeviceUnavailable("device connection lost; nothing was sent", point=name)
            client = conn.client
            manager = client.ctx  # the async client's TransactionManager
            saved = manager.retries
            manager.retries = 0  # sent once: pymodbus would re-send a timed-out request
            try:
                self.sent += 1
                if p.kind == "coil":
                    rr = await client.write_coil(p.address, bool(value), device_id=dev)
                else:
                    raw = (float(value) - p.offset) / p.scale
                    if not p.type.startswith("float"):
                        raw = round(raw)
                    regs = encode_registers(p, raw)
                    if len(regs) == 1:
                        rr = await client.write_register(p.address, regs[0], device_id=dev)
                    else:
                        rr = await client.write_registers(p.address, regs, device_id=dev)
            except Exception as exc:  # sent; the answer is missing
                raise WriteUncertain(f"{type(exc).__name__}: {exc}".strip()) from None
            finally:
                manager.retries = saved
            if rr.isError():
                code = getattr(rr, "exception_code", "?")
                raise DeviceUnavailable(f"the device refused the write of {name!r} "
                                        f"(Modbus exception code {code}); nothing changed",
                                        point=name)
        finally:
            conn.lock.release()
