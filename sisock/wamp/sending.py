"""How a node's streamed reply reaches the socket: reads overlapped with sends,
flow control, and sends that skip Twisted's buffer joins.

Twisted only (no autobahn), so these pieces are unit-tested with plain
sockets. :class:`sisock.wamp.service.NodeService` uses them for every
streamed ``get_data`` reply.
"""

from __future__ import annotations

import struct

from twisted.internet import threads
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from sisock.core.protocol import Result

__all__ = ["Reading", "DirectSend", "WriteGate"]


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
