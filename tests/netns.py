"""Hosts for tests: Linux network namespaces joined by veth pairs to a bridge.

Each :class:`Hosts` host is a network namespace with one address on a
private /24; a bridge in a namespace of its own joins them, so nothing
touches the machine's own network. Names carry this process id, and
namespaces left behind by a crashed run (whose process is gone) are removed
on the next run.
"""

from __future__ import annotations

import os
import re
import subprocess

PREFIX = "sisk"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command (``ip ...``), raising with its stderr on failure."""
    out = subprocess.run(argv, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip()}")
    return out


def available() -> str | None:
    """None when namespaces, veth pairs and a bridge can be made here, else why not.

    ``SISOCK_TEST_NO_NETNS=1`` answers "disabled" (to exercise the fallback).
    """
    if os.environ.get("SISOCK_TEST_NO_NETNS"):
        return "disabled by SISOCK_TEST_NO_NETNS"
    name = f"{PREFIX}{os.getpid()}probe"
    try:
        out = run("ip", "netns", "add", name, check=False)
    except FileNotFoundError:
        return "the 'ip' command is missing"
    if out.returncode != 0:
        return out.stderr.strip() or "ip netns add failed"
    try:
        for argv in (
            ("link", "add", "br0", "type", "bridge"),
            ("link", "add", "v0", "type", "veth", "peer", "name", "v1"),
            ("link", "set", "v1", "master", "br0"),
        ):
            out = run("ip", "-n", name, *argv, check=False)
            if out.returncode != 0:
                return out.stderr.strip() or f"ip {' '.join(argv)} failed"
        return None
    finally:
        run("ip", "netns", "del", name, check=False)


def remove_stale() -> None:
    """Remove namespaces of earlier runs whose process is gone."""
    out = run("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"^{PREFIX}(\d+)", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            run("ip", "netns", "del", name, check=False)


class Hosts:
    """Namespaces ``<role>`` with addresses ``10.77.0.<i>`` on one bridge.

    Parameters
    ----------
    roles : list of str
        One host per role, in address order (the first gets ``10.77.0.1``).
    """

    SUBNET = "10.77.0"

    def __init__(self, roles: list[str]) -> None:
        self.tag = f"{PREFIX}{os.getpid()}"
        self.roles = roles
        self.switch = f"{self.tag}sw"
        self.made: list[str] = []

    def ns(self, role: str) -> str:
        """Namespace name of ``role``."""
        return f"{self.tag}{role}"

    def ip(self, role: str) -> str:
        """Address of ``role``."""
        return f"{self.SUBNET}.{self.roles.index(role) + 1}"

    def iface(self, role: str) -> str:
        """The host-side interface of ``role`` (inside its namespace)."""
        return f"h{os.getpid() % 100000}{self.roles.index(role)}"

    def create(self) -> "Hosts":
        """Create the switch and every host; undo everything on failure."""
        try:
            run("ip", "netns", "add", self.switch)
            self.made.append(self.switch)
            sw = ("ip", "-n", self.switch)
            run(*sw, "link", "add", "br0", "type", "bridge")
            run(*sw, "link", "set", "br0", "up")
            for i, role in enumerate(self.roles):
                ns = self.ns(role)
                run("ip", "netns", "add", ns)
                self.made.append(ns)
                inner, outer = self.iface(role), f"p{os.getpid() % 100000}{i}"
                run("ip", "-n", ns, "link", "add", inner, "type", "veth", "peer", "name", outer, "netns", self.switch)
                run(*sw, "link", "set", outer, "master", "br0")
                run(*sw, "link", "set", outer, "up")
                run("ip", "-n", ns, "addr", "add", f"{self.ip(role)}/24", "dev", inner)
                run("ip", "-n", ns, "link", "set", inner, "up")
                run("ip", "-n", ns, "link", "set", "lo", "up")
        except Exception:
            self.destroy()
            raise
        return self

    def link(self, role: str, up: bool) -> None:
        """Take ``role``'s network link down or bring it up again."""
        run("ip", "-n", self.ns(role), "link", "set", self.iface(role), "up" if up else "down")
        if up:  # the address's route comes back with the link; make sure
            run(
                "ip",
                "-n",
                self.ns(role),
                "route",
                "replace",
                f"{self.SUBNET}.0/24",
                "dev",
                self.iface(role),
                check=False,
            )

    def argv(self, role: str, *argv: str) -> list[str]:
        """``argv`` run inside ``role``'s namespace."""
        return ["ip", "netns", "exec", self.ns(role), *argv]

    def destroy(self) -> None:
        """Delete every namespace made (their interfaces go with them)."""
        for ns in reversed(self.made):
            run("ip", "netns", "del", ns, check=False)
        self.made.clear()

    def __enter__(self) -> "Hosts":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()
