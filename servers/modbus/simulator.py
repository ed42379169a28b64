"""A simulated Modbus TCP instrument (``sisock sim modbus``).

A pymodbus :class:`~pymodbus.server.ModbusTcpServer` whose registers follow
plausible instrument signals. The register map matches ``example.toml``:

==========  =======  ===========================================  =============
kind        address  signal                                       type
==========  =======  ===========================================  =============
input       0        inlet temperature, drifts with noise (K)     float32
input       2        outlet temperature, heated by a thermostat   float32
input       4        cold-stage temperature, raw = K * 100        int16
input       5        inlet pressure, raw = mbar * 10              uint16
input       6        outlet pressure, raw = mbar * 10             uint16
input       7        flow (l/min), least significant word first   float32
input       10       energy counter (kWh), always increasing      float64
input       14       uptime (s)                                   uint32
input       16       model name "SIMOD-01"                        string (4)
holding     0        status word: bit 0 running, 1 heater, 2 alarm uint16
holding     1        thermostat set point, raw = K * 10 (writable) int16
holding     2        heater power (mW)                            int32
coil        0        heater on (driven by the thermostat)         bool
coil        1        pump on; off stops the flow (writable)       bool
discrete    0        door closed                                  bool
discrete    1        flow ok (flow > 5 l/min)                     bool
==========  =======  ===========================================  =============

``extra_registers=N`` (``--registers N``) adds N holding registers from
address :data:`EXTRA_BASE` holding values of mixed types (see
:func:`extra_layout`), all changing, for benchmarks.

The simulator keeps the truth in numpy arrays; a :class:`~pymodbus.simulator.SimDevice`
action copies the requested range into the server's store on every read
(after advancing the signals at most every ``update_period`` seconds), so
values survive :meth:`Simulator.stop` / :meth:`Simulator.start` and tests can
set raw values with :meth:`Simulator.set_registers` / :meth:`Simulator.set_bits`.
Writes from clients (e.g. to the set point) land in the arrays too.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import math
import signal
import struct
import time
from collections.abc import Sequence

import numpy as np
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

__all__ = [
    "Simulator",
    "add_arguments",
    "run",
    "encode",
    "extra_layout",
    "EXTRA_BASE",
    "DEFAULT_PORT",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 5020
#: First holding register of the benchmark's extra registers.
EXTRA_BASE = 1000
#: Types cycled through by :func:`extra_layout`.
EXTRA_TYPES = ("float32", "uint16", "int16", "uint32", "float64", "int32")

_KIND_OF_FC = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    22: "holding",
    23: "holding",
    4: "input",
}
_STRUCT = {
    "uint16": "H",
    "int16": "h",
    "uint32": "I",
    "int32": "i",
    "float32": "f",
    "uint64": "Q",
    "int64": "q",
    "float64": "d",
}
_WIDTH = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2, "uint64": 4, "int64": 4, "float64": 4}


def encode(
    type: str,
    value: float | int | str,
    *,
    word_order: str = "big",
    byte_order: str = "big",
    length: int | None = None,
) -> list[int]:
    """Encode one value into registers with :mod:`struct` (independent of the decoder).

    Parameters
    ----------
    type : str
        ``uint16`` ... ``float64`` or ``string``.
    value : int, float or str
    word_order, byte_order : str
        ``"big"`` or ``"little"`` (see :mod:`.decode`).
    length : int, optional
        Registers of a string (padded with NULs); default just enough.

    Returns
    -------
    list of int
    """
    if type == "string":
        raw = str(value).encode("ascii")
        n = length if length is not None else (len(raw) + 1) // 2
        raw = raw[: 2 * n].ljust(2 * n, b"\x00")
        regs = list(struct.unpack(f">{n}H", raw))
    else:
        w = _WIDTH[type]
        regs = list(struct.unpack(f">{w}H", struct.pack(">" + _STRUCT[type], value)))
        if word_order == "little":
            regs.reverse()
    if byte_order == "little":
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    return regs


def extra_layout(n: int, base: int = EXTRA_BASE) -> list[tuple[str, str, int]]:
    """Layout of ``n`` extra holding registers: ``[(name, type, address), ...]``.

    Types cycle through :data:`EXTRA_TYPES`; the last value is dropped if it
    would not fit in ``n`` registers.
    """
    out: list[tuple[str, str, int]] = []
    addr, i = base, 0
    while True:
        typ = EXTRA_TYPES[i % len(EXTRA_TYPES)]
        if addr + _WIDTH[typ] > base + n:
            break
        out.append((f"x{i:04d}_{typ}", typ, addr))
        addr += _WIDTH[typ]
        i += 1
    return out


class Simulator:
    """A Modbus TCP server with simulated instrument signals.

    Parameters
    ----------
    host : str
        Address to listen on.
    port : int
        TCP port; 0 picks a free one (read :attr:`port` after start; a
        restart reuses it).
    device_id : int
        Modbus device id served (other ids get no answer).
    size : int
        Registers (and bits) per kind, from address 0.
    signals : bool
        Advance the instrument signals; False leaves every value as set.
    extra_registers : int
        Extra holding registers of mixed types (see :func:`extra_layout`).
    update_period : float
        Signals advance at most this often (seconds), on reads.
    seed : int
        Random seed of the noise.

    Examples
    --------
    >>> async def main():
    ...     async with Simulator(port=0, signals=False) as sim:
    ...         sim.set_registers("holding", 10, encode("float32", 1.5))
    ...         ...  # poll 127.0.0.1:sim.port
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        device_id: int = 1,
        size: int = 4096,
        signals: bool = True,
        extra_registers: int = 0,
        update_period: float = 0.01,
        seed: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.device_id = device_id
        size = max(size, EXTRA_BASE + extra_registers + 1 if extra_registers else size)
        self.size = size
        nbits = -(-size // 16) * 16
        self.registers = {k: np.zeros(size, dtype=np.uint16) for k in ("holding", "input")}
        self.bits = {k: np.zeros(nbits, dtype=bool) for k in ("coil", "discrete")}
        self.signals = signals
        self.update_period = update_period
        #: Read requests seen, per function code.
        self.request_count: collections.Counter[int] = collections.Counter()
        #: Write requests received, per function code (5, 6, 15, 16).
        self.write_count: collections.Counter[int] = collections.Counter()
        #: The last 10000 write requests as ``(function_code, address, values)``.
        self.write_log: collections.deque[tuple[int, int, list]] = collections.deque(maxlen=10000)
        #: The last 10000 requests of every kind, in arrival order, as
        #: ``(function_code, address, count)`` (count: values written for a write).
        self.pdu_log: collections.deque[tuple[int, int, int]] = collections.deque(maxlen=10000)
        #: The last 10000 requests as ``(function_code, address, count)``.
        self.request_log: collections.deque[tuple[int, int, int]] = collections.deque(maxlen=10000)
        self._server: ModbusTcpServer | None = None
        self._rng = np.random.default_rng(seed)
        self._t0 = time.monotonic()
        self._last = self._t0
        self._state = {"t_in": 293.0, "t_out": 294.0, "energy": 0.0}
        self._extra = self._extra_plan(extra_registers)
        if signals:
            self._init_signals()

    # ------------------------------------------------------------- lifecycle
    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    async def start(self) -> None:
        """Start listening (again, on the same port after :meth:`stop`)."""
        if self._server is not None:
            return
        # values= lists rather than count=: pymodbus checks count * values
        # (quadratic in count; 0.3 s for 4096 registers).
        nbits = len(self.bits["coil"])

        def reg():
            return [SimData(0, values=[0] * self.size, datatype=DataType.REGISTERS)]

        def bit():
            return [SimData(0, values=[False] * nbits, datatype=DataType.BITS)]

        device = SimDevice(id=self.device_id, simdata=(bit(), bit(), reg(), reg()), action=self._action)
        server = ModbusTcpServer(device, address=(self.host, self.port), trace_pdu=self._trace)
        await server.serve_forever(background=True)
        self._server = server
        if self.port == 0:
            self.port = server.transport.sockets[0].getsockname()[1]
        log.info("Modbus simulator listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and drop every client connection."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
            log.info("Modbus simulator on %s:%d stopped", self.host, self.port)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------- raw access
    def set_registers(self, kind: str, address: int, values: Sequence[int]) -> None:
        """Set raw registers of ``kind`` (``"holding"`` or ``"input"``)."""
        self.registers[kind][address : address + len(values)] = values

    def set_bits(self, kind: str, address: int, values: Sequence[bool]) -> None:
        """Set bits of ``kind`` (``"coil"`` or ``"discrete"``)."""
        self.bits[kind][address : address + len(values)] = values

    def reset_requests(self) -> None:
        """Forget the requests counted so far."""
        self.request_count.clear()
        self.request_log.clear()
        self.write_count.clear()
        self.write_log.clear()
        self.pdu_log.clear()

    # ------------------------------------------------------------- pymodbus hooks
    def _trace(self, sending: bool, pdu):
        if not sending and pdu.function_code in (1, 2, 3, 4, 5, 6, 15, 16):
            n = (
                pdu.count
                if pdu.function_code <= 4
                else len(getattr(pdu, "registers", None) or getattr(pdu, "bits", None) or [0])
            )
            self.pdu_log.append((pdu.function_code, pdu.address, n))
        if not sending and pdu.function_code in (1, 2, 3, 4):
            self.request_count[pdu.function_code] += 1
            self.request_log.append((pdu.function_code, pdu.address, pdu.count))
        elif not sending and pdu.function_code in (5, 6, 15, 16):
            self.write_count[pdu.function_code] += 1
            values = list(getattr(pdu, "registers", None) or getattr(pdu, "bits", None) or [])
            self.write_log.append((pdu.function_code, pdu.address, values))
        return pdu

    @property
    def writes(self) -> int:
        """Write requests received so far (all write function codes)."""
        return sum(self.write_count.values())

    async def _action(self, fc: int, start: int, address: int, count: int, registers: list[int], values) -> None:
        kind = _KIND_OF_FC.get(fc)
        if kind is None:
            return None
        if values is not None:  # a client write: keep our arrays the truth
            if kind in self.bits:
                self.bits[kind][address : address + len(values)] = values
            else:
                self.registers[kind][address : address + len(values)] = values
            return None
        if self.signals:
            now = time.monotonic()
            if now - self._last >= self.update_period:
                self._advance(now - self._last, now - self._t0)
                self._last = now
        if kind in self.bits:
            packed = np.packbits(self.bits[kind], bitorder="little").view("<u2")
            registers[: len(packed)] = packed.tolist()
        else:
            off = address - start
            registers[off : off + count] = self.registers[kind][address : address + count].tolist()
        return None

    # ------------------------------------------------------------- signals
    def _put(self, kind: str, address: int, type: str, value: float | int | str, **kw) -> None:
        self.set_registers(kind, address, encode(type, value, **kw))

    def _init_signals(self) -> None:
        self._put("holding", 1, "int16", 2955)  # set point 295.5 K
        self._put("input", 16, "string", "SIMOD-01", length=4)
        self.set_bits("coil", 1, [True])
        self.set_bits("discrete", 0, [True])
        self._advance(0.0, 0.0)

    def _advance(self, dt: float, t: float) -> None:
        """Advance the instrument by ``dt`` seconds (``t`` since start)."""
        rng, s = self._rng, self._state
        noise = rng.normal(size=6)
        s["t_in"] += 0.01 * math.sqrt(dt) * noise[0] - 0.001 * dt * (s["t_in"] - 293.0)
        t_in = s["t_in"] + 0.8 * math.sin(2 * math.pi * t / 900.0)
        setpoint = int(np.int16(self.registers["holding"][1])) / 10.0
        heater = bool(self.bits["coil"][0])
        if s["t_out"] < setpoint - 0.5:
            heater = True
        elif s["t_out"] > setpoint + 0.5:
            heater = False
        target = t_in + (4.0 if heater else 0.5)
        s["t_out"] += (target - s["t_out"]) * (1.0 - math.exp(-dt / 20.0))
        power = (250.0 if heater else 0.0) + 50.0 + 0.5 * noise[1]
        s["energy"] += power * dt / 3.6e6
        p_in = 1500.0 + 5.0 * math.sin(2 * math.pi * t / 300.0) + 0.5 * noise[2]
        p_out = p_in - 120.0 - 0.5 * abs(noise[3])
        flow = (12.0 if self.bits["coil"][1] else 0.0) + 0.3 * noise[4]  # the pump coil
        t_stage = 4.0 + 0.01 * noise[5]
        alarm = s["t_out"] > setpoint + 3.0

        self._put("input", 0, "float32", t_in + 0.02 * noise[0])
        self._put("input", 2, "float32", s["t_out"])
        self._put("input", 4, "int16", int(round(t_stage * 100)))
        self._put("input", 5, "uint16", int(round(p_in * 10)))
        self._put("input", 6, "uint16", int(round(p_out * 10)))
        self._put("input", 7, "float32", flow, word_order="little")
        self._put("input", 10, "float64", s["energy"])
        self._put("input", 14, "uint32", int(t))
        self._put("holding", 0, "uint16", 1 | (2 if heater else 0) | (4 if alarm else 0))
        self._put("holding", 2, "int32", int(power * 1000))
        self.set_bits("coil", 0, [heater])
        self.set_bits("discrete", 1, [flow > 5.0])
        if self._extra:
            self._advance_extra(t)

    def _extra_plan(self, n: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Group the extra registers by type: (type, register index matrix, phase)."""
        by_type: dict[str, list[int]] = {}
        for _name, typ, addr in extra_layout(n):
            by_type.setdefault(typ, []).append(addr)
        out = []
        for typ, addrs in by_type.items():
            idx = np.array(addrs)[:, None] + np.arange(_WIDTH[typ])
            out.append((typ, idx, self._rng.uniform(0, 2 * np.pi, len(addrs))))
        return out

    def _advance_extra(self, t: float) -> None:
        regs = self.registers["holding"]
        for typ, idx, phase in self._extra:
            wave = np.sin(2 * np.pi * t / 60.0 + phase)
            if typ.startswith("float"):
                vals = (100.0 * wave).astype(">f4" if typ == "float32" else ">f8")
            elif typ.startswith("uint"):
                vals = (30000 * (wave + 1)).astype(">u2" if typ == "uint16" else ">u4")
            else:
                vals = (30000 * wave).astype(">i2" if typ == "int16" else ">i4")
            regs[idx] = vals.view(">u2").reshape(idx.shape)


# --------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sisock sim modbus`` options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default: %(default)s)")
    parser.add_argument("--device-id", type=int, default=1, help="Modbus device id served (default: %(default)s)")
    parser.add_argument(
        "--registers",
        type=int,
        default=0,
        metavar="N",
        help=f"expose N extra holding registers of mixed types from address {EXTRA_BASE} (for benchmarks; default: 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="simulate N devices, on ports PORT .. PORT+N-1, each with its "
        "own signals (seeds SEED .. SEED+N-1), from this one process "
        "(default: 1)",
    )


async def _serve(args: argparse.Namespace) -> None:
    sims = [
        Simulator(
            args.host, args.port + i, device_id=args.device_id, extra_registers=args.registers, seed=args.seed + i
        )
        for i in range(args.devices)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = []
    try:
        for sim in sims:
            await sim.start()
            started.append(sim)
        await stop.wait()
    finally:
        for sim in started:
            await sim.stop()


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; return the exit status."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not 0 <= args.registers <= 60000:
        log.error("--registers must be in 0..60000, got %d", args.registers)
        return 2
    if not 1 <= args.devices <= 1000 or args.port + args.devices - 1 > 65535:
        log.error(
            "--devices must be in 1..1000 with --port + --devices - 1 <= 65535, got --devices %d from --port %d",
            args.devices,
            args.port,
        )
        return 2
    try:
        asyncio.run(_serve(args))
    except RuntimeError as exc:  # pymodbus: "Could not start listen"
        log.error("cannot serve on %s:%d..%d: %s", args.host, args.port, args.port + args.devices - 1, exc)
        return 1
    return 0


if __name__ == "__main__":  # python -m sisock.servers.modbus.simulator
    import sys

    _parser = argparse.ArgumentParser(description="Simulated Modbus TCP instrument")
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
