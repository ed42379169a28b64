"""How a node's streamed reply reaches the socket: reads overlapped with sends,
flow control, and sends that skip Twisted's buffer joins and msgpack's
copies of the arrays.

Twisted only (no autobahn), so these pieces are unit-tested with plain
sockets. :class:`sisock.wamp.service.NodeService` uses them for every
streamed ``get_data`` reply.
"""

from __future__ import annotations

import os
import struct

from twisted.internet import threads
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from sisock.core.protocol import Result
from sisock.core.wire import ByReference

__all__ = ["Reading", "DirectSend", "ReferenceSend", "WriteGate", "pack_pieces"]


class Reading:
    """Reads a progressive result in one worker-thread task while the reactor sends.

    The thread reads every remaining step in a row; the reactor is woken
    (``callFromThread``) only while it waits for rows not read yet, so a
    fetch costs a few thread hand-offs rather than one per step.
    ``in_thread`` runs the task (default: the reactor's thread pool; a node
    passes its own, :meth:`sisock.wamp.service.NodeService.in_thread`).
    """

    def __init__(self, result: Result, in_thread=None) -> None:
        from twisted.internet import reactor

        self.result = result
        self._reactor = reactor
        self._waiter: Deferred | None = None
        self._stopped = False
        self._error: BaseException | None = None
        self._done: Deferred | None = None
        if result.pending is not None:
            self._done = (in_thread or threads.deferToThread)(self._read_all)
            self._done.addBoth(self._finished)

    def _read_all(self) -> None:
        """Worker thread: read step after step; wake the reactor if it waits."""
        while not self._stopped and self.result.step():
            if self._waiter is not None:
                self._reactor.callFromThread(self._wake)

    def _finished(self, outcome) -> None:
        if isinstance(outcome, Failure):
            self._error = outcome.value
        self._done = None
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)

    async def _wait_for(self, ready) -> None:
        while not ready():
            if self._error is not None:
                raise self._error
            if self._done is None:  # nothing more will come
                return
            self._waiter = Deferred()
            if ready():  # the reader may have finished the step just before
                self._waiter = None
                return
            await self._waiter

    async def until(self, timeline: str, rows: int) -> None:
        """Wait until the first ``rows`` rows of ``timeline`` are in place."""
        await self._wait_for(lambda: self.result.pending is None or self.result.rows_ready(timeline) >= rows)

    async def until_complete(self) -> None:
        """Wait until every row is in place."""
        await self._wait_for(lambda: self.result.pending is None)
        if self._error is not None:
            raise self._error

    async def stop(self) -> None:
        """Stop reading (the stream ended or failed); wait for the step under way."""
        self._stopped = True
        if self._done is not None:
            done: Deferred = Deferred()
            self._done.addBoth(lambda r: done.callback(None) or r)
            await done


class DirectSend:
    """``sendString`` of a RawSocket connection over plain TCP that writes to the kernel itself.

    Twisted's ``Int32StringReceiver.sendString`` joins the 4-byte length
    prefix to the message (a copy of every part), the transport's write
    buffer joins what is queued before sending (another copy) and hands the
    kernel at most 128 KiB per reactor turn. When nothing is queued, this
    sends prefix and message with one ``sendmsg`` (scatter-gather, no copy)
    and queues only what the kernel did not take, so ordering and Twisted's
    flow control (:class:`WriteGate`) are unchanged. TLS and WebSocket
    connections keep Twisted's path.
    """

    def __init__(self, connection, transport) -> None:
        self.connection = connection
        self.transport = transport
        self.socket = transport.socket

    @classmethod
    def install(cls, connection, transport) -> None:
        """Use direct sends on ``connection`` when it is RawSocket over a plain TCP socket."""
        from twisted.internet.tcp import Connection
        from twisted.protocols.basic import Int32StringReceiver

        if (
            isinstance(connection, Int32StringReceiver)
            and isinstance(transport, Connection)
            and not getattr(transport, "TLS", False)
            and hasattr(transport, "socket")
            and "sendString" not in vars(connection)
        ):
            connection.sendString = cls(connection, transport)

    def __call__(self, string: bytes) -> None:
        t = self.transport
        if (
            t._tempDataBuffer
            or len(t.dataBuffer) > t.offset
            or not t.connected
            or t.disconnecting
            or len(string) < 65536
        ):
            return type(self.connection).sendString(self.connection, string)
        head = struct.pack("!I", len(string))
        try:
            sent = self.socket.sendmsg([head, string])
        except BlockingIOError:
            sent = 0
        except OSError:  # let Twisted meet the error and close the connection its way
            return type(self.connection).sendString(self.connection, string)
        if sent < 4:
            t.write(head[sent:])
            t.write(string)
        elif sent < 4 + len(string):
            t.write(string[sent - 4 :])

    def send_pieces(self, pieces: list) -> None:
        """Send one message made of ``pieces`` (bytes-like), as one length-prefixed frame."""
        size = sum(len(p) for p in pieces)
        t = self.transport
        if t._tempDataBuffer or len(t.dataBuffer) > t.offset or not t.connected or t.disconnecting:
            return type(self.connection).sendString(self.connection, b"".join(pieces))
        buffers = [struct.pack("!I", size), *pieces]
        try:
            sent = self.socket.sendmsg(buffers)
        except BlockingIOError:
            sent = 0
        except OSError:  # let Twisted meet the error and close the connection its way
            return type(self.connection).sendString(self.connection, b"".join(pieces))
        for b in buffers:  # queue what the kernel did not take, in order
            if sent >= len(b):
                sent -= len(b)
                continue
            t.write(bytes(b[sent:]))
            sent = 0


