"""The notebook client's RawSocket receive path (``sisock.wamp.frames``,
``sisock.wamp.rawsocket``), fed byte streams cut in every possible way.

No sockets, no router: a frame reader and a protocol with a fake
transport. The integration tests (``test_streaming.py``, ``test_foundation.py``)
run the same code against the real router.
"""

from __future__ import annotations

import asyncio
import struct

import msgpack
import numpy as np
import pytest
from autobahn.wamp import message

from sisock.wamp.frames import FRAME_DATA, FRAME_PING, FRAME_PONG, FrameError, FrameReader, header
from sisock.wamp.rawsocket import BufferedRawSocketClientProtocol, Component, rawsocket_protocol


def MsgPackSerializer():
    """autobahn's msgpack serializer (imported once the client picked asyncio for txaio)."""
    from autobahn.wamp.serializer import MsgPackSerializer as cls

    return cls()


def JsonSerializer():
    """autobahn's JSON serializer (imported once the client picked asyncio for txaio)."""
    from autobahn.wamp.serializer import JsonSerializer as cls

    return cls()


def frame(payload: bytes, frame_type: int = FRAME_DATA) -> bytes:
    """One RawSocket frame on the wire."""
    return header(frame_type, len(payload)) + payload


def feed(reader: FrameReader, pieces: list[bytes], most: int | None = None) -> None:
    """Push ``pieces`` through ``reader`` as reads would: into its buffers, at most ``most`` bytes a read."""
    for piece in pieces:
        while piece:
            view = reader.get_buffer(-1)
            assert len(view) > 0, "get_buffer must never offer an empty buffer"
            k = min(len(view), len(piece), most or len(piece))
            view[:k] = piece[:k]
            del view
            reader.buffer_updated(k)
            piece = piece[k:]


def collecting(max_length: int = 2**24, read_bytes: int = 64) -> tuple[FrameReader, list]:
    """A reader with a small buffer, and the list of ``(type, bytes)`` it delivers."""
    got: list = []
    reader = FrameReader(lambda t, p: got.append((t, bytes(p))), max_length, read_bytes=read_bytes)
    return reader, got


FRAMES = [
    (FRAME_DATA, b"hello"),
    (FRAME_DATA, b""),
    (FRAME_PING, b"ping!"),
    (FRAME_DATA, bytes(range(256)) * 3),  # bigger than the 64-byte buffer
    (FRAME_PONG, b""),
    (FRAME_DATA, b"x" * 63),
    (FRAME_DATA, b"tail"),
]
STREAM = b"".join(frame(p, t) for t, p in FRAMES)


def test_split_at_every_byte_boundary():
    """A stream cut in two at any byte gives the same frames, in order."""
    for cut in range(len(STREAM) + 1):
        reader, got = collecting()
        feed(reader, [STREAM[:cut], STREAM[cut:]])
        assert got == FRAMES, f"cut at byte {cut}"


def test_split_in_three_at_every_pair_of_boundaries_around_headers():
    """Headers cut in three pieces (every pair of cuts in the first frames) still parse."""
    head = STREAM[:40]
    for a in range(len(head) + 1):
        for b in range(a, len(head) + 1):
            reader, got = collecting()
            feed(reader, [STREAM[:a], STREAM[a:b], STREAM[b:]])
            assert got == FRAMES, (a, b)


def test_one_byte_reads():
    """Reads of one byte at a time."""
    reader, got = collecting()
    feed(reader, [STREAM], most=1)
    assert got == FRAMES


def test_several_frames_in_one_read():
    """Many small frames arriving in one read are all delivered by that read."""
    frames = [(FRAME_DATA, bytes([i]) * i) for i in range(40)]
    reader, got = collecting(read_bytes=4096)
    feed(reader, [b"".join(frame(p, t) for t, p in frames)])
    assert got == frames


def test_frame_bigger_than_the_buffer_is_read_in_place():
    """A frame larger than the buffer is read into a buffer of its own once its header
    is known: the reader then offers exactly the rest of that frame."""
    big = np.random.default_rng(1).bytes(100_000)
    reader, got = collecting(read_bytes=64)
    feed(reader, [header(FRAME_DATA, len(big)) + big[:10]])
    assert len(reader.get_buffer(-1)) == len(big) - 10
    feed(reader, [big[10:] + frame(b"next")])
    assert got == [(FRAME_DATA, big), (FRAME_DATA, b"next")]


def test_payloads_kept_by_the_callee_stay_intact():
    """A payload the callee keeps (a numpy array on a large one, a small one as is)
    is not overwritten by the frames read after it."""
    kept = []
    reader = FrameReader(lambda t, p: kept.append(np.frombuffer(p, dtype=np.uint8)), 2**24, read_bytes=64)
    frames = [b"A" * 50, b"B" * 500, b"C" * 50, b"D" * 500, b"E" * 3]
    feed(reader, [b"".join(frame(p) for p in frames)], most=100)
    assert [bytes(k) for k in kept] == frames


@pytest.mark.parametrize("bad", [header(3, 1) + b"x", header(7, 0), b"\x08\x00\x00\x01z" + b"\x05"])
def test_invalid_frame_type_is_an_error(bad):
    """Frame types other than data, ping, pong (low 3 bits of the first byte) raise FrameError."""
    reader, got = collecting()
    if bad[0] & 0b111 <= FRAME_PONG:  # reserved high bits are ignored, as autobahn does
        feed(reader, [bad[:5]])
        assert got == [(FRAME_DATA, b"z")]
        return
    with pytest.raises(FrameError):
        feed(reader, [bad])
    assert got == []


