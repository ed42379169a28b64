"""File naming and the directory listing of an archive (no h5py here).

Names: ``YYYYMMDD-HHMMSS-<seq>.h5`` (UTC time of the file's first sample,
six-digit sequence number), so that name order is time order.  While a file
is written it carries the suffix ``.open.h5``; a clean close renames it to
``.h5`` (complete, immutable).  A file left ``.open.h5`` by a writer that
died is renamed ``.crashed.h5`` by the next writer: it is never appended to
again, and is served read-only (its last summary rows may be missing).
Every other module asks this one for names (:func:`file_name`,
:func:`parse_name`, :func:`with_state`, :func:`stem_time`).

:class:`Catalog` lists the directory only when its modification time
changes (creating and renaming files changes it), so refreshing before every
query costs one ``stat``.
"""

from __future__ import annotations

import calendar
import os
import re
import time
from typing import NamedTuple

NAME_RE = re.compile(r"^(\d{8}-\d{6})-(\d{6})(\.open|\.crashed)?\.h5$")

OPEN, CRASHED, CLOSED = "open", "crashed", "closed"
_SUFFIX = {OPEN: ".open.h5", CRASHED: ".crashed.h5", CLOSED: ".h5"}
_STATES = {".open": OPEN, ".crashed": CRASHED, None: CLOSED}


def file_name(t_first: float, seq: int, state: str = OPEN) -> str:
    """File name for a file whose first sample is at ``t_first``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(max(0.0, t_first)))
    return f"{stamp}-{seq:06d}{_SUFFIX[state]}"


def parse_name(name: str) -> tuple[int, str, str] | None:
    """``(seq, state, stem)`` of an archive file name, or None."""
    m = NAME_RE.match(name)
    if not m:
        return None
    state = _STATES[m.group(3)]
    return int(m.group(2)), state, f"{m.group(1)}-{m.group(2)}"


def with_state(path: str, state: str) -> str:
    """The path of the same archive file in another state (after a rename)."""
    directory, name = os.path.split(path)
    parsed = parse_name(name)
    if parsed is None:
        raise ValueError(f"{path!r} is not an archive file name")
    return os.path.join(directory, parsed[2] + _SUFFIX[state])


def stem_time(name: str) -> float:
    """UNIX time encoded in an archive file name."""
    return float(calendar.timegm(time.strptime(os.path.basename(name)[:15], "%Y%m%d-%H%M%S")))


class Entry(NamedTuple):
    """One archive file as seen in the directory.

    ``size`` and ``mtime_ns`` come from the listing; they tell whether an
    index entry still describes the file.  ``name`` is the file name (the
    last part of ``path``; :func:`entry` fills it in).  A named tuple: a
    directory of a decade of hourly files lists 87,600 of them.
    """

    seq: int
    state: str
    path: str
    size: int = -1
    mtime_ns: int = -1
    name: str = ""


def entry(seq: int, state: str, path: str, size: int = -1, mtime_ns: int = -1) -> Entry:
    """An :class:`Entry` whose ``name`` is taken from ``path``."""
    return Entry(seq, state, path, size, mtime_ns, os.path.basename(path))


class Catalog:
    """The archive files of a directory, by sequence number.

    Parameters
    ----------
    directory : str
        The archive directory.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._mtime: int | None = None
        self.entries: dict[int, Entry] = {}

    def refresh(self) -> bool:
        """Re-list the directory if it changed; return True if it did."""
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        self.entries = scan(self.directory)
        return True

    def invalidate(self) -> None:
        """Force a re-listing on the next :meth:`refresh`."""
        self._mtime = None


def scan(directory: str) -> dict[int, Entry]:
    """All archive files in ``directory`` with their size and mtime, by sequence number."""
    out: dict[int, Entry] = {}
    try:
        it = os.scandir(directory)
    except FileNotFoundError:
        return out
    match = NAME_RE.match
    states = _STATES
    with it:
        for d in it:
            m = match(d.name)
            if m is None:
                continue
            seq, state = int(m.group(2)), states[m.group(3)]
            try:
                st = d.stat()
            except FileNotFoundError:  # renamed while listing
                continue
            prev = out.get(seq)
            # during a rename both names may briefly be listed: prefer the final one
            if prev is None or prev.state == OPEN:
                out[seq] = Entry(seq, state, d.path, st.st_size, st.st_mtime_ns, d.name)
    return dict(sorted(out.items()))