#: Packed in place of each :class:`ByReference` until the pieces are cut
#: apart (random, so no real bytes of a message match it).
_MARK = os.urandom(16)
_PACKED_MARK = b"\xc4\x10" + _MARK


def _bin_header(n: int) -> bytes:
    """msgpack's header of a binary of ``n`` bytes (bin 8, 16 or 32, as msgpack picks)."""
    if n < 2**8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 2**16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def pack_pieces(obj) -> list:
    """msgpack of ``obj`` as autobahn packs it, cut around its :class:`ByReference` bytes.

    Returns
    -------
    list of bytes-like
        Joined, they are exactly ``msgpack.packb(obj, use_bin_type=True)``
        with each :class:`ByReference` packed as the binary it holds; each
        such binary is a piece of its own (the caller's memory, not a copy).
    """
    import msgpack

    refs: list[memoryview] = []

    def mark(o):
        if isinstance(o, ByReference):
            refs.append(o.data)
            return _MARK
        raise TypeError(f"can not serialize {type(o).__name__!r} object")

    packed = msgpack.packb(obj, use_bin_type=True, default=mark)
    cut = packed.split(_PACKED_MARK)
    if len(cut) != len(refs) + 1:  # the mark met real bytes (never, short of a 2**-128 chance)
        return [
            msgpack.packb(obj, use_bin_type=True, default=lambda o: o.data if isinstance(o, ByReference) else mark(o))
        ]
    pieces: list = [cut[0]]
    for data, after in zip(refs, cut[1:]):
        pieces += [_bin_header(len(data)), data, after]
    return [p for p in pieces if len(p)]


class ReferenceSend:
    """``send`` of a msgpack RawSocket connection that writes large arrays by reference.

    autobahn packs a message with ``msgpack.packb``, which copies every
    binary into its buffer and that buffer into a new ``bytes`` (two copies
    of each part). A part whose arrays are :class:`ByReference` is packed
    here instead, around them (:func:`pack_pieces`), and handed to the
    kernel with the arrays where they lie (:meth:`DirectSend.send_pieces`).
    The bytes on the wire are the same. Messages without such arrays take
    autobahn's path unchanged.
    """

    def __init__(self, connection, direct: DirectSend) -> None:
        self.connection = connection
        self.direct = direct

    @classmethod
    def install(cls, connection) -> bool:
        """Send by reference on ``connection`` when it sends through :class:`DirectSend`
        and speaks msgpack (one message per frame); True when installed."""
        if isinstance(getattr(connection, "__dict__", {}).get("send"), cls):
            return True
        direct = getattr(connection, "__dict__", {}).get("sendString")
        serializer = getattr(connection, "_serializer", None)
        if not isinstance(direct, DirectSend) or getattr(serializer, "SERIALIZER_ID", None) != "msgpack":
            return False
        connection.send = cls(connection, direct)
        return True

    def __call__(self, msg) -> None:
        from autobahn.exception import PayloadExceededError
        from autobahn.wamp.exception import SerializationError, TransportLost

        conn = self.connection
        if not conn.isOpen():
            raise TransportLost()
        try:
            pieces = pack_pieces(msg.marshal())
        except Exception as exc:  # as autobahn reports its own packing errors
            raise SerializationError(f"WampRawSocketProtocol: unable to serialize WAMP application payload ({exc})")
        size = sum(len(p) for p in pieces)
        limit = getattr(conn, "_max_len_send", None)
        if limit and 0 < limit < size:
            raise PayloadExceededError(
                f"tried to send RawSocket message with size {size} exceeding payload limit of {limit} octets"
            )
        if len(pieces) == 1:  # nothing by reference: as autobahn sends it
            conn.sendString(pieces[0])
        else:
            self.direct.send_pieces(pieces)


class WriteGate:
    """Twisted push producer telling streams when a connection can take more.

    Twisted pauses a registered producer when the connection's write buffer
    holds more than its ``bufferSize`` and resumes it once the buffer has
    been handed to the kernel. Streams wait on :meth:`wait` between parts.
    """

    def __init__(self, transport) -> None:
        self.transport = transport
        self.paused = False
        self._waiting: list[Deferred] = []
        transport.registerProducer(self, True)

    def wait(self) -> Deferred:
        """A Deferred that fires when the connection takes more data."""
        if not self.paused:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def stopProducing(self) -> None:
        # connection closing: release the streams (their next send fails)
        self.resumeProducing()
