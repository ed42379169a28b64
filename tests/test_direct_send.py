"""A node's streamed parts go to the kernel without Twisted's joins, in order, whole."""

from __future__ import annotations

import socket
import struct

import pytest

from sisock.wamp.sending import DirectSend

pytestmark = pytest.mark.unit


class _Transport:
    """What :class:`DirectSend` reads of a Twisted TCP transport, writes recorded."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self._tempDataBuffer: list[bytes] = []
        self.dataBuffer = b""
        self.offset = 0
        self.connected = True
        self.disconnecting = False

    def write(self, data: bytes) -> None:
        self._tempDataBuffer.append(bytes(data))


class _Connection:
    """Twisted's own path, recorded."""

    sent: list[bytes] = []

    def sendString(self, string: bytes) -> None:
        type(self).sent.append(string)


def _pair(sndbuf: int) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    a.setblocking(False)
    return a, b


def _drain(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_what_the_kernel_does_not_take_is_queued_in_order():
    """A message larger than the socket buffer: the kernel's share, then the queued rest,
    make exactly the length prefix and the message."""
    a, b = _pair(4096)
    try:
        t = _Transport(a)
        message = bytes(range(256)) * 4096  # 1 MiB
        DirectSend(_Connection(), t)(message)
        got = _drain(b) + b"".join(t._tempDataBuffer)
        assert t._tempDataBuffer, "the socket buffer should not take 1 MiB at once"
        assert got == struct.pack("!I", len(message)) + message
    finally:
        a.close()
        b.close()


def test_queued_data_keeps_twisteds_path():
    """With data already queued (or a small message) Twisted's own sendString sends, so
    nothing overtakes what is queued."""
    a, b = _pair(1 << 20)
    try:
        t = _Transport(a)
        t._tempDataBuffer.append(b"earlier")
        _Connection.sent = []
        DirectSend(_Connection(), t)(b"x" * 100_000)
        t._tempDataBuffer.clear()
        DirectSend(_Connection(), t)(b"small")
        assert _Connection.sent == [b"x" * 100_000, b"small"]
        assert _drain(b) == b""
    finally:
        a.close()
        b.close()


def test_only_plain_tcp_rawsocket_connections_are_changed():
    """A connection that is not RawSocket over a plain TCP transport keeps its sendString."""
    conn = _Connection()
    with socket.socket() as sock:
        DirectSend.install(conn, _Transport(sock))
    assert "sendString" not in vars(conn)


# -- arrays by reference -------------------------------------------------------


def _part(sizes: list[int]) -> tuple[dict, dict]:
    """A streamed-part-like message holding binaries of ``sizes``: by reference, and as bytes."""
    import numpy as np

    from sisock.core.wire import ByReference

    arrays = [np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8) for n in sizes]
    by_ref = {
        "data": {
            f"f{i}": {"__ndarray__": 1, "data": ByReference(memoryview(a)), "n": n}
            for i, (a, n) in enumerate(zip(arrays, sizes))
        },
        "timeline": {"t": {"finalized_until": None, "x": [1.5, "s", True]}},
    }
    plain = {
        "data": {
            f"f{i}": {"__ndarray__": 1, "data": a.tobytes(), "n": n} for i, (a, n) in enumerate(zip(arrays, sizes))
        },
        "timeline": {"t": {"finalized_until": None, "x": [1.5, "s", True]}},
    }
    return by_ref, plain


@pytest.mark.parametrize("sizes", [[0], [1, 255, 256], [65535, 65536], [300_000, 5, 70_000]])
def test_pieces_join_to_what_msgpack_packs(sizes):
    """Packed around its ByReference arrays, a message is byte for byte what msgpack
    (as autobahn calls it) packs with those arrays as bytes, and each array is a
    piece of its own pointing at the caller's memory."""
    import msgpack

    from sisock.wamp.sending import pack_pieces

    by_ref, plain = _part(sizes)
    message = [70, 12345, {"progress": True}, [by_ref]]
    pieces = pack_pieces(message)
    assert b"".join(bytes(p) for p in pieces) == msgpack.packb(
        [70, 12345, {"progress": True}, [plain]], use_bin_type=True
    )
    refs = [v["data"].data for v in by_ref["data"].values() if len(v["data"].data)]
    assert [p for p in pieces if isinstance(p, memoryview)] == refs
    assert all(any(p is r for p in pieces) for r in refs)


