"""A fair limit on concurrent work, shared by every HTTP client.

:class:`FairLimiter` lets at most ``limit`` tasks run at once. Tasks that
must wait are queued per key (the client's address) and started in turn,
one key after another, so a client with a thousand queued calls delays
another client's single call by at most one call per running slot, not by
the whole queue.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Awaitable, Callable

from twisted.internet.defer import Deferred, succeed


class FairLimiter:
    """At most ``limit`` tasks at once; waiting tasks served round-robin by key.

    Parameters
    ----------
    limit : int
        Tasks that may run at the same time (at least 1).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the limit must be at least 1, got {limit}")
        self.limit = limit
        #: Tasks running now.
        self.running = 0
        #: Tasks started since creation.
        self.started = 0
        self._queues: OrderedDict[str, deque[Deferred]] = OrderedDict()

    @property
    def waiting(self) -> int:
        """Tasks queued now."""
        return sum(len(q) for q in self._queues.values())

    def _acquire(self, key: str) -> Deferred:
        if self.running < self.limit and not self._queues:
            self.running += 1
            return succeed(None)
        queue = self._queues.setdefault(key, deque())

        def cancel(d: Deferred) -> None:
            if d in queue:
                queue.remove(d)
                if not queue and self._queues.get(key) is queue:
                    del self._queues[key]

        d: Deferred = Deferred(canceller=cancel)
        queue.append(d)
        return d

    def _release(self) -> None:
        while self._queues:
            key, queue = next(iter(self._queues.items()))
            d = queue.popleft()
            if queue:
                self._queues.move_to_end(key)  # the next waiting key goes first
            else:
                del self._queues[key]
            d.callback(None)  # the slot passes to this task: running is unchanged
            return
        self.running -= 1

    async def run(self, key: str, task: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``task()`` once a slot is free (in ``key``'s turn); return its result."""
        await self._acquire(key)
        self.started += 1
        try:
            return await task()
        finally:
            self._release()

    def stats(self) -> dict[str, int]:
        """``{"limit", "running", "waiting", "started"}``."""
        return {"limit": self.limit, "running": self.running, "waiting": self.waiting,
                "started": self.started}
