"""Modbus request planning, decoding and derived expressions.

The end-to-end tests write values into a real pymodbus TCP server (the
simulator, on a free port on 127.0.0.1) and read them back through the
poller; request counts are those the server saw.
"""

from __future__ import annotations

import asyncio
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sisock.servers.modbus.config import parse_config
from sisock.servers.modbus.decode import GroupDecoder, decode_point, plan_requests
from sisock.servers.modbus.expr import ExpressionError, compile_expression
from sisock.servers.modbus.poller import Poller
from sisock.servers.modbus.simulator import Simulator, encode

pytestmark = pytest.mark.timeout(30)


def node(points, derived=(), *, port=1502, interval=0.05, **device) -> object:
    """A one-group NodeConfig over ``points`` (dicts as in the TOML file)."""
    return parse_config(
        {
            "node": {"name": "t"},
            "device": {"host": "127.0.0.1", "port": port, "timeout": 1.0, **device},
            "group": [{"name": "g", "interval": interval, "point": list(points), "derived": list(derived)}],
        }
    )


def first_sample(sim: Simulator, points, derived=(), polls: int = 1, **device):
    """Start ``sim``, poll ``points`` from it until ``polls`` good samples arrived.

    Returns the good samples ``[(t, values), ...]`` and the poller.
    """
    got: list = []

    async def main() -> Poller:
        async with sim:
            cfg = node(points, derived, port=sim.port, **device)
            poller = Poller(cfg, lambda g, t, v: got.append((t, v)) if v["g_ok"][0] else None)
            task = asyncio.create_task(poller.run())
            for _ in range(250):
                if len(got) >= polls:
                    break
                await asyncio.sleep(0.02)
            poller.stop()
            await asyncio.wait_for(task, 5)
            return poller

    poller = asyncio.run(asyncio.wait_for(main(), 20))
    assert len(got) >= polls, "no good sample from the simulator"
    return got, poller


# --------------------------------------------------------------------- planning


def _pts(*specs):
    return [{"name": f"p{i}", "kind": k, "address": a, "type": t} for i, (k, a, t) in enumerate(specs)]


def test_adjacent_points_merge_into_one_read():
    """Contiguous registers of one kind are read with a single request."""
    cfg = node(_pts(("holding", 0, "float32"), ("holding", 2, "uint16"), ("holding", 3, "float64")))
    reqs = plan_requests(cfg.groups[0])
    assert [(r.kind, r.address, r.count) for r in reqs] == [("holding", 0, 7)]


def test_small_gap_is_bridged_large_gap_splits():
    """A gap up to max_gap registers is read through; a larger one starts a new read."""
    cfg = node(_pts(("input", 0, "uint16"), ("input", 17, "uint16"), ("input", 35, "uint16")))
    reqs = plan_requests(cfg.groups[0], max_gap=16)
    # 1..16 is a gap of 16 (bridged); 18..34 is 17 (split)
    assert [(r.address, r.count) for r in reqs] == [(0, 18), (35, 1)]
    assert len(plan_requests(cfg.groups[0], max_gap=0)) == 3
    assert len(plan_requests(cfg.groups[0], max_gap=17)) == 1


def test_register_reads_respect_125_limit():
    """No register read exceeds 125 registers, and none is wasted."""
    cfg = node(_pts(*[("holding", 2 * i, "float32") for i in range(100)]))  # 200 registers
    reqs = plan_requests(cfg.groups[0])
    assert [r.count for r in reqs] == [124, 76]
    assert all(r.count <= 125 for r in reqs)
    assert sum(len(r.points) for r in reqs) == 100


def test_bit_reads_respect_2000_limit_and_kinds_stay_apart():
    """Coils merge up to 2000 bits; kinds never share a read."""
    pts = _pts(
        *[("coil", a, "bool") for a in (0, 1000, 1999, 2000, 2100)], ("discrete", 0, "bool"), ("input", 0, "uint16")
    )
    reqs = plan_requests(node(pts).groups[0], max_gap=1000)
    got = [(r.kind, r.address, r.count) for r in reqs]
    assert got == [("coil", 0, 2000), ("coil", 2000, 101), ("discrete", 0, 1), ("input", 0, 1)]
    assert [r.function_code for r in reqs] == [1, 1, 2, 4]


# --------------------------------------------------------------------- pure decoding

