"""Replicated archive nodes through the real router: one name, several processes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import listed, wait_for
from sisock.site import credentials
from sisock.client import connect
from sisock.cli.generate import generate

pytestmark = pytest.mark.timeout(240)

NAME = "rep"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A small generated archive every replica serves."""
    d = tmp_path_factory.mktemp("replica-archive")
    generate(d, days=0.1, fast_hours=0.1, burst_minutes=1, progress=False)
    return d


def replicas(client) -> dict:
    """The hub's ``{name: number of sessions serving it}``."""
    return client.call("consumer.get_replicas")


def callees(stack) -> int:
    """Sessions the router has behind ``rep.get_data`` (asked with the hub's rights)."""
    hub = credentials.read(stack.home)["hub"]
    with connect(user=hub["authid"], secret=hub["secret"]) as c:
        for reg in c.call("wamp.registration.list")["exact"]:
            info = c.call("wamp.registration.get", reg)
            if info and info["uri"] == f"org.simonsobservatory.consumer.{NAME}.get_data":
                return len(c.call("wamp.registration.list_callees", reg))
        return 0


def serve(procs, archive, *extra):
    return procs("replica", "serve", "hdf5", "--name", NAME, "--archive", str(archive), *extra)


def test_replicas_share_one_name(stack, procs, client, archive):
    """Two replicas are listed once with a count; one dying or joining changes nothing for callers."""
    added: list = []
    client.subscribe_uri("consumer.data_node_added", lambda info: added.append(info))
    removed: list = []
    client.subscribe_uri("consumer.data_node_subtracted", lambda info: removed.append(info))
    a = serve(procs, archive, "--replica")
    wait_for(lambda: NAME in listed(client), 30, "first replica never listed:\n" + a.log())
    b = serve(procs, archive, "--replica")
    wait_for(lambda: replicas(client).get(NAME) == 2, 30, "second replica never joined:\n" + b.log())
    assert [n["name"] for n in client.nodes()].count(NAME) == 1
    assert set(client.nodes()[0]) == {"name", "description"}  # 0.x shape unchanged
    assert callees(stack) == 2
    end = time.time() - 10
    reference = client.get_data(NAME, ["az"], end - 300, end, min_stride=1.0)
    assert len(reference.data["az"]) > 100

    def same_answers(n: int) -> bool:
        for _ in range(n):
            r = client.get_data(NAME, ["az"], end - 300, end, min_stride=1.0)
            np.testing.assert_array_equal(r.data["az"], reference.data["az"])
        return True

    assert same_answers(6)
    a.kill()
    wait_for(lambda: replicas(client).get(NAME) == 1, 20, "the hub kept counting a dead replica")
    assert NAME in listed(client) and same_answers(6)
    c = serve(procs, archive, "--replica")
    wait_for(lambda: replicas(client).get(NAME) == 2, 30, "a new replica never joined:\n" + c.log())
    assert same_answers(6) and callees(stack) == 2
    assert [i["name"] for i in added].count(NAME) == 1  # joins and deaths are not announced
    assert NAME not in [i["name"] for i in removed]
    b.stop()
    c.stop()
    wait_for(lambda: NAME not in listed(client), 20, "name kept after its last replica left")
    wait_for(lambda: NAME in [i["name"] for i in removed], 10, "no data_node_subtracted at the end")


def test_single_node_and_replica_do_not_mix(stack, procs, client, archive):
    """A node without --replica cannot join a replicated name, nor a replica a single node's name."""
    a = serve(procs, archive, "--replica")
    wait_for(lambda: NAME in listed(client), 30, "replica never listed:\n" + a.log())
    intruder = serve(procs, archive)
    assert intruder.proc.wait(60) == 3, intruder.log()
    assert replicas(client).get(NAME) == 1
    a.stop()
    wait_for(lambda: NAME not in listed(client), 20, "name kept after its replica left")

    single = serve(procs, archive)
    wait_for(lambda: NAME in listed(client), 30, "single node never listed:\n" + single.log())
    joiner = serve(procs, archive, "--replica")
    assert joiner.proc.wait(60) == 3, joiner.log()
    assert replicas(client).get(NAME) == 1 and callees(stack) == 1
    single.stop()
    wait_for(lambda: NAME not in listed(client), 20, "name kept after the node left")


def test_hub_restart_keeps_replicas(stack, procs, client, archive):
    """A restarted hub recovers a replicated name with its count from the router."""
    a = serve(procs, archive, "--replica")
    b = serve(procs, archive, "--replica")
    wait_for(lambda: replicas(client).get(NAME) == 2, 40, "replicas never joined:\n" + b.log())
    stack.hub.stop()
    stack.hub.start()
    wait_for(
        lambda: replicas(client).get(NAME) == 2 if NAME in listed(client) else False,
        30,
        "restarted hub lost the replicas:\n" + stack.hub.log(),
    )
    c = serve(procs, archive, "--replica")  # the recovered name still takes replicas
    wait_for(lambda: replicas(client).get(NAME) == 3, 30, "no join after hub restart:\n" + c.log())
    for p in (a, b, c):
        p.stop()
    wait_for(lambda: NAME not in listed(client), 20, "name kept after its replicas left")


@pytest.mark.integration
def test_replicas_must_share_an_account(tmp_path, archive):
    """With per-node accounts, a replica under another account cannot join (private router)."""
    import os
    import subprocess
    import sys

    from conftest import REPO, Proc, free_port, wait_port

    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
    env.update(SISOCK_HOME=str(tmp_path), SISOCK_ROUTER_URL=url)
    accounts = {}
    for name in ("archive-a", "archive-b"):
        out = subprocess.run(
            [sys.executable, "-m", "sisock", "credentials", "add", name, "--role", "server", "--home", str(tmp_path)],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        )
        accounts[name] = dict(line.split("=", 1) for line in out.stdout.split())
    started = [Proc("acct-router", ["router", "--loglevel", "warn"], tmp_path, env).start()]
    try:
        wait_port(port, 60, started[0].proc)
        started.append(Proc("acct-hub", ["hub"], tmp_path, env).start())

        def replica(account: str) -> Proc:
            p = Proc(
                f"acct-{account}-{len(started)}",
                ["serve", "hdf5", "--name", NAME, "--archive", str(archive), "--replica"],
                tmp_path,
                {**env, **accounts[account]},
            ).start()
            started.append(p)
            return p

        with connect(url, home=str(tmp_path), timeout=10) as c:
            first = replica("archive-a")
            wait_for(lambda: NAME in listed(c), 40, "replica never listed:\n" + first.log())
            stranger = replica("archive-b")
            assert stranger.proc.wait(60) == 3, stranger.log()
            second = replica("archive-a")
            wait_for(lambda: replicas(c).get(NAME) == 2, 40, "same-account replica refused:\n" + second.log())
    finally:
        for p in reversed(started):
            p.stop()