def test_pieces_without_references_are_one_packb():
    """A message without ByReference packs into one piece, msgpack's own bytes;
    what msgpack cannot pack still raises TypeError."""
    import msgpack

    from sisock.wamp.sending import pack_pieces

    message = [50, 1, {}, [{"a": [1, 2.5, None, b"xy"]}]]
    assert pack_pieces(message) == [msgpack.packb(message, use_bin_type=True)]
    with pytest.raises(TypeError):
        pack_pieces([object()])


class _WampConnection(_Connection):
    """What :class:`ReferenceSend` uses of autobahn's Twisted RawSocket protocol."""

    _max_len_send = 2**24

    def __init__(self, serializer: str = "msgpack") -> None:
        self._serializer = type("S", (), {"SERIALIZER_ID": serializer})()

    def isOpen(self) -> bool:
        return True

    def send(self, msg) -> None:  # autobahn's path: not expected here
        raise AssertionError("autobahn's send was used")


class _Message:
    """A WAMP message: what ``marshal`` gives."""

    def __init__(self, marshalled) -> None:
        self.marshalled = marshalled

    def marshal(self):
        return self.marshalled


@pytest.mark.parametrize("sndbuf", [4096, 1 << 22])
def test_reference_send_puts_autobahns_bytes_on_the_wire(sndbuf):
    """The frame sent by reference is the length prefix and msgpack's bytes of the
    message, whole and in order, whether the kernel takes it all or queues the rest."""
    import msgpack

    from sisock.wamp.sending import ReferenceSend

    by_ref, plain = _part([300_000, 70_000, 10])
    a, b = _pair(sndbuf)
    try:
        t = _Transport(a)
        conn = _WampConnection()
        conn.sendString = DirectSend(conn, t)
        assert ReferenceSend.install(conn)
        conn.send(_Message([70, 9, {"progress": True}, [by_ref]]))
        got = _drain(b) + b"".join(t._tempDataBuffer)
        expected = msgpack.packb([70, 9, {"progress": True}, [plain]], use_bin_type=True)
        assert got == struct.pack("!I", len(expected)) + expected
    finally:
        a.close()
        b.close()


def test_reference_send_only_on_msgpack_with_direct_send():
    """ReferenceSend is installed only where DirectSend is and the serializer is msgpack."""
    from sisock.wamp.sending import ReferenceSend

    with socket.socket() as sock:
        plain = _WampConnection()
        assert not ReferenceSend.install(plain)  # no DirectSend
        cbor = _WampConnection("cbor")
        cbor.sendString = DirectSend(cbor, _Transport(sock))
        assert not ReferenceSend.install(cbor)
        assert "send" not in vars(plain) and "send" not in vars(cbor)


def test_parts_by_reference_hold_the_results_bytes():
    """``make_part(by_reference=True)`` puts a ByReference of the result's rows in each envelope."""
    import numpy as np

    from sisock.core.protocol import Result
    from sisock.core.wire import ByReference, make_part, split_plan

    r = Result()
    r.add("tl", np.arange(10.0), {"x": np.arange(10, 20, dtype="<i4")})
    ranges, _ = split_plan(r, 40)
    part = make_part(r, ranges[1], by_reference=True)
    x = part["data"]["x"]["data"]
    assert (
        isinstance(x, ByReference)
        and bytes(x.data) == np.arange(10, 20, dtype="<i4")[ranges[1].i0 : ranges[1].i1].tobytes()
    )
    assert bytes(part["timeline"]["tl"]["t"]["data"].data) == np.arange(10.0)[ranges[1].i0 : ranges[1].i1].tobytes()
