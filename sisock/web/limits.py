"""A fair limit on concurrent work, shared by every HTTP client.

:class:`FairLimiter` lets at most ``limit`` tasks run at once. Tasks that
must wait are queued per client (its address) and per request, and
started in turn: one client after another, and within a client one
request after another. A request with a hundred queued calls delays
another request's single call by about one call per client and request
waiting, not by its whole queue.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Awaitable, Callable

from twisted.internet.defer import Deferred


class FairLimiter:
    """At most ``limit`` tasks at once, ``per_request`` of them for one request;
    waiting tasks served in turn.

    A waiting task belongs to a client and a request. A free slot goes to
    the client with the fewest running tasks, and within it to the request
    with the fewest, so a client (or one request) with many queued calls
    cannot make another wait for all of them; and since one request holds
    at most ``per_request`` slots, a few big requests leave slots free for
    others.

    Parameters
    ----------
    limit : int
        Tasks that may run at the same time (at least 1).
    per_request : int, optional
        Tasks of one request that may run at the same time (default: ``limit``).
    """

    def __init__(self, limit: int, per_request: int | None = None) -> None:
        if limit < 1:
            raise ValueError(f"the limit must be at least 1, got {limit}")
        self.limit = limit
        self.per_request = max(1, min(limit, per_request or limit))
        #: Tasks running now.
        self.running = 0
        #: Tasks started since creation.
        self.started = 0
        self._clients: OrderedDict[str, OrderedDict[object, deque[Deferred]]] = OrderedDict()
        self._active: dict[tuple[str, object], int] = {}
        self._client_active: dict[str, int] = {}

    @property
    def waiting(self) -> int:
        """Tasks queued now."""
        return sum(len(q) for reqs in self._clients.values() for q in reqs.values())

    def _enqueue(self, client: str, request: object) -> Deferred:
        requests = self._clients.setdefault(client, OrderedDict())
        queue = requests.setdefault(request, deque())

        def cancel(d: Deferred) -> None:
            if d in queue:
                queue.remove(d)
                if not queue and requests.get(request) is queue:
                    del requests[request]
                if not requests and self._clients.get(client) is requests:
                    del self._clients[client]

        d: Deferred = Deferred(canceller=cancel)
        queue.append(d)
        return d

    def _next(self) -> tuple[tuple[str, object], Deferred] | None:
        """The next waiting task allowed to start, taken off its queue: of the
        client with the fewest running tasks, of its request with the fewest
        (ties: the one waiting longest)."""
        best = None
        for ci, (client, requests) in enumerate(self._clients.items()):
            for ri, request in enumerate(requests):
                active = self._active.get((client, request), 0)
                if request is not None and active >= self.per_request:
                    continue
                rank = (self._client_active.get(client, 0), active, ci, ri)
                if best is None or rank < best[0]:
                    best = (rank, client, request)
        if best is None:
            return None
        _, client, request = best
        requests = self._clients[client]
        queue = requests[request]
        d = queue.popleft()
        if queue:
            requests.move_to_end(request)
        else:
            del requests[request]
        if requests:
            self._clients.move_to_end(client)
        else:
            del self._clients[client]
        return (client, request), d

    def _dispatch(self) -> None:
        while self.running < self.limit:
            picked = self._next()
            if picked is None:
                return
            key, d = picked
            self.running += 1
            self._active[key] = self._active.get(key, 0) + 1
            self._client_active[key[0]] = self._client_active.get(key[0], 0) + 1
            d.callback(None)

    def _release(self, key: tuple[str, object]) -> None:
        self.running -= 1
        for table, k in ((self._active, key), (self._client_active, key[0])):
            left = table.get(k, 1) - 1
            if left > 0:
                table[k] = left
            else:
                table.pop(k, None)
        self._dispatch()

    async def run(self, client: str, task: Callable[[], Awaitable[Any]], request: object = None) -> Any:
        """Run ``task()`` once a slot is free, in the turn of ``client`` and ``request``."""
        d = self._enqueue(client, request)
        self._dispatch()
        await d
        self.started += 1
        try:
            return await task()
        finally:
            self._release((client, request))

    def stats(self) -> dict[str, int]:
        """``{"limit", "per_request", "running", "waiting", "started"}``."""
        return {
            "limit": self.limit,
            "per_request": self.per_request,
            "running": self.running,
            "waiting": self.waiting,
            "started": self.started,
        }
