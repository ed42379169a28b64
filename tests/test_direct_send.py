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
