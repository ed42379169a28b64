"""The notebook client's RawSocket connection: frames read into one buffer.

:class:`BufferedRawSocketClientProtocol` is autobahn's asyncio
``WampRawSocketClientProtocol`` with its receive path replaced by a
:class:`~sisock.wamp.frames.FrameReader` behind asyncio's
``BufferedProtocol``: the socket reads straight into the buffer a frame is
decoded from, instead of into a fresh ``bytes`` that is then appended to
the previous ones and sliced (three to five copies of every large
message). Handshake, sending, sessions and errors stay autobahn's; the
bytes on the wire are the same, so the router sees no difference. It also
answers a ping frame with its pong (autobahn's asyncio protocol raises).

:class:`Component` is autobahn's asyncio ``Component`` that connects its
RawSocket transports with this protocol. When autobahn no longer has the
hooks the protocol relies on, it keeps autobahn's own
(:func:`rawsocket_protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Iterator

from autobahn.asyncio import component as _component
from autobahn.asyncio.rawsocket import WampRawSocketClientFactory, WampRawSocketClientProtocol

from .frames import FRAME_DATA, FRAME_PING, FRAME_PONG, FrameError, FrameReader, header

__all__ = ["BufferedRawSocketClientProtocol", "Component", "rawsocket_protocol"]

#: What the protocol uses of autobahn's class; without any of them, autobahn's own is used.
_HOOKS = ("_on_handshake_complete", "process_handshake", "stringReceived", "protocol_error", "connection_made")

#: Serializers whose decoder reads a ``bytearray`` as it reads ``bytes``
#: (others get the large frames as ``bytes``, one copy, as from autobahn).
_TAKES_BUFFERS = {"msgpack"}


class BufferedRawSocketClientProtocol(WampRawSocketClientProtocol, asyncio.BufferedProtocol):
    """autobahn's asyncio RawSocket client protocol, receiving through a :class:`FrameReader`."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)  # sends the handshake
        self._handshake = bytearray(4)
        self._got = 0
        self._frames = FrameReader(self._on_frame, self.max_length)
        self._failed = False

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the next read goes: the handshake's 4 bytes, then the frame reader's buffer."""
        if self._failed:  # closing: whatever still arrives is dropped
            return memoryview(bytearray(4096))
        if not self._handshake_done:
            return memoryview(self._handshake)[self._got :]
        return self._frames.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        """Bytes arrived in the last buffer: finish the handshake, or deliver frames."""
        if self._failed:
            return
        if not self._handshake_done:
            self._got += nbytes
            if self._got == 4:
                self._shake_hands()
            return
        try:
            self._frames.buffer_updated(nbytes)
        except FrameError as exc:
            self._failed = True
            self.protocol_error(str(exc))

    def _shake_hands(self) -> None:
        # autobahn's handshake check reads the reply from self._buffer
        from autobahn.asyncio.rawsocket import HandshakeError

        self._buffer = bytes(self._handshake)
        try:
            self.process_handshake()
        except HandshakeError as exc:
            self._failed = True
            self.protocol_error(f"Handshake error : {exc}")
            return
        finally:
            self._buffer = b""
        self._handshake_done = True
        self._on_handshake_complete()

    def _on_frame(self, frame_type: int, payload: bytes | bytearray) -> None:
        if frame_type == FRAME_DATA:
            if isinstance(payload, bytearray):
                serializer = getattr(getattr(self, "_serializer", None), "SERIALIZER_ID", None)
                if serializer not in _TAKES_BUFFERS:
                    payload = bytes(payload)
            self.stringReceived(payload)
        elif frame_type == FRAME_PING:  # the pong echoes the ping's payload
            if self.transport is not None:
                self.transport.write(header(FRAME_PONG, len(payload)) + bytes(payload))
        # a pong answers nothing we sent: ignored


class _Factory(WampRawSocketClientFactory):
    protocol = BufferedRawSocketClientProtocol


def rawsocket_protocol() -> type:
    """The RawSocket client protocol class to use: ours, or autobahn's when its hooks changed."""
    if all(hasattr(WampRawSocketClientProtocol, name) for name in _HOOKS):
        return BufferedRawSocketClientProtocol
    return WampRawSocketClientProtocol


@contextlib.contextmanager
def _factory_class(cls: type) -> Iterator[None]:
    """autobahn builds the transport factory from a module-level name: swap it for one call."""
    before = _component.WampRawSocketClientFactory
    setattr(_component, "WampRawSocketClientFactory", cls)
    try:
        yield
    finally:
        setattr(_component, "WampRawSocketClientFactory", before)


class Component(_component.Component):
    """autobahn's asyncio ``Component`` whose RawSocket transports use :func:`rawsocket_protocol`."""

    def _connect_transport(self, loop, transport, session_factory, done):
        if transport.type != "rawsocket" or rawsocket_protocol() is not BufferedRawSocketClientProtocol:
            return super()._connect_transport(loop, transport, session_factory, done)
        # the factory is made synchronously at the start of the call (same thread, no await)
        with _factory_class(_Factory):
            return super()._connect_transport(loop, transport, session_factory, done)
