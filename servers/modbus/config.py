"""Configuration of a Modbus data node: TOML file -> frozen dataclasses.

Every check happens here, before anything connects: a bad file raises
:class:`ConfigError` whose message names the group and point and says
what is wrong and what was expected.

File layout (see ``example.toml`` next to this module for a full example)::

    [node]
    name = "modbus_sim"            # data-node name (letters, digits, _)
    description = "..."

    [device]
    host = "127.0.0.1"
    port = 5020
    device_id = 1
    timeout = 0.5                  # seconds per request
    retries = 0                    # pymodbus retries per request
    max_gap = 16                   # registers a merged read may bridge (0: never)
    connections = "shared"         # or "per_group"

    [[group]]
    name = "fast"                  # timeline name
    interval = 0.1                 # seconds between polls

    [[group.point]]
    name = "t_inlet"
    kind = "input"                 # holding | input | coil | discrete
    address = 0                    # 0-based protocol address
    type = "float32"               # see TYPES
    word_order = "big"             # big: most significant register first
    byte_order = "big"             # big: high byte first in each register
    scale = 1.0                    # value = scale * raw + offset
    offset = 0.0
    units = "K"
    description = "..."

    [[group.derived]]
    name = "dp"
    expr = "{p_in} - {p_out}"      # over points of the same group
    units = "mbar"

Several devices
---------------
A file may instead hold one ``[[device]]`` table per device, each its own
data node polled from the same process (``devices.toml`` next to this
module documents it): the table carries the ``[node]`` and ``[device]``
keys (``name``, ``description``, ``host``, ``port``, ...), its own
``[[device.group]]``, ``[[device.write]]`` and ``[device.writes]``
tables, an optional ``archive`` directory, and an optional ``include``
of a one-device file to start from (:func:`parse_nodes`).

Rules
-----
- Names of points, derived points and the per-group status field
  ``<group>_ok`` are unique across the whole node (they become field names)
  and are identifiers (``[A-Za-z_][A-Za-z0-9_]*``).
- ``coil`` and ``discrete`` points are ``bool`` (the default type there) and
  take no ``bit``, ``word_order``, ``byte_order``, ``scale`` or ``offset``.
- A ``bool`` on a register (``holding``/``input``) needs ``bit`` (0..15,
  0 = least significant); several such points may share a register if their
  bits differ, and they may share it with one ``uint16``/``int16`` point that
  reads the whole word (a status word and its flags).
- ``string`` needs ``length`` in registers (2 ASCII characters each, 1..125).
- Addresses of one kind may not overlap anywhere in the node, and
  ``address + width - 1`` must be within 0..65535.
- ``interval`` > 0; unknown keys are errors (they are usually typos).
- Writable points are declared in ``[[write]]`` tables (and ``[writes]``);
  see :mod:`.writing`.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sisock.core.protocol import FieldSpec
from sisock.core.errors import BadArgument
from sisock.writes.rules import PointSpec, Readback

from .expr import Expression, ExpressionError, compile_expression

__all__ = [
    "ConfigError",
    "DeviceConfig",
    "PointConfig",
    "DerivedConfig",
    "GroupConfig",
    "NodeConfig",
    "load_config",
    "parse_config",
    "load_nodes",
    "parse_nodes",
    "KINDS",
    "REGISTER_KINDS",
    "BIT_KINDS",
    "TYPES",
    "TYPE_WIDTH",
]

KINDS = ("holding", "input", "coil", "discrete")
REGISTER_KINDS = ("holding", "input")
BIT_KINDS = ("coil", "discrete")

#: Width in registers of each fixed-size numeric type.
TYPE_WIDTH = {
    "uint16": 1,
    "int16": 1,
    "uint32": 2,
    "int32": 2,
    "float32": 2,
    "uint64": 4,
    "int64": 4,
    "float64": 4,
}
TYPES = (*TYPE_WIDTH, "bool", "string")
ORDERS = ("big", "little")
CONNECTIONS = ("shared", "per_group")

#: Largest register count in one read (Modbus limit for function codes 3/4).
MAX_REGISTERS = 125
#: Largest bit count in one read (Modbus limit for function codes 1/2).
MAX_BITS = 2000

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class ConfigError(BadArgument):
    """The Modbus node configuration is invalid (the message says where)."""


@dataclass(frozen=True)
class DeviceConfig:
    """How to reach the Modbus TCP device.

    Attributes
    ----------
    host, port : str, int
        TCP address of the device.
    device_id : int
        Modbus unit / device id (0..255).
    timeout : float
        Seconds to wait for each response (also the connect timeout).
    retries : int
        Times pymodbus re-sends a request that timed out.
    max_gap : int
        Largest run of unused registers a merged read may bridge (bits:
        ``16 * max_gap``). 0 never reads an address no point uses.
    connections : str
        ``"shared"``: one TCP connection for all groups; ``"per_group"``:
        one connection per poll group.
    """

    host: str = "127.0.0.1"
    port: int = 502
    device_id: int = 1
    timeout: float = 1.0
    retries: int = 0
    max_gap: int = 16
    connections: str = "shared"


@dataclass(frozen=True)
class PointConfig:
    """One value read from the device.

    Attributes
    ----------
    name : str
        Field name.
    kind : str
        ``holding``, ``input``, ``coil`` or ``discrete``.
    address : int
        First register (or bit) address, 0-based.
    type : str
        One of :data:`TYPES`.
    length : int
        Registers of a ``string`` point; 0 otherwise.
    bit : int or None
        Bit (0 = LSB) of a ``bool`` on a register; None otherwise.
    word_order, byte_order : str
        ``"big"`` or ``"little"``: register order within a multi-register
        value, and byte order within each register.
    scale, offset : float
        Numeric points report ``scale * raw + offset``.
    units, description : str or None
        Metadata reported by ``get_fields``.
    """

    name: str
    kind: str
    address: int
    type: str
    length: int = 0
    bit: int | None = None
    word_order: str = "big"
    byte_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    units: str | None = None
    description: str | None = None

    @property
    def width(self) -> int:
        """Number of registers (register kinds) or bits (bit kinds) used."""
        if self.kind in BIT_KINDS or self.type == "bool":
            return 1
        if self.type == "string":
            return self.length
        return TYPE_WIDTH[self.type]

    @property
    def field_type(self) -> str:
        """``"number"``, ``"bool"`` or ``"string"`` (the get_fields types)."""
        if self.type == "bool":
            return "bool"
        if self.type == "string":
            return "string"
        return "number"

    def field_spec(self) -> FieldSpec:
        """Metadata of this point as a :class:`FieldSpec`."""
        return FieldSpec(self.field_type, self.units, self.description)


@dataclass(frozen=True)
class DerivedConfig:
    """A value computed from other points of the same group.

    Attributes
    ----------
    name : str
        Field name.
    expr : str
        Expression source, e.g. ``"{p_in} - {p_out}"``.
    expression : Expression
        The compiled expression (see :mod:`.expr`).
    units, description : str or None
        Metadata.
    """

    name: str
    expr: str
    expression: Expression = field(compare=False, repr=False)
    units: str | None = None
    description: str | None = None

    def field_spec(self) -> FieldSpec:
        """Metadata of this derived point (always a number)."""
        return FieldSpec("number", self.units, self.description)


@dataclass(frozen=True)
class GroupConfig:
    """Points read together on one interval; one timeline.

    Attributes
    ----------
    name : str
        Timeline name.
    interval : float
        Seconds between polls.
    points : tuple of PointConfig
    derived : tuple of DerivedConfig
        In evaluation order (each may use earlier ones).
    """

    name: str
    interval: float
    points: tuple[PointConfig, ...]
    derived: tuple[DerivedConfig, ...] = ()

    @property
    def ok_field(self) -> str:
        """Name of the per-group status field (True when the read succeeded)."""
        return f"{self.name}_ok"

    def field_specs(self) -> dict[str, FieldSpec]:
        """Every field this group produces, in order, with its metadata."""
        out = {p.name: p.field_spec() for p in self.points}
        out.update({d.name: d.field_spec() for d in self.derived})
        out[self.ok_field] = FieldSpec("bool", None, f"True when the '{self.name}' read succeeded; False marks a gap")
        return out


@dataclass(frozen=True)
class NodeConfig:
    """A whole Modbus data node.

    Attributes
    ----------
    name, description : str
        Data-node name (registered with the hub) and description.
    device : DeviceConfig
    groups : tuple of GroupConfig
    """

    name: str
    description: str
    device: DeviceConfig
    groups: tuple[GroupConfig, ...]
    #: Writable points (:class:`.writing.WriteConfig`), None when none are declared.
    writes: Any = None
    #: Archive directory given in the file (``archive`` of a ``[[device]]``), or None.
    archive: Path | None = None

    def field_specs(self) -> dict[str, dict[str, FieldSpec]]:
        """Timeline name -> field name -> :class:`FieldSpec`."""
        return {g.name: g.field_specs() for g in self.groups}


# --------------------------------------------------------------------------
# parsing


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate a TOML configuration file.

    Parameters
    ----------
    path : str or pathlib.Path
        The TOML file.

    Raises
    ------
    ConfigError
        If the file cannot be read, is not TOML, or fails a check.
    """
    path = Path(path)
    data = _read_toml(path)
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_config(data: dict[str, Any]) -> NodeConfig:
    """Validate a configuration already parsed into a dict.

    Parameters
    ----------
    data : dict
        Same structure as the TOML file.

    Raises
    ------
    ConfigError
        Naming the group and point and the problem.
    """
    if not isinstance(data, dict):
        raise ConfigError("configuration must be a table")
    _no_unknown(data, {"node", "device", "group", "write", "writes"}, "top level")
    node = _table(data, "node", "top level", required=True)
    _no_unknown(node, {"name", "description"}, "[node]")
    name = _str(node, "name", "[node]", required=True)
    if not _NODE_NAME.match(name):
        raise ConfigError(f"[node]: name {name!r} may contain only letters, digits and '_'")
    description = _str(node, "description", "[node]") or ""
    device = _parse_device(_table(data, "device", "top level", required=True))

    groups_raw = data.get("group")
    if not isinstance(groups_raw, list) or not groups_raw:
        raise ConfigError("at least one [[group]] is required")
    groups = tuple(_parse_group(g, i) for i, g in enumerate(groups_raw))
    _check_names(groups)
    _check_overlaps(groups)
    config = NodeConfig(name=name, description=description, device=device, groups=groups)
    writes = parse_writes(data, config)
    if writes is None:
        return config
    return NodeConfig(name=name, description=description, device=device, groups=groups, writes=writes)