TYPES = {
    "uint16": st.integers(0, 2**16 - 1),
    "int16": st.integers(-(2**15), 2**15 - 1),
    "uint32": st.integers(0, 2**32 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "uint64": st.integers(0, 2**53),
    "int64": st.integers(-(2**53), 2**53),
    "float32": st.floats(width=32, allow_nan=False),
    "float64": st.floats(allow_nan=False),
}


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    typ=st.sampled_from(sorted(TYPES)),
    word=st.sampled_from(["big", "little"]),
    byte=st.sampled_from(["big", "little"]),
)
def test_decode_round_trips_struct_encoding(data, typ, word, byte):
    """numpy decoding inverts struct encoding for every type, word and byte order."""
    value = data.draw(TYPES[typ])
    regs = encode(typ, value, word_order=word, byte_order=byte)
    cfg = node([{"name": "v", "kind": "holding", "address": 7, "type": typ, "word_order": word, "byte_order": byte}])
    got = decode_point(cfg.groups[0].points[0], regs)
    assert got == float(value) or (math.isinf(value) and got == value)


def test_word_order_changes_the_value():
    """The same registers read with the other word order give another value."""
    regs = encode("float32", 1234.5)
    big = node([{"name": "v", "kind": "input", "address": 0, "type": "float32"}])
    little = node([{"name": "v", "kind": "input", "address": 0, "type": "float32", "word_order": "little"}])
    assert decode_point(big.groups[0].points[0], regs) == 1234.5
    assert decode_point(little.groups[0].points[0], regs) != 1234.5


def test_string_strips_nuls_and_spaces_and_bit_bools():
    """Strings stop at the first NUL and lose outer spaces; bool reads its bit."""
    cfg = node(
        [
            {"name": "s", "kind": "input", "address": 0, "type": "string", "length": 4},
            {"name": "w", "kind": "input", "address": 4, "type": "uint16"},
            {"name": "b0", "kind": "input", "address": 4, "type": "bool", "bit": 0},
            {"name": "b15", "kind": "input", "address": 4, "type": "bool", "bit": 15},
        ]
    )
    regs = list(struct.unpack(">4H", b" AB1 \x00xy")) + [0x8000]
    values = GroupDecoder(cfg.groups[0]).decode([regs])
    assert values["s"][0] == "AB1"
    assert values["b0"][0] is np.False_ and values["b15"][0] is np.True_
    assert values["w"][0] == 32768.0
    assert values["g_ok"][0]


# --------------------------------------------------------------------- expressions


def test_expression_vectorised_and_nan_propagates():
    """Expressions work element-wise on arrays, and a NaN input gives NaN."""
    e = compile_expression("sqrt(abs({a} - {b})) * 2 + max({a}, {b}, 0) - -1", {"a", "b"})
    a = np.array([4.0, np.nan, -1.0])
    b = np.array([0.0, 1.0, -10.0])
    out = e({"a": a, "b": b})
    np.testing.assert_allclose(out, [4 + 4 + 1, np.nan, 6 + 0 + 1])
    assert e.references == ("a", "b")


def test_expression_division_by_zero_is_ieee():
    """Division by zero gives inf/nan, not an exception."""
    e = compile_expression("{a} / {b}", {"a", "b"})
    out = e({"a": np.array([1.0, 0.0]), "b": np.array([0.0, 0.0])})
    assert out[0] == np.inf and np.isnan(out[1])


def test_huge_power_does_not_hang():
    """'9 ** 9 ** 9' is evaluated in float64 (inf), not as a Python big integer."""
    assert compile_expression("9 ** 9 ** 9 ** 9", set())({}) == np.inf


@pytest.mark.parametrize(
    "source,needle",
    [
        ("{a}.real", "Attribute"),
        ("{a}.__class__.__bases__", "Attribute"),
        ("__import__('os').system('true')", "__import__"),
        ("eval('1')", "eval"),
        ("open('/etc/passwd')", "open"),
        ("getattr({a}, 'real')", "getattr"),
        ("{a}[0]", "Subscript"),
        ("[{a}]", "List"),
        ("{a} if {a} else 0", "IfExp"),
        ("{a} > 1", "Compare"),
        ("lambda: 1", "Lambda"),
        ("a + 1", "unknown name 'a'"),
        ("'text'", "only numbers"),
        ("True", "only numbers"),
        ("1j", "only numbers"),
        ("abs(x={a})", "positional"),
        ("abs(*[{a}])", "positional"),
        ("sqrt({a}, {a})", "takes 1"),
        ("{a} // 2", "FloorDiv"),
        ("{a} % 2", "Mod"),
        ("~{a}", "Invert"),
        ("({a} := 1)", "NamedExpr"),
        ("{a} -", "syntax"),
        ("{b c}", "bad reference"),
        ("{a", "braces"),
        ("{nope}", "not a known point"),
        ("_sisock_ref_a", "may not contain"),
        ("x" * 1001, "limit"),
    ],
)
def test_expression_rejects_unsafe_or_bad_input(source, needle):
    """Anything beyond arithmetic on references and whitelisted functions is refused."""
    with pytest.raises(ExpressionError) as info:
        compile_expression(source, {"a"})
    assert needle in str(info.value)


# --------------------------------------------------------------------- against a server

