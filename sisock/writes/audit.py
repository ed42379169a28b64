"""The durable audit log of operator writes: one SQLite database per node.

Every attempt to change an instrument is a row: who (the caller the router
disclosed), when, which point, the value found before (``old``), the value
asked for, the value read back, the status, the reason the operator gave,
and whether it was a dry run. The log is what a person reads after the
fact ("who moved the set point at 03:12?"), so it is written before any
answer leaves the node:

- the database runs in WAL mode with ``synchronous=FULL``: a committed row
  survives a crash of the process and of the machine;
- a write is recorded twice: its *intent* (status ``intent``) is committed
  before the device is touched, and its outcome replaces the status after;
- an intent that a crash left without an outcome reads as ``unknown``
  (:meth:`AuditLog.query`; opening the log also rewrites such rows left
  by an earlier process, and only one process may have it open for
  writing). Whether the device received that write
  cannot be known from here, so nothing is retried by itself;
- refusals and dry runs are one row each, committed before the refusal or
  the dry-run answer is sent.

Values are stored as JSON text, so numbers, booleans and None round-trip.
The class is thread-safe (one connection behind a lock); it does no other
I/O and knows nothing of WAMP.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sisock.core.errors import SisockError

__all__ = ["AuditLog", "AuditLogBusy", "RECORD_KEYS", "INTENT", "UNKNOWN"]

#: Status of a row whose device write has started and not finished.
INTENT = "intent"
#: What an intent without an outcome reads as (after a crash).
UNKNOWN = "unknown"

#: Keys of one audit record, in order (docs/operating.md, "The audit log").
RECORD_KEYS = (
    "request_id",
    "t",
    "caller_authid",
    "caller_role",
    "point",
    "old",
    "requested",
    "readback",
    "status",
    "reason",
    "dry_run",
    "t_done",
    "message",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id    TEXT,
    t             REAL NOT NULL,
    caller_authid TEXT,
    caller_role   TEXT,
    point         TEXT,
    old           TEXT,
    requested     TEXT,
    readback      TEXT,
    status        TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    dry_run       INTEGER NOT NULL DEFAULT 0,
    t_done        REAL,
    message       TEXT NOT NULL DEFAULT '',
    replays       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS attempts_t ON attempts (t);
CREATE INDEX IF NOT EXISTS attempts_request ON attempts (request_id);
"""


def _dump(value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):  # e.g. bytes: keep what a person can read
        text = json.dumps(repr(value))
    if len(text) > 1000:  # a refused value can be anything; keep the log small
        text = json.dumps(text[:1000] + "...")
    return text


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class AuditLogBusy(SisockError):
    """Another process owns the audit log (another node of the same name?)."""

    kind = "bad_argument"