# --------------------------------------------------------------- several devices

#: Keys of a ``[[device]]`` table besides those of ``[device]`` (DeviceConfig).
_ENTRY_KEYS = {"name", "description", "include", "archive", "group", "write", "writes"}


def load_nodes(path: str | Path) -> list[NodeConfig]:
    """Read a file declaring one device (``[node]`` + ``[device]``) or several (``[[device]]``).

    Parameters
    ----------
    path : str or pathlib.Path
        The TOML file. ``include`` paths in it are relative to its directory.

    Returns
    -------
    list of NodeConfig
        One per device, in file order.

    Raises
    ------
    ConfigError
        Naming the file, the device and what is wrong.
    """
    path = Path(path)
    data = _read_toml(path)
    try:
        return parse_nodes(data, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_nodes(data: dict[str, Any], base: Path | None = None) -> list[NodeConfig]:
    """Validate a parsed file of one device or of several ``[[device]]`` tables.

    A ``[[device]]`` table holds what a one-device file spreads over
    ``[node]`` and ``[device]`` (``name``, ``description``, ``host``,
    ``port``, ...), its own ``[[device.group]]``, ``[[device.write]]`` and
    ``[device.writes]`` tables, an optional ``archive`` directory, and an
    optional ``include``: a one-device file whose ``[device]`` settings,
    groups and writes the table starts from (its own keys win; its own
    groups replace the included groups and writes, its own writes the
    included writes).

    Parameters
    ----------
    data : dict
        The parsed TOML.
    base : pathlib.Path, optional
        Directory that ``include`` and ``archive`` paths are relative to.

    Raises
    ------
    ConfigError
        Naming the device (``device #i`` or ``device 'name'``) and the key.
    """
    if not isinstance(data, dict):
        raise ConfigError("configuration must be a table")
    entries = data.get("device")
    if not isinstance(entries, list):  # a one-device file: [device] is a table
        return [parse_config(data)]
    stray = sorted(set(data) - {"device"})
    if stray:
        raise ConfigError(
            f"top level: {', '.join(map(repr, stray))} next to [[device]] tables; "
            "a file of several devices declares everything inside each "
            "[[device]] (e.g. [[device.group]]), or includes a one-device file"
        )
    if not entries:
        raise ConfigError("at least one [[device]] is required")
    out: list[NodeConfig] = []
    names: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"device #{i + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table")
        name = entry.get("name")
        if isinstance(name, str):
            where = f"device #{i + 1} ({name!r})"
        try:
            config = _parse_entry(entry, base)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if config.name in names:
            raise ConfigError(
                f"{where}: name {config.name!r} is also device "
                f"#{names[config.name] + 1}'s; every device needs its own name"
            )
        names[config.name] = i
        out.append(config)
    _check_distinct(out)
    return out


