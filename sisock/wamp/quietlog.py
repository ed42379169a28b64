"""Reconnection lines in a process's log, at most one per window while the router is away.

autobahn's ``Component`` writes three lines per connection attempt
("trying transport ...", "connecting once ...", "Connection failed: ...").
sisock's processes retry quickly so that they are back soon after a router
restart (the hub every 0.2 s, nodes every 0.5 s): while the router is down
a hub wrote 13 lines a second and each node 6, which over an outage of an
hour is millions of lines for a site of many nodes, burying everything
else.  :class:`QuietReconnects` sits between the log formatter and the
output: the first attempt of an outage is written whole, then one failure
line per :data:`WINDOW` seconds with the number of lines left out since
the last one written.  Every other line passes untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

#: Seconds between two reconnection lines written while the router stays away.
WINDOW = 30.0

#: Seconds without a reconnection line after which the next one starts a new
#: outage (far longer than any process's delay between attempts).
NEW_OUTAGE_GAP = 10.0

#: Text that marks autobahn's reconnection lines.
MARKERS = ("trying transport ", "connecting once using transport", "Connection failed")
#: Of those, the lines that say an attempt failed (the ones kept once per window).
FAILED = "Connection failed"


class QuietReconnects:
    """A text stream that rate-limits autobahn's reconnection lines (see above).

    Parameters
    ----------
    out : text stream
        Where lines go (``sys.stdout`` for a process's log).
    window : float
        Seconds between two reconnection lines written during an outage.
    clock : callable
        Monotonic seconds (tests pass their own).
    """

    #: Tells txaio (``guess_stream_needs_encoding``) that this stream takes text.
    mode = "w"

    def __init__(self, out: TextIO, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.window = window
        self.clock = clock
        self._first_attempt = False  # writing an outage's first attempt whole
        self._quiet_until = -float("inf")
        self._left_out = 0
        self._last_seen = -float("inf")

    def write(self, text: str) -> int:
        """Write ``text`` unless it is a reconnection line to leave out."""
        if not any(m in text for m in MARKERS):
            return self.out.write(text)
        now = self.clock()
        new_outage = now - self._last_seen > NEW_OUTAGE_GAP
        self._last_seen = now
        if new_outage:  # its first attempt is written whole
            if self._left_out:
                self.out.write(f"({self._left_out} reconnection lines of the previous outage were left out)\n")
            self._left_out = 0
            self._first_attempt = True
            self._quiet_until = now + self.window
        if self._first_attempt:
            if FAILED in text:
                self._first_attempt = False
            return self.out.write(text)
        if now < self._quiet_until or FAILED not in text:
            self._left_out += 1
            return len(text)
        note = f" ({self._left_out} reconnection lines left out since the last one written)"
        self._left_out = 0
        self._quiet_until = now + self.window
        body = text.rstrip("\r\n")
        return self.out.write(body + note + text[len(body) :])

    def flush(self) -> None:
        """Flush the underlying stream."""
        self.out.flush()
