"""Declaring writable Modbus points: checks at start, encoding (no device)."""

from __future__ import annotations

import tomllib

import pytest

from sisock.servers.modbus.config import ConfigError, load_config, parse_config
from sisock.servers.modbus.decode import decode_point
from sisock.servers.modbus.server import example_config
from sisock.servers.modbus.writing import encode_registers

pytestmark = pytest.mark.unit


def config_with(extra: str) -> dict:
    """The shipped example without its write declarations, plus ``extra``."""
    text = example_config(5020)
    text = text[: text.index("[writes]")]
    return tomllib.loads(text + extra)


def test_example_declares_writes():
    """The shipped example has writable set point and pump, with limits and read-back."""
    cfg = parse_config(tomllib.loads(example_config(5020)))
    sp = cfg.writes.points["setpoint"]
    assert (sp.min, sp.max, sp.max_step, sp.min_interval) == (280.0, 320.0, 10.0, 1.0)
    assert sp.readback.point == "setpoint" and sp.readback.tolerance == 0.05
    assert sp.raw_integer and sp.scale == 0.1
    assert cfg.writes.points["pump_on"].type == "bool"
    assert cfg.writes.rate == 5.0


def test_no_writes_is_read_only():
    """A file without [[write]] declares no writable point (the node stays read-only)."""
    assert parse_config(config_with("")).writes is None


@pytest.mark.parametrize(
    "extra,words",
    [
        ('[[write]]\npoint = "t_inlet"\n', ["t_inlet", "input"]),
        ('[[write]]\npoint = "model"\n', ["model", "input"]),
        ('[[write]]\npoint = "running"\n', ["running", "bit"]),
        ('[[write]]\npoint = "nosuch"\n', ["nosuch", "not a point"]),
        ('[[write]]\npoint = "setpoint"\nmax_stepp = 1\n', ["setpoint", "max_stepp"]),
        ('[[write]]\npoint = "setpoint"\nmin = 300.0\nmax = 290.0\n', ["setpoint", "min"]),
        ('[[write]]\npoint = "setpoint"\nmax = 5000.0\n', ["setpoint", "max", "does not fit"]),
        ('[[write]]\npoint = "setpoint"\nmax_step = -1.0\n', ["setpoint", "max_step"]),
        ('[[write]]\npoint = "setpoint"\nreadback = "nope"\n', ["setpoint", "readback"]),
        ('[[write]]\npoint = "setpoint"\nsettle = 600.0\n', ["setpoint", "settle"]),
        ('[[write]]\npoint = "pump_on"\nmax = 1.0\n', ["pump_on", "max"]),
        ('[[write]]\npoint = "setpoint"\nallowed = ["hot"]\n', ["setpoint", "allowed"]),
        ('[[write]]\npoint = "setpoint"\n[[write]]\npoint = "setpoint"\n', ["setpoint", "twice"]),
        ("[writes]\nrate = 0.0\n", ["rate"]),
        ("[writes]\nratee = 1.0\n", ["ratee"]),
    ],
)
def test_bad_write_declarations(extra, words):
    """Each mistake stops the node at start with a message naming the point and key."""
    with pytest.raises(ConfigError) as info:
        parse_config(config_with(extra))
    for w in words:
        assert w in str(info.value)


def test_bad_file_names_the_file(tmp_path):
    """``load_config`` adds the file name to a write-declaration error."""
    path = tmp_path / "bad.toml"
    path.write_text(example_config(5020).replace("max_step = 10.0", 'max_step = "big"'))
    with pytest.raises(ConfigError, match="bad.toml.*setpoint.*max_step"):
        load_config(path)


@pytest.mark.parametrize(
    "typ,value,kw",
    [
        ("int16", -1234, {}),
        ("uint16", 65535, {}),
        ("int32", -70000, {}),
        ("uint32", 4_000_000_000, {"word_order": "little"}),
        ("float32", 1.5, {}),
        ("float32", -2.25, {"word_order": "little", "byte_order": "little"}),
        ("float64", 1e300, {}),
        ("int64", -(2**40), {"byte_order": "little"}),
    ],
)
def test_encoding_round_trips_through_the_decoder(typ, value, kw):
    """What a write sends decodes, with the poller's decoder, to the value written."""
    from sisock.servers.modbus.config import PointConfig

    p = PointConfig("x", "holding", 0, typ, **kw)
    assert decode_point(p, encode_registers(p, value)) == pytest.approx(value)