ALL_TYPES = {
    "uint16": 0xFEDC,
    "int16": -12345,
    "uint32": 0xDEADBEEF,
    "int32": -123456789,
    "float32": -1234.5,
    "uint64": 2**53 - 12345,
    "int64": -(2**52) + 7,
    "float64": -1.2345678901234e-5,
}


def test_every_type_and_order_from_a_real_server():
    """Values written into the server come back exactly, for every type/word/byte order."""
    sim = Simulator(port=0, signals=False, size=512)
    points, expect, addr = [], {}, 0
    for typ, value in ALL_TYPES.items():
        for word in ("big", "little"):
            for byte in ("big", "little"):
                name = f"{typ}_{word[0]}{byte[0]}"
                regs = encode(typ, value, word_order=word, byte_order=byte)
                points.append(
                    {
                        "name": name,
                        "kind": "holding",
                        "address": addr,
                        "type": typ,
                        "word_order": word,
                        "byte_order": byte,
                    }
                )
                sim.set_registers("holding", addr, regs)
                expect[name] = float(value)
                addr += len(regs)
    sim.set_registers("input", 0, encode("string", "SN-42", length=4))
    sim.set_registers("input", 4, encode("string", "LE", byte_order="little"))
    sim.set_registers("input", 5, [0b1010])
    sim.set_bits("coil", 3, [True, False, True])
    sim.set_bits("discrete", 100, [True])
    points += [
        {"name": "serial", "kind": "input", "address": 0, "type": "string", "length": 4},
        {"name": "le_text", "kind": "input", "address": 4, "type": "string", "length": 1, "byte_order": "little"},
        {"name": "bit1", "kind": "input", "address": 5, "type": "bool", "bit": 1},
        {"name": "bit2", "kind": "input", "address": 5, "type": "bool", "bit": 2},
        {"name": "c3", "kind": "coil", "address": 3},
        {"name": "c4", "kind": "coil", "address": 4},
        {"name": "c5", "kind": "coil", "address": 5},
        {"name": "d100", "kind": "discrete", "address": 100},
    ]
    got, _ = first_sample(sim, points)
    _t, values = got[0]
    for name, want in expect.items():
        assert values[name].dtype == np.float64
        assert values[name][0] == want, name
    assert values["serial"][0] == "SN-42"
    assert values["le_text"][0] == "LE"
    assert (values["bit1"][0], values["bit2"][0]) == (True, False)
    assert (values["c3"][0], values["c4"][0], values["c5"][0]) == (True, False, True)
    assert values["d100"][0]


def test_scale_and_offset_from_a_real_server():
    """Numeric points report scale * raw + offset; derived points use the scaled values."""
    sim = Simulator(port=0, signals=False, size=64)
    sim.set_registers("input", 0, encode("int16", -500))
    sim.set_registers("input", 1, encode("uint32", 1000))
    sim.set_registers("input", 3, encode("float32", 2.5))
    points = [
        {"name": "t", "kind": "input", "address": 0, "type": "int16", "scale": 0.01, "offset": 273.15},
        {"name": "n", "kind": "input", "address": 1, "type": "uint32", "scale": 2, "offset": -1},
        {"name": "f", "kind": "input", "address": 3, "type": "float32", "scale": -4},
    ]
    derived = [{"name": "d", "expr": "{t} - {n} / {f}"}]
    got, _ = first_sample(sim, points, derived)
    v = got[0][1]
    assert v["t"][0] == pytest.approx(268.15, abs=1e-12)
    assert v["n"][0] == 1999.0
    assert v["f"][0] == -10.0
    assert v["d"][0] == pytest.approx(268.15 + 199.9)


def test_server_sees_the_planned_number_of_requests():
    """Merged reads: the server receives exactly the planned requests, no more."""
    sim = Simulator(port=0, signals=False, size=512)
    points = _pts(
        ("holding", 0, "float32"),
        ("holding", 2, "uint16"),
        ("holding", 10, "int32"),
        ("holding", 200, "uint16"),
        ("input", 5, "float64"),
        ("coil", 0, "bool"),
        ("coil", 7, "bool"),
        ("discrete", 3, "bool"),
    )
    polls = 5
    got, poller = first_sample(sim, points, polls=polls)
    expected = [(r.function_code, r.address, r.count) for r in poller.decoders["g"].requests]
    assert expected == [(1, 0, 8), (2, 3, 1), (3, 0, 12), (3, 200, 1), (4, 5, 4)]
    n = poller.stats["g"].polls
    assert n >= polls
    # each poll issued each planned request once, in order (a poll cut short
    # by stop() may have sent part of its requests)
    log = list(sim.request_log)
    assert len(expected) * n <= len(log) < len(expected) * (n + 1)
    assert log == [expected[i % len(expected)] for i in range(len(log))]
    assert poller.stats["g"].requests >= len(log)
