"""``sisock set`` and ``sisock audit``: operator writes from the command line.

Both need an operator account (``sisock credentials add NAME --role
operator``), given as ``SISOCK_USER`` / ``SISOCK_SECRET`` or ``--user`` /
``--secret``::

    sisock set modbus_sim setpoint 297.5 --reason "warm-up" [--dry-run]
    sisock audit modbus_sim --since -3600

``set`` exits 0 when the write was applied (or the dry run passed), 1 when
it was written but not verified, 2 when it was refused (the message says
why; nothing was written).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from typing import Any

__all__ = [
    "add_set_arguments",
    "add_audit_arguments",
    "run_set",
    "run_audit",
    "parse_value",
    "parse_time",
    "format_table",
]


def parse_value(text: str) -> bool | int | float:
    """A command-line value: ``true``/``false``, an integer or a number."""
    low = text.strip().lower()
    if low in ("true", "on", "yes"):
        return True
    if low in ("false", "off", "no"):
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"VALUE must be true, false or a number, got {text!r}") from None


def parse_time(text: str) -> float:
    """UNIX seconds, ``<= 0`` for seconds before now, or ISO 8601 (UTC if no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds (<= 0: before now) or an ISO 8601 time, got {text!r}"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def add_set_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sisock set``."""
    parser.add_argument("node", metavar="NODE", help="data node name")
    parser.add_argument("point", metavar="POINT", help="writable point (see its 'points')")
    parser.add_argument("value", metavar="VALUE", type=parse_value, help="new value: a number, true or false")
    parser.add_argument(
        "--dry-run", action="store_true", help="make every check and read the current value; write nothing"
    )
    parser.add_argument("--reason", default="", help="why (kept in the audit log)")
    parser.add_argument(
        "--expected", type=parse_value, default=None, help="write only if the current value is this (compare-and-set)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the outcome (default 30)")


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sisock audit``."""
    parser.add_argument("node", metavar="NODE", help="data node name")
    parser.add_argument(
        "--since",
        type=parse_time,
        default=-86400.0,
        metavar="T",
        help="UNIX seconds, seconds before now (<= 0), or ISO 8601 (default -86400: the last day)",
    )
    parser.add_argument("--until", type=parse_time, default=0.0, metavar="T", help="end of the range (default 0: now)")
    parser.add_argument("--point", default=None, help="only this point")
    parser.add_argument("--caller", default=None, help="only this caller (authid)")


def _connect(args: argparse.Namespace, timeout: float = 30.0):
    from sisock.site.settings import settings_from_args as settings_for
    from sisock.wamp.client import Client

    settings = settings_for(args, None)
    if not (settings.user and settings.secret):
        raise SystemExit(
            f"sisock {args.command}: an operator account is needed: set "
            "SISOCK_USER and SISOCK_SECRET (issued with 'sisock credentials "
            "add NAME --role operator')"
        )
    return Client(settings, timeout=timeout).open()


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    return str(value)


def run_set(args: argparse.Namespace) -> int:
    """Run ``sisock set``."""
    from sisock.wamp.client import ClientError, WriteRefused

    try:
        with _connect(args, args.timeout) as c:
            out = c.set(
                args.node,
                args.point,
                args.value,
                dry_run=args.dry_run,
                reason=args.reason,
                expected=args.expected,
                timeout=args.timeout,
            )
    except WriteRefused as exc:
        print(
            f"sisock set: refused ({exc.kind}): {exc.message}\n  request_id {exc.request_id}; nothing was written",
            file=sys.stderr,
        )
        return 2
    except ClientError as exc:
        print(f"sisock set: {exc}", file=sys.stderr)
        return 2
    print(
        f"{out['status']}: {args.node}.{out['point']} {_show(out['old'])} -> "
        f"{_show(out['requested'])} (read back {_show(out['readback'])}) "
        f"in {1000 * (out['t_done'] - out['t_received']):.0f} ms\n"
        f"  {out['message']}\n  request_id {out['request_id']}"
    )
    return 0 if out["status"] in ("applied", "dry_run_ok") else 1


def format_table(records: list[dict]) -> str:
    """The audit records as a text table, one line each."""
    cols = ("time (UTC)", "caller", "point", "old", "requested", "readback", "status", "dry", "reason")
    rows = []
    for r in records:
        t = dt.datetime.fromtimestamp(r["t"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        rows.append(
            (
                t[:-3],
                r.get("caller_authid") or "-",
                r.get("point") or "-",
                _show(r.get("old")),
                _show(r.get("requested")),
                _show(r.get("readback")),
                r["status"],
                "yes" if r.get("dry_run") else "",
                r.get("reason") or "",
            )
        )
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def run_audit(args: argparse.Namespace) -> int:
    """Run ``sisock audit``."""
    from sisock.wamp.client import ClientError

    try:
        with _connect(args) as c:
            records = c.audit(args.node, args.since, args.until, args.point, args.caller)
    except ClientError as exc:
        print(f"sisock audit: {exc}", file=sys.stderr)
        return 2
    print(format_table(records))
    print(f"({len(records)} record(s))")
    return 0
