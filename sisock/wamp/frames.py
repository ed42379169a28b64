"""RawSocket frames read straight into one reusable buffer (sans I/O).

A RawSocket connection carries frames: a 4-byte header (frame type in the
low 3 bits of the first byte, then a 24-bit big-endian length) and the
payload. autobahn's asyncio protocol appends every read to a ``bytes``
buffer and slices each frame out of it, so a 256 KiB message is copied
three to five times before it is decoded. :class:`FrameReader` instead
lends the socket a buffer to read into (``recv_into``, through asyncio's
``BufferedProtocol``): a large frame, once its header is known, is read
straight into a ``bytearray`` of its own, which is handed on as the
payload, so the kernel's copy is the only one before decoding. Small
frames are read many at a time into one reused buffer and handed on as
``bytes``.

It is plain Python, driven by :meth:`FrameReader.get_buffer` and
:meth:`FrameReader.buffer_updated` (the two calls of asyncio's
``BufferedProtocol``), so every way a stream can be cut is unit-tested
without sockets.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["FrameError", "FrameReader", "FRAME_DATA", "FRAME_PING", "FRAME_PONG", "READ_BYTES", "header"]

FRAME_DATA = 0
FRAME_PING = 1
FRAME_PONG = 2

#: Size of the reused buffer: frames up to this size are read many at a
#: time into it and copied out; larger ones get a buffer of their own.
READ_BYTES = 2**16


class FrameError(Exception):
    """The stream is not RawSocket framing we accept (the connection must close)."""


def header(frame_type: int, length: int) -> bytes:
    """The 4-byte RawSocket header of a frame."""
    return bytes([frame_type]) + length.to_bytes(3, "big")


class FrameReader:
    """Cut a RawSocket byte stream into frames, reading large ones in place.

    Parameters
    ----------
    on_frame : callable
        ``on_frame(frame_type, payload)`` for each complete frame, in
        order. ``payload`` is ``bytes`` for a frame of at most
        ``read_bytes``, else the ``bytearray`` the frame was read into
        (the reader keeps no reference to it: the callee may keep it).
    max_length : int
        Largest payload accepted (a larger header raises :class:`FrameError`).
    read_bytes : int
        Size of the reused buffer where headers and small frames are read.

    Notes
    -----
    The reused buffer holds the unread part of the stream at
    ``[start, end)``. Once the header of a frame larger than
    ``read_bytes`` is read, the bytes of that frame already read are
    moved into its own buffer (at most ``read_bytes``) and
    :meth:`get_buffer` offers exactly the rest of it; the next read after
    it starts with the next header.
    """

    def __init__(
        self, on_frame: Callable[[int, bytes | bytearray], None], max_length: int, read_bytes: int = READ_BYTES
    ):
        self.on_frame = on_frame
        self.max_length = max_length
        self.read_bytes = read_bytes
        self._buf = bytearray(read_bytes + 4)
        self._start = 0
        self._end = 0
        self._frame: bytearray | None = None  # a large frame being read in place
        self._frame_type = FRAME_DATA
        self._filled = 0

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next read goes (never empty)."""
        if self._frame is not None:
            return memoryview(self._frame)[self._filled :]
        if self._end == len(self._buf) or self._start > len(self._buf) // 2:
            # what is unread is the start of one small frame: slide it to the front
            rest = self._end - self._start
            self._buf[:rest] = self._buf[self._start : self._end]
            self._start, self._end = 0, rest
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were read into the last buffer: deliver every complete frame.

        Raises
        ------
        FrameError
            A frame type other than data, ping or pong, or a length over
            ``max_length``.
        """
        if self._frame is not None:
            self._filled += nbytes
            if self._filled == len(self._frame):
                frame, self._frame = self._frame, None
                self.on_frame(self._frame_type, frame)
            return
        self._end += nbytes
        buf = self._buf
        while self._end - self._start >= 4:
            start = self._start
            frame_type = buf[start] & 0b111
            if frame_type > FRAME_PONG:
                raise FrameError(f"invalid RawSocket frame type {frame_type}")
            length = int.from_bytes(buf[start + 1 : start + 4], "big")
            if length > self.max_length:
                raise FrameError(f"RawSocket frame of {length} bytes, more than the {self.max_length} accepted")
            if length > self.read_bytes:  # read the rest of it in place
                have = self._end - start - 4  # all of it belongs to this frame (it is incomplete)
                self._frame = bytearray(length)
                self._frame[:have] = memoryview(buf)[start + 4 : self._end]
                self._frame_type, self._filled = frame_type, have
                self._start = self._end = 0
                return
            if self._end - start - 4 < length:
                break
            self._start = start + 4 + length
            self.on_frame(frame_type, bytes(buf[start + 4 : start + 4 + length]))
        if self._start == self._end:
            self._start = self._end = 0
