"""Router, hub, an archive node and a consumer on four hosts, TLS on; a node's host loses its network.

The hosts are Linux network namespaces joined by veth pairs to a bridge
(``tests/netns.py``), created here and removed afterwards, even on failure.
The router listens on ``wss://10.77.0.1:8080/ws`` (a non-loopback address,
the default port); each other host has only what a site would copy to it:
the CA certificate and its own account (the node's issued with ``sisock
credentials add``). Where namespaces cannot be made, the hosts are the
loopback addresses 127.0.0.2-5 and the outage is the node's process being
frozen (SIGSTOP) instead of its link going down.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netns
from conftest import REPO, Proc, free_port, wait_for
from sisock.site import credentials
from sisock.cli.generate import generate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

ROLES = ["router", "hub", "node", "consumer"]
OUTAGE = 30.0
NAME = "far"


class LoopbackHosts:
    """Fallback: hosts are loopback addresses; an outage freezes the process."""

    def __init__(self, roles):
        self.roles = roles

    def ip(self, role):
        return f"127.0.0.{self.roles.index(role) + 2}"

    def argv(self, role, *argv):
        return list(argv)

    def destroy(self):
        pass


def env_for(home: Path, url: str, ca: Path, user: str, secret: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
    env.update(
        SISOCK_HOME=str(home),
        SISOCK_ROUTER_URL=url,
        SISOCK_TLS_CA=str(ca),
        SISOCK_USER=user,
        SISOCK_SECRET=secret,
        PYTHONPATH=str(REPO),
    )
    return env


def observations(proc: Proc) -> list[dict]:
    """The consumer's JSON lines so far."""
    out = []
    for line in proc.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def test_four_hosts_tls_and_link_loss(tmp_path):
    """Every part on its own address over TLS; a node whose link is down 30 s comes back by itself under its name."""
    why_not = netns.available()
    if why_not is None:
        netns.remove_stale()
        hosts = netns.Hosts(ROLES).create()
    else:
        print(f"\nnetwork namespaces unavailable ({why_not}): loopback addresses instead")
        hosts = LoopbackHosts(ROLES)
    started: list[Proc] = []
    try:
        port = 8080 if isinstance(hosts, netns.Hosts) else free_port(hosts.ip("router"))
        url = f"wss://{hosts.ip('router')}:{port}/ws"
        rhome, hhome, nhome, chome = (tmp_path / r for r in ROLES)
        for d in (rhome, hhome, nhome, chome):
            d.mkdir()
        # on the router's host: issue the node's account (the command a site runs)
        issued = subprocess.run(
            [
                sys.executable,
                "-m",
                "sisock",
                "credentials",
                "add",
                "archive-host",
                "--role",
                "server",
                "--home",
                str(rhome),
                "--env-file",
                str(rhome / "archive-host.env"),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert issued.returncode == 0, issued.stderr
        node_account = dict(line.split("=", 1) for line in (rhome / "archive-host.env").read_text().splitlines())
        router_env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
        router_env.update(SISOCK_HOME=str(rhome), SISOCK_ROUTER_URL=url)
        router = Proc(
            "router",
            hosts.argv("router", sys.executable, "-m", "sisock", "router", "--loglevel", "warn"),
            tmp_path,
            router_env,
            module="",
        )
        started.append(router.start())
        wait_for(
            lambda: (rhome / "tls" / "ca.crt").exists() and credentials.read(rhome),
            60,
            "router wrote no CA or credentials:\n" + router.log(),
        )
        creds = credentials.read(rhome)
        cas = {}
        for role, home in (("hub", hhome), ("node", nhome), ("consumer", chome)):
            cas[role] = home / "ca.crt"  # what a site copies to each machine
            shutil.copy(rhome / "tls" / "ca.crt", cas[role])
        archive = nhome / "archive"
        generate(archive, days=0.05, fast_hours=0.5, burst_minutes=1, progress=False)

        hub = Proc(
            "hub",
            hosts.argv("hub", sys.executable, "-m", "sisock", "hub"),
            tmp_path,
            env_for(hhome, url, cas["hub"], creds["hub"]["authid"], creds["hub"]["secret"]),
            module="",
        )
        started.append(hub.start())
        node = Proc(
            "node",
            hosts.argv(
                "node", sys.executable, "-m", "sisock", "serve", "hdf5", "--name", NAME, "--archive", str(archive)
            ),
            tmp_path,
            env_for(nhome, url, cas["node"], node_account["SISOCK_USER"], node_account["SISOCK_SECRET"]),
            module="",
        )
        started.append(node.start())
        consumer = Proc(
            "consumer",
            hosts.argv("consumer", sys.executable, str(REPO / "tests" / "multihost_consumer.py"), NAME, "300"),
            tmp_path,
            env_for(chome, url, cas["consumer"], creds["consumer"]["authid"], creds["consumer"]["secret"]),
            module="",
        )
        started.append(consumer.start())

        def served_after(t0: float):
            return next(
                (o for o in observations(consumer) if o["t"] > t0 and o.get("listed") and o.get("samples")), None
            )

        wait_for(
            lambda: served_after(0),
            120,
            "consumer never got data from the node:\n"
            + consumer.log()[-1500:]
            + "\nrouter:\n"
            + router.log()[-1500:]
            + "\nnode:\n"
            + node.log()[-1500:],
        )
        assert node.log_path.read_text(errors="replace").count("serving data node") == 1

        t_down = time.time()
        if isinstance(hosts, netns.Hosts):
            hosts.link("node", up=False)
        else:
            os.killpg(node.pid, signal.SIGSTOP)
        time.sleep(OUTAGE)  # the scenario: 30 s without network
        t_up = time.time()
        if isinstance(hosts, netns.Hosts):
            hosts.link("node", up=True)
        else:
            os.killpg(node.pid, signal.SIGCONT)
        back = wait_for(
            lambda: served_after(t_up), 120, "node did not come back after its link returned:\n" + node.log()[-2000:]
        )
        assert node.alive(), "the node must come back by itself, not be restarted"
        joins = node.log_path.read_text(errors="replace").count("serving data node")
        assert joins == 2, node.log()[-2000:]  # one new session, same process, same name
        gone = next(
            (o["t"] for o in observations(consumer) if t_down < o["t"] < t_up and o.get("listed") is False), None
        )
        print(
            f"\nnode {'link down' if isinstance(hosts, netns.Hosts) else 'frozen'} {OUTAGE:.0f} s: "
            + (f"unlisted {gone - t_down:.1f} s after the link went down; " if gone else "")
            + f"served again {back['t'] - t_up:.2f} s after the link came back"
        )
    finally:
        for p in reversed(started):
            if isinstance(hosts, LoopbackHosts):
                try:
                    os.killpg(p.pid, signal.SIGCONT)
                except (ProcessLookupError, AssertionError):
                    pass
            p.stop()
        hosts.destroy()