def _parse_entry(entry: dict[str, Any], base: Path | None) -> NodeConfig:
    """One ``[[device]]`` table -> its node, through :func:`parse_config`."""
    device_keys = set(DeviceConfig.__dataclass_fields__)
    _no_unknown(entry, _ENTRY_KEYS | device_keys, "[[device]]")
    single: dict[str, Any] = {}
    include = _str(entry, "include", "[[device]]")
    if include is not None:
        path = Path(include).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        single = _read_toml(path)
        if not isinstance(single.get("device", {}), dict):
            raise ConfigError(
                f"include {include!r}: a one-device file ([node], [device], "
                "[[group]]) is expected, not one with [[device]] tables"
            )
    device = dict(single.get("device") or {})
    device.update({k: v for k, v in entry.items() if k in device_keys})
    node = {k: entry[k] for k in ("name", "description") if k in entry}
    if "name" not in node:
        raise ConfigError("name (the data-node name) is required")
    if "group" in entry:  # own groups: the included writes (naming included points) go too
        single.pop("write", None)
        single.pop("writes", None)
    for key in ("group", "write", "writes"):
        if key in entry:
            single[key] = entry[key]
    single["node"], single["device"] = node, device
    config = parse_config(single)
    archive = _str(entry, "archive", "[[device]]")
    if archive is None:
        return config
    directory = Path(archive).expanduser()
    if base is not None and not directory.is_absolute():
        directory = base / directory
    return replace(config, archive=directory)


