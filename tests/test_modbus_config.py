"""Modbus node configuration: parsing, defaults and every kind of error."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sisock.core.errors import BadArgument
from sisock.servers.modbus.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parent.parent / "servers" / "modbus" / "example.toml"


def base() -> dict:
    """A small valid configuration as a dict (two groups)."""
    return {
        "node": {"name": "n1", "description": "test"},
        "device": {"host": "127.0.0.1", "port": 1502},
        "group": [
            {
                "name": "fast",
                "interval": 0.1,
                "point": [
                    {"name": "p_in", "kind": "input", "address": 0, "type": "uint16"},
                    {"name": "p_out", "kind": "input", "address": 1, "type": "uint16"},
                    {"name": "temp", "kind": "holding", "address": 10, "type": "float32"},
                ],
                "derived": [{"name": "dp", "expr": "{p_in} - {p_out}", "units": "mbar"}],
            },
            {
                "name": "slow",
                "interval": 1,
                "point": [{"name": "relay", "kind": "coil", "address": 3}],
            },
        ],
    }


def with_point(**point) -> dict:
    """``base()`` with one extra point appended to group 'fast'."""
    cfg = base()
    cfg["group"][0]["point"].append(point)
    return cfg


def test_example_file_loads_and_describes_fields():
    """The shipped example parses, and its fields carry type and units."""
    cfg = load_config(EXAMPLE)
    assert cfg.name == "modbus_sim"
    assert [g.name for g in cfg.groups] == ["fast", "slow"]
    specs = cfg.field_specs()
    assert specs["fast"]["t_inlet"].type == "number"
    assert specs["fast"]["t_inlet"].units == "K"
    assert specs["fast"]["dp"].units == "mbar"
    assert specs["fast"]["fast_ok"].type == "bool"
    assert specs["slow"]["model"].type == "string"
    assert specs["slow"]["heater_on"].type == "bool"
    flow = next(p for p in cfg.groups[0].points if p.name == "flow")
    assert flow.word_order == "little"


def test_defaults_and_widths():
    """Omitted keys get documented defaults; widths follow the type."""
    cfg = parse_config(with_point(name="s", kind="input", address=20, type="string", length=3))
    dev = cfg.device
    assert (dev.device_id, dev.retries, dev.max_gap, dev.connections) == (1, 0, 16, "shared")
    pts = {p.name: p for p in cfg.groups[0].points}
    assert pts["p_in"].scale == 1.0 and pts["p_in"].offset == 0.0
    assert pts["temp"].width == 2
    assert pts["s"].width == 3
    relay = cfg.groups[1].points[0]
    assert relay.type == "bool" and relay.width == 1
    assert cfg.groups[1].interval == 1.0


def test_config_error_is_bad_argument():
    """ConfigError travels as a sisock bad_argument error."""
    assert issubclass(ConfigError, BadArgument)


def test_last_register_is_usable():
    """A value ending exactly at address 65535 is valid."""
    cfg = parse_config(with_point(name="last", kind="holding", address=65534, type="float32"))
    assert cfg.groups[0].points[-1].address == 65534


def test_status_word_and_flags_may_share_a_register():
    """A uint16 status word and bool flags on distinct bits of it are allowed."""
    cfg = with_point(name="status", kind="holding", address=30, type="uint16")
    cfg["group"][0]["point"] += [
        {"name": "run", "kind": "holding", "address": 30, "type": "bool", "bit": 0},
        {"name": "alarm", "kind": "holding", "address": 30, "type": "bool", "bit": 2},
    ]
    parse_config(cfg)


ERRORS = [
    # (description, mutation, substrings the message must contain)
    (
        "overlap",
        lambda: with_point(name="clash", kind="holding", address=11, type="uint16"),
        ["'clash'", "overlaps", "'temp'", "holding 11"],
    ),
    (
        "overlap across groups",
        lambda: _slow_point(name="clash2", kind="input", address=1),
        ["'clash2'", "'p_out'", "overlaps"],
    ),
    (
        "same bit twice",
        lambda: _two(
            {"name": "b1", "kind": "holding", "address": 40, "type": "bool", "bit": 3},
            {"name": "b2", "kind": "holding", "address": 40, "type": "bool", "bit": 3},
        ),
        ["'b2'", "'b1'", "bit 3"],
    ),
    (
        "bool bit over a float",
        lambda: with_point(name="flag", kind="holding", address=11, type="bool", bit=1),
        ["'flag'", "'temp'", "overlaps"],
    ),
    (
        "address past 65535",
        lambda: with_point(name="far", kind="holding", address=65533, type="float64"),
        ["'far'", "65535", "65533", "65536"],
    ),
    ("negative address", lambda: with_point(name="neg", kind="holding", address=-1), ["'neg'", "address", "0..65535"]),
    (
        "string past 65535",
        lambda: with_point(name="txt", kind="input", address=65530, type="string", length=8),
        ["'txt'", "65537"],
    ),
    (
        "unknown type",
        lambda: with_point(name="q", kind="holding", address=50, type="float16"),
        ["'q'", "unknown type", "float16"],
    ),
    ("unknown kind", lambda: with_point(name="q", kind="register", address=50), ["'q'", "unknown kind", "register"]),
    ("duplicate name in group", lambda: with_point(name="p_in", kind="holding", address=50), ["'p_in'", "duplicate"]),
    (
        "duplicate name across groups",
        lambda: _slow_point(name="temp", kind="coil", address=9),
        ["'temp'", "duplicate", "group 'slow'"],
    ),
    ("derived named like a point", lambda: _derived(name="p_out", expr="{p_in}"), ["'p_out'", "duplicate"]),
    (
        "point named like a status field",
        lambda: with_point(name="slow_ok", kind="coil", address=60),
        ["'slow_ok'", "duplicate"],
    ),
    (
        "bool on register without bit",
        lambda: with_point(name="f", kind="holding", address=50, type="bool"),
        ["'f'", "bit"],
    ),
    (
        "non-bool on coil",
        lambda: with_point(name="c", kind="coil", address=50, type="uint16"),
        ["'c'", "coil", "'bool'"],
    ),
    ("bit on coil", lambda: with_point(name="c", kind="coil", address=50, bit=1), ["'c'", "'bit'", "coil"]),
    ("bit on uint16", lambda: with_point(name="u", kind="holding", address=50, bit=1), ["'u'", "'bit'"]),
    (
        "bit out of range",
        lambda: with_point(name="f", kind="holding", address=50, type="bool", bit=16),
        ["'f'", "bit", "0..15"],
    ),
    ("scale on bool", lambda: with_point(name="c", kind="discrete", address=50, scale=2.0), ["'c'", "'scale'"]),
    (
        "scale on string",
        lambda: with_point(name="s", kind="input", address=50, type="string", length=2, scale=2.0),
        ["'s'", "'scale'", "numeric"],
    ),
    ("string without length", lambda: with_point(name="s", kind="input", address=50, type="string"), ["'s'", "length"]),
    ("length on number", lambda: with_point(name="n", kind="input", address=50, length=2), ["'n'", "'length'"]),
    (
        "bad word order",
        lambda: with_point(name="w", kind="input", address=50, type="int32", word_order="middle"),
        ["'w'", "word_order", "middle"],
    ),
    ("unknown key", lambda: with_point(name="typo", kind="input", address=50, adress=3), ["'typo'", "'adress'"]),
    ("missing address", lambda: with_point(name="noaddr", kind="input"), ["'noaddr'", "address"]),
    ("bad point name", lambda: with_point(name="bad name", kind="input", address=50), ["'bad name'", "identifier"]),
    ("expr unknown reference", lambda: _derived(name="d2", expr="{p_in} - {nope}"), ["'d2'", "{nope}", "group 'fast'"]),
    ("expr from another group", lambda: _derived(name="d2", expr="{relay} * 2"), ["'d2'", "{relay}"]),
    ("expr bad syntax", lambda: _derived(name="d3", expr="{p_in} -* "), ["'d3'", "syntax"]),
    ("expr attribute", lambda: _derived(name="d4", expr="{p_in}.real"), ["'d4'", "Attribute"]),
    ("expr call", lambda: _derived(name="d5", expr="__import__('os')"), ["'d5'", "__import__"]),
    ("expr on string point", lambda: _string_derived(), ["'d6'", "string point", "{s}"]),
]


def _slow_point(**point) -> dict:
    cfg = base()
    cfg["group"][1]["point"].append(point)
    return cfg


def _two(a: dict, b: dict) -> dict:
    cfg = with_point(**a)
    cfg["group"][0]["point"].append(b)
    return cfg


def _derived(**d) -> dict:
    cfg = base()
    cfg["group"][0]["derived"].append(d)
    return cfg


def _string_derived() -> dict:
    cfg = with_point(name="s", kind="input", address=50, type="string", length=2)
    cfg["group"][0]["derived"].append({"name": "d6", "expr": "{s} + 1"})
    return cfg


@pytest.mark.parametrize("what,make,needles", ERRORS, ids=[e[0] for e in ERRORS])
def test_point_errors_name_the_point(what, make, needles):
    """Each invalid point or derived point is refused with a message naming it."""
    with pytest.raises(ConfigError) as info:
        parse_config(make())
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{what}: {needle!r} not in {msg!r}"


@pytest.mark.parametrize("interval", [0, -1, 0.0, float("inf"), float("nan")])
def test_interval_must_be_positive(interval):
    """interval <= 0 is refused, naming the group."""
    cfg = base()
    cfg["group"][1]["interval"] = interval
    with pytest.raises(ConfigError, match=r"group 'slow'.*interval must be > 0"):
        parse_config(cfg)


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (lambda c: c.pop("node"), r"\[node\]"),
        (lambda c: c["node"].update(name="a.b"), r"name 'a\.b'"),
        (lambda c: c["device"].update(port=70000), r"\[device\]: port must be in 1\.\.65535"),
        (lambda c: c["device"].update(timeout=0), r"timeout must be > 0"),
        (lambda c: c["device"].update(connections="many"), r"connections"),
        (lambda c: c["device"].update(max_gap=-1), r"max_gap"),
        (lambda c: c.update(group=[]), r"at least one \[\[group\]\]"),
        (lambda c: c["group"][1].update(point=[]), r"group 'slow'.*at least one"),
        (lambda c: c["group"][1].update(name="fast"), r"duplicate"),
        (lambda c: c["group"][0].pop("interval"), r"group 'fast'.*interval"),
    ],
)
def test_node_device_group_errors(mutate, pattern):
    """Errors outside points name the table and the key."""
    cfg = copy.deepcopy(base())
    mutate(cfg)
    with pytest.raises(ConfigError, match=pattern):
        parse_config(cfg)


def test_load_config_reports_file_problems(tmp_path):
    """A missing file or bad TOML is a ConfigError naming the file."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="nope.toml"):
        load_config(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\nname = 1\n")
    with pytest.raises(ConfigError, match="bad.toml.*TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(EXAMPLE.read_text().replace('type = "uint32"', 'type = "uint24"'))
    with pytest.raises(ConfigError, match=r"wrong\.toml.*'uptime'.*uint24"):
        load_config(wrong)


def test_config_is_frozen():
    """Parsed configurations are immutable."""
    cfg = parse_config(base())
    with pytest.raises(AttributeError):
        cfg.groups[0].interval = 5  # type: ignore[misc]