def _own(path: Path):
    """Hold an exclusive lock on ``<path>.owner`` for this process's life.

    One process writes a node's audit log; without this, a second one
    opening it would mark the first one's write in progress ``unknown``.
    The kernel releases the lock when the process dies, even by ``kill -9``.
    """
    import fcntl

    f = open(path.with_name(path.name + ".owner"), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise AuditLogBusy(
            f"the audit log {path} is in use by another process (another node of the same name?); one process writes it"
        ) from None
    return f


class AuditLog:
    """An append-mostly SQLite audit log of one node's write attempts.

    Parameters
    ----------
    path : str or pathlib.Path
        The database file (created with its directory when missing).
    readonly : bool
        Only read (another process may own it); no recovery of intents.

    Attributes
    ----------
    recovered : int
        Intents left without outcome by an earlier process, marked
        ``unknown`` when this log was opened.
    """

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.recovered = 0
        self._owner = None
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=30.0)
            return
        # who changed what and why is for the node's own account only (0700 / 0600;
        # SQLite gives the -wal and -shm files the database file's mode)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._owner = _own(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        with self._lock:
            cur = self._db.execute(
                "UPDATE attempts SET status=?, message=? WHERE status=?",
                (
                    UNKNOWN,
                    "no outcome was recorded (the node stopped during the write); "
                    "whether the device received it is unknown",
                    INTENT,
                ),
            )
            self.recovered = cur.rowcount

    @classmethod
    def open(cls, path: str | Path) -> "AuditLog":
        """Open (or create) the log at ``path``."""
        return cls(path)

    def close(self) -> None:
        """Close the database (and let another process own it)."""
        with self._lock:
            self._db.close()
            if self._owner is not None:
                self._owner.close()
                self._owner = None

    # -- writing -----------------------------------------------------------
    def record(
        self,
        *,
        request_id: str | None,
        t: float,
        caller_authid: str | None,
        caller_role: str | None,
        point: str | None,
        old: Any,
        requested: Any,
        status: str,
        reason: str = "",
        dry_run: bool = False,
        readback: Any = None,
        message: str = "",
        t_done: float | None = None,
    ) -> int:
        """Append one row and commit it; return its row id.

        ``status`` is :data:`INTENT` for a write about to be sent (then
        :meth:`finish` it), else the final status.
        """
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO attempts (request_id, t, caller_authid, caller_role, point, old, "
                "requested, readback, status, reason, dry_run, t_done, message) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    request_id,
                    t,
                    caller_authid,
                    caller_role,
                    point,
                    _dump(old),
                    _dump(requested),
                    _dump(readback),
                    status,
                    reason or "",
                    int(bool(dry_run)),
                    t_done if t_done is not None else (None if status == INTENT else time.time()),
                    message or "",
                ),
            )
            return int(cur.lastrowid or 0)

    def finish(
        self, row: int, status: str, *, readback: Any = None, message: str = "", t_done: float | None = None
    ) -> None:
        """Record the outcome of the intent ``row`` and commit."""
        with self._lock:
            self._db.execute(
                "UPDATE attempts SET status=?, readback=?, message=?, t_done=? WHERE id=?",
                (status, _dump(readback), message or "", t_done if t_done is not None else time.time(), row),
            )

    def count_replay(self, row: int) -> None:
        """Count one more replay of the request of ``row`` (nothing was written)."""
        with self._lock:
            self._db.execute("UPDATE attempts SET replays = replays + 1 WHERE id=?", (row,))

    # -- reading -----------------------------------------------------------
    def _rows(self, sql: str, args: tuple) -> list[dict]:
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        out = []
        for r in rows:
            d = dict(zip(names, r))
            for k in ("old", "requested", "readback"):
                d[k] = _load(d[k])
            d["dry_run"] = bool(d["dry_run"])
            if d["status"] == INTENT:
                d["status"] = UNKNOWN  # in flight now, or left by a crash: not known
            out.append(d)
        return out

    def find(self, request_id: str) -> dict | None:
        """The first row recorded for ``request_id`` (with its ``id``), or None."""
        rows = self._rows("SELECT * FROM attempts WHERE request_id=? ORDER BY id LIMIT 1", (request_id,))
        return rows[0] if rows else None

    def query(
        self, start: float, end: float, point: str | None = None, caller: str | None = None, limit: int = 10_000
    ) -> list[dict]:
        """Records with ``start <= t < end`` (UNIX seconds), oldest first.

        Parameters
        ----------
        start, end : float
            UNIX seconds.
        point, caller : str, optional
            Only this point / this caller's authid.
        limit : int
            At most this many records (the most recent ones).

        Returns
        -------
        list of dict
            Keys :data:`RECORD_KEYS` (and ``replays``).
        """
        sql = "SELECT * FROM attempts WHERE t >= ? AND t < ?"
        args: list[Any] = [start, end]
        if point is not None:
            sql += " AND point = ?"
            args.append(point)
        if caller is not None:
            sql += " AND caller_authid = ?"
            args.append(caller)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(int(limit))
        rows = self._rows(sql, tuple(args))
        rows.reverse()
        return [{k: r[k] for k in (*RECORD_KEYS, "replays")} for r in rows]

    def last_writes(self) -> dict[str, float]:
        """Point -> time of the last write sent to the device (for ``min_interval``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT point, MAX(t) FROM attempts WHERE dry_run=0 AND status IN "
                "('applied', 'unverified', 'intent', 'unknown') GROUP BY point"
            ).fetchall()
        return {p: float(t) for p, t in rows if p is not None}

    def writes(self, start: float, end: float) -> list[dict]:
        """Writes sent to the device in ``[start, end)`` (for the node's timeline)."""
        rows = self._rows(
            "SELECT * FROM attempts WHERE t >= ? AND t < ? AND dry_run=0 AND status IN "
            "('applied', 'unverified', 'intent', 'unknown') ORDER BY t",
            (start, end),
        )
        return rows