def _check_distinct(configs: list[NodeConfig]) -> None:
    """Archive directories and audit databases given in the file are not shared."""
    for attr, what in (
        (lambda c: c.archive, "archive directory"),
        (lambda c: c.writes.audit if c.writes is not None else None, "audit database"),
    ):
        seen: dict[Path, str] = {}
        for c in configs:
            p = attr(c)
            if p is None:
                continue
            key = Path(os.path.abspath(p))
            if key in seen:
                raise ConfigError(
                    f"device {c.name!r}: its {what} {str(p)!r} is also device {seen[key]!r}'s; give each device its own"
                )
            seen[key] = c.name


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read Modbus config {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


# --------------------------------------------------------------- writable points

WRITABLE_KINDS = ("holding", "coil")

_RAW_RANGE = {
    "uint16": (0, 2**16 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint32": (0, 2**32 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint64": (0, 2**64 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "float32": (-float(np.finfo(np.float32).max), float(np.finfo(np.float32).max)),
    "float64": (-float(np.finfo(np.float64).max), float(np.finfo(np.float64).max)),
}

_WRITE_KEYS = {
    "point",
    "min",
    "max",
    "allowed",
    "max_step",
    "min_interval",
    "readback",
    "tolerance",
    "settle",
    "description",
}


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


def point_spec(p: PointConfig, w: dict[str, Any], where: str, points: dict[str, PointConfig]) -> PointSpec:
    """Check one ``[[write]]`` table against its point; return its :class:`PointSpec`."""
    if p.kind not in WRITABLE_KINDS:
        raise ConfigError(
            f"{where}: point {p.name!r} is of kind {p.kind!r}, which Modbus cannot "
            f"write; writable kinds: {', '.join(WRITABLE_KINDS)}"
        )
    if p.type == "string":
        raise ConfigError(f"{where}: point {p.name!r} is a string; strings are not writable")
    if p.bit is not None:
        raise ConfigError(
            f"{where}: point {p.name!r} is bit {p.bit} of a register; writing "
            "one bit needs a read-modify-write of the whole register, which is "
            "not offered: declare the whole register (uint16) instead"
        )
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
            ok = (
                isinstance(v, bool)
                if is_bool
                else (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
            )
            if not ok:
                raise ConfigError(f"{where}: allowed value {v!r} is not a {'bool' if is_bool else 'finite number'}")
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
                raise ConfigError(
                    f"{where}: {key} = {v} does not fit point {p.name!r} "
                    f"({p.type}, scale {p.scale:g}, offset {p.offset:g}: "
                    f"{ends[0]:g}..{ends[1]:g})"
                )
    description = _str(w, "description", where) or p.description
    return PointSpec(
        name=p.name,
        type=ptype,
        units=p.units,
        description=description,
        min=lo,
        max=hi,
        allowed=allowed,
        max_step=limits["max_step"],
        min_interval=limits["min_interval"],
        readback=readback,
        scale=p.scale,
        offset=p.offset,
        raw_min=raw_min,
        raw_max=raw_max,
        raw_integer=integer,
    )


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
            raise ConfigError(
                f"{where}: point {name!r} is not a point of any [[group]] (a writable point must also be read)"
            )
        if name in specs:
            raise ConfigError(f"{where}: point {name!r} is declared writable twice")
        specs[name] = point_spec(points[name], w, where, points)
        targets[name] = points[name]
    return WriteConfig(specs, targets, rate, burst, Path(audit).expanduser() if audit else None)


def _parse_device(d: dict[str, Any]) -> DeviceConfig:
    where = "[device]"
    _no_unknown(d, set(DeviceConfig.__dataclass_fields__), where)
    defaults = DeviceConfig()
    host = _str(d, "host", where) or defaults.host
    port = _int(d, "port", where, defaults.port, 1, 65535)
    device_id = _int(d, "device_id", where, defaults.device_id, 0, 255)
    timeout = _float(d, "timeout", where, defaults.timeout)
    if not 0 < timeout < math.inf:
        raise ConfigError(f"{where}: timeout must be > 0 seconds (and finite), got {timeout}")
    retries = _int(d, "retries", where, defaults.retries, 0, 10)
    max_gap = _int(d, "max_gap", where, defaults.max_gap, 0, MAX_REGISTERS - 2)
    connections = _str(d, "connections", where) or defaults.connections
    if connections not in CONNECTIONS:
        raise ConfigError(f"{where}: connections must be one of {CONNECTIONS}, got {connections!r}")
    return DeviceConfig(host, port, device_id, timeout, retries, max_gap, connections)


def _parse_group(g: Any, index: int) -> GroupConfig:
    where = f"group #{index + 1}"
    if not isinstance(g, dict):
        raise ConfigError(f"{where}: must be a table")
    name = _str(g, "name", where, required=True)
    where = f"group {name!r}"
    if not _IDENT.match(name):
        raise ConfigError(f"{where}: name must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    _no_unknown(g, {"name", "interval", "point", "derived"}, where)
    if "interval" not in g:
        raise ConfigError(f"{where}: interval (seconds between polls) is required")
    interval = _float(g, "interval", where, 0.0)
    if not 0 < interval < math.inf:
        raise ConfigError(f"{where}: interval must be > 0 seconds (and finite), got {interval}")
    raw_points = g.get("point")
    if not isinstance(raw_points, list) or not raw_points:
        raise ConfigError(f"{where}: at least one [[group.point]] is required")
    points = tuple(_parse_point(p, where, i) for i, p in enumerate(raw_points))
    raw_derived = g.get("derived", [])
    if not isinstance(raw_derived, list):
        raise ConfigError(f"{where}: derived must be an array of tables")
    known = {p.name: p for p in points}
    derived = []
    for i, d in enumerate(raw_derived):
        dc = _parse_derived(d, where, i, known, [x.name for x in derived])
        derived.append(dc)
    return GroupConfig(name=name, interval=interval, points=points, derived=tuple(derived))


_POINT_KEYS = {
    "name",
    "kind",
    "address",
    "type",
    "length",
    "bit",
    "word_order",
    "byte_order",
    "scale",
    "offset",
    "units",
    "description",
}


def _parse_point(p: Any, group_where: str, index: int) -> PointConfig:
    where = f"{group_where}, point #{index + 1}"
    if not isinstance(p, dict):
        raise ConfigError(f"{where}: must be a table")
    name = _str(p, "name", where, required=True)
    where = f"{group_where}, point {name!r}"
    if not _IDENT.match(name):
        raise ConfigError(f"{where}: name must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    _no_unknown(p, _POINT_KEYS, where)
    kind = _str(p, "kind", where, required=True)
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown kind {kind!r}; expected one of {KINDS}")
    if "address" not in p:
        raise ConfigError(f"{where}: address is required")
    address = _int(p, "address", where, 0, 0, 65535)
    typ = _str(p, "type", where) or ("bool" if kind in BIT_KINDS else "uint16")
    if typ not in TYPES:
        raise ConfigError(f"{where}: unknown type {typ!r}; expected one of {TYPES}")

    if kind in BIT_KINDS:
        if typ != "bool":
            raise ConfigError(f"{where}: a {kind} is a single bit; its type must be 'bool', not {typ!r}")
        for key in ("bit", "word_order", "byte_order", "scale", "offset", "length"):
            if key in p:
                raise ConfigError(f"{where}: {key!r} does not apply to a {kind}")
    bit = None
    if kind in REGISTER_KINDS and typ == "bool":
        if "bit" not in p:
            raise ConfigError(f"{where}: a bool on a {kind} register needs bit = 0..15 (0 = least significant)")
        bit = _int(p, "bit", where, 0, 0, 15)
    elif "bit" in p:
        raise ConfigError(f"{where}: 'bit' applies only to bool points on registers")

    length = 0
    if typ == "string":
        if "length" not in p:
            raise ConfigError(f"{where}: a string needs length (registers, 2 characters each)")
        length = _int(p, "length", where, 0, 1, MAX_REGISTERS)
    elif "length" in p:
        raise ConfigError(f"{where}: 'length' applies only to string points")

    if typ in ("bool", "string"):
        for key in ("scale", "offset"):
            if key in p:
                raise ConfigError(f"{where}: {key!r} applies only to numeric types, not {typ}")
    word_order = _str(p, "word_order", where) or "big"
    byte_order = _str(p, "byte_order", where) or "big"
    for key, val in (("word_order", word_order), ("byte_order", byte_order)):
        if val not in ORDERS:
            raise ConfigError(f"{where}: {key} must be 'big' or 'little', got {val!r}")
    scale = _float(p, "scale", where, 1.0)
    offset = _float(p, "offset", where, 0.0)
    if not (math.isfinite(scale) and math.isfinite(offset)):
        raise ConfigError(f"{where}: scale and offset must be finite numbers")
    point = PointConfig(
        name=name,
        kind=kind,
        address=address,
        type=typ,
        length=length,
        bit=bit,
        word_order=word_order,
        byte_order=byte_order,
        scale=scale,
        offset=offset,
        units=_str(p, "units", where),
        description=_str(p, "description", where),
    )
    last = address + point.width - 1
    if last > 65535:
        raise ConfigError(
            f"{where}: {typ} at address {address} spans {point.width} "
            f"{'bits' if kind in BIT_KINDS else 'registers'} up to {last}, past 65535"
        )
    return point


def _parse_derived(
    d: Any, group_where: str, index: int, points: dict[str, PointConfig], earlier: list[str]
) -> DerivedConfig:
    where = f"{group_where}, derived point #{index + 1}"
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: must be a table")
    name = _str(d, "name", where, required=True)
    where = f"{group_where}, derived point {name!r}"
    if not _IDENT.match(name):
        raise ConfigError(f"{where}: name must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    _no_unknown(d, {"name", "expr", "units", "description"}, where)
    expr = _str(d, "expr", where, required=True)
    numeric = {n for n, p in points.items() if p.type != "string"} | set(earlier)
    try:
        expression = compile_expression(expr, numeric)
    except ExpressionError as exc:
        for n, p in points.items():
            if p.type == "string" and "{" + n + "}" in expr.replace(" ", ""):
                raise ConfigError(
                    f"{where}: expr uses string point {{{n}}}; only numbers and bools can be used"
                ) from None
        raise ConfigError(f"{where}: {exc}") from None
    return DerivedConfig(
        name=name,
        expr=expr,
        expression=expression,
        units=_str(d, "units", where),
        description=_str(d, "description", where),
    )


def _check_names(groups: tuple[GroupConfig, ...]) -> None:
    """Point, derived and status-field names are unique node-wide."""
    seen: dict[str, str] = {}
    for g in groups:
        entries = [(p.name, f"group {g.name!r}, point {p.name!r}") for p in g.points]
        entries += [(d.name, f"group {g.name!r}, derived point {d.name!r}") for d in g.derived]
        entries.append((g.ok_field, f"group {g.name!r} status field {g.ok_field!r}"))
        for n, where in entries:
            if n in seen:
                raise ConfigError(
                    f"{where}: duplicate name {n!r}, already used by {seen[n]} "
                    "(names are field names and must be unique in the node)"
                )
            seen[n] = where
    names = [g.name for g in groups]
    for n in names:
        if names.count(n) > 1:
            raise ConfigError(f"group {n!r}: duplicate group name")


def _check_overlaps(groups: tuple[GroupConfig, ...]) -> None:
    """No two points read the same register/bit of the same kind."""
    used: dict[tuple[str, int], list[tuple[PointConfig, str]]] = {}
    for g in groups:
        for p in g.points:
            for a in range(p.address, p.address + p.width):
                for other, og in used.get((p.kind, a), []):
                    if _may_share(p, other):
                        continue
                    what = f"bit {p.bit} of " if p.bit is not None and other.bit is not None else ""
                    raise ConfigError(
                        f"group {g.name!r}, point {p.name!r}: {p.kind} address "
                        f"{p.address}..{p.address + p.width - 1} overlaps point "
                        f"{other.name!r} (group {og!r}, {other.address}.."
                        f"{other.address + other.width - 1}) at {what}{p.kind} {a}"
                    )
                used.setdefault((p.kind, a), []).append((p, g.name))


def _may_share(a: PointConfig, b: PointConfig) -> bool:
    """Whether two points may use the same register.

    A bool on a register bit may share it with other bools on *other* bits
    and with a 16-bit integer point reading the whole word (a status word
    and its flags); everything else overlapping is an error.
    """
    if a.bit is not None and b.bit is not None:
        return a.bit != b.bit
    if a.bit is not None or b.bit is not None:
        whole = b if a.bit is not None else a
        return whole.type in ("uint16", "int16")
    return False


# --------------------------------------------------------------------------
# small typed getters


def _no_unknown(d: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, extra))}; allowed: {', '.join(sorted(allowed))}"
        )


def _table(d: dict[str, Any], key: str, where: str, required: bool = False) -> dict[str, Any]:
    v = d.get(key)
    if v is None:
        if required:
            raise ConfigError(f"{where}: [{key}] table is required")
        return {}
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: {key} must be a table")
    return v


def _str(d: dict[str, Any], key: str, where: str, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise ConfigError(f"{where}: {key} is required")
        return None
    if not isinstance(v, str) or (required and not v.strip()):
        raise ConfigError(f"{where}: {key} must be a non-empty string, got {v!r}")
    return v


def _int(d: dict[str, Any], key: str, where: str, default: int, lo: int, hi: int) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{where}: {key} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise ConfigError(f"{where}: {key} must be in {lo}..{hi}, got {v}")
    return v


def _float(d: dict[str, Any], key: str, where: str, default: float) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, got {v!r}")
    return float(v)