def test_frame_over_the_limit_is_an_error():
    """A header announcing more than ``max_length`` raises before any payload is read."""
    reader, got = collecting(max_length=1000)
    with pytest.raises(FrameError, match="1001"):
        feed(reader, [header(FRAME_DATA, 1001)])


# -- the asyncio protocol ------------------------------------------------------


class FakeTransport(asyncio.Transport):
    """Records writes and closes; enough for autobahn's transport details."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 8080) if name == "peername" else default

    def write(self, data) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class FakeSession:
    """Collects the WAMP messages the protocol hands on."""

    def __init__(self) -> None:
        self.messages: list = []
        self.opened = False

    def onOpen(self, transport) -> None:
        self.opened = True

    def onMessage(self, msg) -> None:
        self.messages.append(msg)

    def onClose(self, was_clean) -> None:
        pass


class FakeFactory:
    """What the protocol needs of autobahn's client factory."""

    def __init__(self, serializer) -> None:
        self._serializer = serializer
        self.session = FakeSession()
        self._factory = lambda: self.session


def connected(serializer=None) -> tuple[BufferedRawSocketClientProtocol, FakeTransport, FakeFactory]:
    """A protocol past its connection (handshake sent, reply not yet read)."""
    factory = FakeFactory(serializer or MsgPackSerializer())
    proto = BufferedRawSocketClientProtocol()
    proto.factory = factory
    proto._set_max_message_size(2**24)
    transport = FakeTransport()
    proto.connection_made(transport)
    return proto, transport, factory


def push(proto, data: bytes, most: int | None = None) -> None:
    """Bytes arriving on the protocol's connection, as asyncio hands them over
    (until the protocol closes it)."""
    while data and not proto.transport.closed:
        view = proto.get_buffer(-1)
        k = min(len(view), len(data), most or len(data))
        view[:k] = data[:k]
        del view
        proto.buffer_updated(k)
        data = data[k:]


def handshake_reply(serializer_id: int = 2) -> bytes:
    """The router's answer to the handshake: magic byte, length exponent 15, serializer."""
    return bytes([0x7F, 0xF0 | serializer_id, 0, 0])


def result_frame(payload, request: int = 7, serializer=None) -> bytes:
    """A WAMP RESULT message as one RawSocket frame."""
    wire, _ = (serializer or MsgPackSerializer()).serialize(message.Result(request, args=[payload]))
    return frame(wire)


def test_protocol_is_used_by_the_clients_component():
    """The notebook client's Component connects RawSocket with the buffered protocol."""
    assert rawsocket_protocol() is BufferedRawSocketClientProtocol
    assert issubclass(BufferedRawSocketClientProtocol, asyncio.BufferedProtocol)
    from sisock.wamp import client

    assert client.Component is Component


def test_protocol_delivers_messages_cut_anywhere():
    """Handshake and two RESULT messages (one with a 1 MB binary array), in reads of
    every size from 1 byte up, reach the session whole and in order."""
    data = np.arange(125_000, dtype="<f8").tobytes()
    stream = handshake_reply() + result_frame({"data": data}, 1) + result_frame("small", 2)
    for most in (1, 3, 4, 5, 4096, 65536, None):
        proto, transport, factory = connected()
        push(proto, stream[:4] if most == 1 else b"")  # the handshake alone first, then the rest
        push(proto, stream[4:] if most == 1 else stream, most if most != 1 else 7)
        msgs = factory.session.messages
        assert factory.session.opened
        assert [m.request for m in msgs] == [1, 2], most
        assert msgs[0].args[0]["data"] == data and msgs[1].args[0] == "small"
        assert not transport.closed


def test_protocol_with_json_serializer_gets_bytes():
    """A serializer that needs ``bytes`` (JSON) gets them, not a view."""
    proto, transport, factory = connected(JsonSerializer())
    push(proto, handshake_reply(1) + result_frame({"a": [1, 2]}, 3, JsonSerializer()))
    assert factory.session.messages[0].args[0] == {"a": [1, 2]}


def test_protocol_answers_ping_with_pong():
    """A ping frame is answered with a pong echoing its payload; a pong is ignored;
    the messages around them still arrive."""
    proto, transport, factory = connected()
    push(proto, handshake_reply())
    hello_len = len(transport.written)  # the handshake the client sent
    push(proto, frame(b"are you there", FRAME_PING) + frame(b"", FRAME_PONG) + result_frame(1, 9))
    assert bytes(transport.written[hello_len:]) == frame(b"are you there", FRAME_PONG)
    assert [m.request for m in factory.session.messages] == [9]
    assert not transport.closed


def test_protocol_error_closes_and_stops_reading():
    """An invalid frame type closes the connection, and no later frame is delivered."""
    proto, transport, factory = connected()
    push(proto, handshake_reply() + result_frame(1, 1) + header(5, 0) + result_frame(2, 2))
    assert transport.closed
    assert [m.request for m in factory.session.messages] == [1]


def test_bad_handshake_closes():
    """A handshake reply without the magic byte closes the connection; nothing is opened."""
    proto, transport, factory = connected()
    push(proto, b"\x00\xf2\x00\x00" + result_frame(1, 1))
    assert transport.closed and not factory.session.opened


def test_handshake_and_frames_match_autobahn():
    """The handshake the buffered protocol sends is autobahn's (the router sees no change)."""
    proto, transport, _ = connected()
    assert bytes(transport.written) == bytes([0x7F, 0xF2, 0, 0])
    assert struct.unpack("!L", b"\0" + header(FRAME_DATA, 300)[1:])[0] == 300
    assert msgpack.unpackb(result_frame("x")[4:]) == [50, 7, {}, ["x"]]
