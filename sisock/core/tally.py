"""Say a repeated thing once per interval, with how many times it happened meanwhile.

Refusals an attacker can repeat at will (a session over its limit of
names publishing under new ones: 10,000 a second from one client) must not
each write a log line or a traceback: the logs would fill the disk and bury
everything else.  :class:`Tally` tells the caller when the next occurrence
is worth saying, and how many were left unsaid since the last one.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Tally:
    """Occurrences of one kind of event, said at most once per ``seconds``.

    Parameters
    ----------
    seconds : float
        The shortest time between two occurrences said.
    clock : callable
        Monotonic seconds (tests pass their own).
    """

    def __init__(self, seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._last: float | None = None
        self._unsaid = 0

    def due(self) -> int | None:
        """Count one occurrence: the number left unsaid before it if it is to be said now, else None."""
        now = self.clock()
        if self._last is not None and now - self._last < self.seconds:
            self._unsaid += 1
            return None
        unsaid, self._unsaid, self._last = self._unsaid, 0, now
        return unsaid
