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
from typing import Any

import numpy as np

from sisock.archive.core import ArchiveCore
from sisock.writes.rules import DeviceUnavailable, PointSpec, WriteUncertain

from .config import WRITABLE_KINDS, WriteConfig, parse_writes, point_spec
from .config import NodeConfig, PointConfig
from .decode import NUMPY_TYPE

__all__ = ["WriteConfig", "parse_writes", "point_spec", "encode_registers", "ModbusCore", "WRITABLE_KINDS"]


def encode_registers(p: PointConfig, raw: float) -> list[int]:
    """Registers holding ``raw`` as point ``p`` decodes them (word and byte order applied)."""
    dtype = NUMPY_TYPE[p.type]
    value = float(raw) if p.type.startswith("float") else int(raw)
    regs = np.frombuffer(np.array([value], dtype=dtype).tobytes(), dtype=">u2")
    out = [int(r) for r in regs]
    if p.word_order == "little":
        out.reverse()
    if p.byte_order == "little":
        out = [((r & 0xFF) << 8) | (r >> 8) for r in out]
    return out


class ModbusCore(ArchiveCore):
    """The Modbus node's core: reads from the archive, writes through the poller.

    Parameters
    ----------
    directory, name, description
        As for :class:`~sisock.archive.core.ArchiveCore`.
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

    def __init__(self, directory: Any, name: str, description: str, config: NodeConfig, writes: WriteConfig) -> None:
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
            raise DeviceUnavailable(
                f"device {dev.host}:{dev.port} is not connected (the node "
                "reconnects by itself); nothing was sent or queued",
                point=name,
            )
        return conn, point

    async def _locked(self, conn) -> None:
        try:
            await asyncio.wait_for(conn.lock.acquire(), self.LOCK_WAIT)
        except asyncio.TimeoutError:
            raise DeviceUnavailable(
                f"the device connection stayed busy for {self.LOCK_WAIT:g} s; nothing was sent"
            ) from None

    def read_point(self, name: str) -> Any:
        """The point's current value, read from the device now."""
        if name not in self._points:
            raise DeviceUnavailable(f"node {self.name!r} has no point {name!r} to read")
        try:
            return self._run(self._read, name)
        except TimeoutError:
            raise DeviceUnavailable(f"reading {name!r} took too long; nothing was written", point=name) from None

    async def _read(self, name: str) -> Any:
        from .decode import Request, decode_point
        from .poller import _DeviceError

        conn, p = self._connection(name)
        await self._locked(conn)
        try:
            if not conn.client.connected:
                raise DeviceUnavailable("device connection lost; could not read", point=name)
            try:
                raw = await conn.read(Request(p.kind, p.address, p.width, (p,)))
            except _DeviceError as exc:
                raise DeviceUnavailable(f"the device refused to read {name!r}: {exc}", point=name) from None
            except Exception as exc:  # timeout, connection lost
                raise DeviceUnavailable(
                    f"cannot read {name!r} from the device: {type(exc).__name__}: {exc}", point=name
                ) from None
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
                raise DeviceUnavailable(
                    f"the device refused the write of {name!r} (Modbus exception code {code}); nothing changed",
                    point=name,
                )
        finally:
            conn.lock.release()
