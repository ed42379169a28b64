"""Site-issued credentials: ``sisock credentials add|list|remove``.

Beside the three generated role accounts (``credentials.json``), a site
issues one account per machine or per data node, so a stolen secret is
revoked alone and replicas can be told apart from other nodes (a replicated
name only accepts replicas running under the authid of its first replica).
Accounts live in ``$SISOCK_HOME/users.json`` (mode 0600) on the router's
machine as ``{authid: {"role", "secret"}}``; ``sisock router`` adds them to
the WAMP-CRA users it renders, so restart the router after a change.
Role ``operator`` is for people who may change an instrument: issue one
account per person, so the audit log of every node names who wrote.

``add`` prints the new secret once, as ``SISOCK_USER=`` / ``SISOCK_SECRET=``
lines for an environment file on the node's machine (or writes that file,
mode 0600, with ``--env-file``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from sisock.core.protocol import NAME_PATTERN

FILENAME = "users.json"
ROLES = ("server", "consumer", "hub", "operator")
#: Authids of the generated role accounts, which an issued account may not shadow.
RESERVED = ("hub", "server", "consumer", "authorizer")


def path(home: Path) -> Path:
    """The accounts file inside ``home``."""
    return Path(home) / FILENAME


def read(home: Path) -> dict[str, dict]:
    """``{authid: {"role", "secret"}}`` (empty when no account was issued)."""
    try:
        return json.loads(path(home).read_text())
    except FileNotFoundError:
        return {}


def _write_private(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, target)


def add(home: Path, authid: str, role: str) -> str:
    """Issue an account; return its secret.

    Raises
    ------
    ValueError
        For a bad or taken authid, or an unknown role.
    """
    if not isinstance(authid, str) or not NAME_PATTERN.match(authid) or len(authid) > 64:
        raise ValueError(f"NAME {authid!r} must be 1-64 letters, digits, '_' or '-'")
    if authid in RESERVED:
        raise ValueError(f"NAME {authid!r} is reserved for the generated role accounts")
    if role not in ROLES:
        raise ValueError(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    users = read(home)
    if authid in users:
        raise ValueError(f"an account {authid!r} exists already: remove it first to re-issue")
    secret = secrets.token_urlsafe(24)
    users[authid] = {"role": role, "secret": secret}
    _write_private(path(home), json.dumps(users, indent=2))
    return secret


def remove(home: Path, authid: str) -> bool:
    """Revoke an account; False if there was none."""
    users = read(home)
    if users.pop(authid, None) is None:
        return False
    _write_private(path(home), json.dumps(users, indent=2))
    return True


def wampcra_users(home: Path) -> dict[str, dict]:
    """The issued accounts as Crossbar static WAMP-CRA users."""
    return {authid: {"secret": u["secret"], "role": u["role"]} for authid, u in read(home).items()}


def add_wampcra_users(config: object, home: Path) -> None:
    """Add the issued accounts to every static WAMP-CRA user list in a router config.

    Walks the whole config, so every transport (WebSocket, RawSocket, or
    both inside a ``universal`` transport) accepts them.
    """
    users = wampcra_users(home)
    if users:
        _add_users(config, users)


def _add_users(config: object, users: dict) -> None:
    if isinstance(config, dict):
        auth = config.get("auth")
        wampcra = auth.get("wampcra") if isinstance(auth, dict) else None
        if isinstance(wampcra, dict) and isinstance(wampcra.get("users"), dict):
            wampcra["users"].update(users)
        for value in config.values():
            _add_users(value, users)
    elif isinstance(config, list):
        for value in config:
            _add_users(value, users)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sisock credentials``."""
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", help="SISOCK_HOME of the router (SISOCK_HOME, default ~/.config/sisock)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = sub.add_parser("add", parents=[home], help="issue an account and print its secret once")
    a.add_argument("name", metavar="NAME", help="the authid (e.g. the node's host or name)")
    a.add_argument("--role", required=True, choices=ROLES, help="its role")
    a.add_argument("--env-file", type=Path, help="write SISOCK_USER/SISOCK_SECRET there (mode 0600) instead of stdout")
    sub.add_parser("list", parents=[home], help="the issued accounts and roles (no secrets)")
    r = sub.add_parser("remove", parents=[home], help="revoke an account")
    r.add_argument("name", metavar="NAME")


def run(args: argparse.Namespace) -> int:
    """Run ``sisock credentials ACTION``."""
    home = Path(args.home or os.environ.get("SISOCK_HOME") or "~/.config/sisock").expanduser()
    if args.action == "list":
        for authid, u in sorted(read(home).items()):
            print(f"{authid}\t{u['role']}")
        return 0
    if args.action == "remove":
        if not remove(home, args.name):
            print(f"sisock credentials: no account {args.name!r} in {path(home)}", file=sys.stderr)
            return 1
        print(f"removed {args.name!r}; restart 'sisock router' to apply", file=sys.stderr)
        return 0
    try:
        secret = add(home, args.name, args.role)
    except ValueError as exc:
        print(f"sisock credentials: {exc}", file=sys.stderr)
        return 2
    text = f"SISOCK_USER={args.name}\nSISOCK_SECRET={secret}\n"
    if args.env_file:
        _write_private(args.env_file, text)
        print(f"wrote {args.env_file}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    print(f"issued {args.name!r} (role {args.role}); restart 'sisock router' to apply", file=sys.stderr)
    return 0
