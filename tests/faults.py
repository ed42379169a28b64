"""Fault scenarios shared by tests/test_faults.py (small) and benchmarks/bench_faults.py (full).

Each function runs real processes, stops by itself within its bounds and
returns the figures it measured; the callers assert on them (tests) or print
them (benchmark).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from conftest import free_port, wait_port
from privstack import PrivateStack
from sisock.archive.reader import ArchiveReader
from sisock.servers.modbus.server import example_config

NODES = ("weather_f", "sensors_f", "archive_f", "modbus_f")


def wait_until(predicate, timeout: float, interval: float = 0.05):
    """Poll ``predicate`` until truthy (returned) or ``timeout`` (returns None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(interval)
    return None


def modbus_config(path: Path, port: int, name: str) -> Path:
    """The example Modbus config pointed at a simulator on ``port``, node ``name``."""
    path.write_text(example_config(port).replace('name = "modbus_sim"', f'name = "{name}"', 1))
    return path


def full_stack(root: Path) -> PrivateStack:
    """A private stack with a hub and one node of every kind, all listed."""
    from sisock.cli.generate import generate

    s = PrivateStack(root)
    s.start_router()
    s.start("hub", "hub")
    arch = root / "archive"
    generate(arch, days=0.05, fast_hours=0.02, burst_minutes=0.2)
    port = free_port()
    sim = s.start("sim", "sim", "modbus", "--port", str(port))
    wait_port(port, 30, sim.proc)
    cfg = modbus_config(root / "modbus.toml", port, "modbus_f")
    s.start("weather", "serve", "weather", "--name", "weather_f")
    s.start("sensors", "serve", "sensors", "--name", "sensors_f", "--interval", "0.5")
    s.start("hdf5", "serve", "hdf5", "--name", "archive_f", "--archive", str(arch))
    s.start("modbus", "serve", "modbus", "--config", str(cfg), "--archive", str(root / "modbus-archive"))
    return s


def serving(client, nodes=NODES) -> bool:
    """True when the hub lists every node and each answers get_fields."""
    listed = {n["name"] for n in client.nodes()}
    if not set(nodes) <= listed:
        return False
    for n in nodes:
        client.fields(n, -600, 0)
    return True


def router_restarts(root: Path, restarts: int = 5, limit: float = 60.0) -> dict:
    """``kill -9`` the router's process group and restart it ``restarts`` times.

    One notebook client stays connected throughout (the same object) and is
    subscribed to the sensors node's live topic. For each restart measures
    the seconds from the router accepting connections again until the hub
    lists every node and each answers the client (``rejoin``), and until a
    live sample arrives through the resumed subscription (``live``).
    """
    s = full_stack(root)
    figures: dict = {"rejoin": [], "live": [], "router_boot": [], "waited_call": []}
    try:
        with s.connect(timeout=20) as c:
            if not wait_until(lambda: serving(c), limit):
                raise AssertionError("stack never served:\n" + "\n".join(p.log()[-1500:] for p in s.procs))
            got: list[float] = []
            c.subscribe("sensors_f", lambda r: got.append(time.monotonic()))
            if not wait_until(lambda: got, 20):
                raise AssertionError("no live sample before the restarts")
            for _ in range(restarts):
                s.kill_router()
                waited: dict = {}

                def call_while_down():  # a call made during the outage waits for the rejoin
                    t0 = time.monotonic()
                    try:
                        waited["nodes"] = c.call("consumer.get_data_node", timeout=limit)
                    except Exception as exc:  # reported by the caller
                        waited["error"] = repr(exc)
                    waited["seconds"] = time.monotonic() - t0

                th = threading.Thread(target=call_while_down, daemon=True)
                th.start()
                figures["router_boot"].append(s.start_router())
                t_up = time.monotonic()
                if not wait_until(lambda: serving(c), limit):
                    raise AssertionError(f"not serving {limit} s after restart {len(figures['rejoin']) + 1}")
                figures["rejoin"].append(time.monotonic() - t_up)
                if not wait_until(lambda: got and got[-1] > t_up, limit):
                    raise AssertionError("live subscription did not resume")
                figures["live"].append(got[-1] - t_up)
                th.join(limit)
                figures["waited_call"].append(waited)
            figures["client_rejoin"] = list(c.rejoin_seconds)
            figures["processes_alive"] = all(p.alive() for p in s.procs)
            figures["logs"] = {p.name: p.log() for p in s.procs}
    finally:
        s.stop()
    return figures


def kill9_trials(root: Path, trials: int, flush_interval: float = 0.5) -> list[dict]:
    """``kill -9`` the Modbus node during ingest ``trials`` times on one archive.

    Returns, per trial, the loss (seconds between the kill and the last
    archived sample), whether every file was readable, and the file count.
    """
    from sisock.site import credentials

    port = free_port()
    archive = root / "archive"
    cfg = modbus_config(root / "node.toml", port, f"k9_{os.getpid()}")
    log_dir = root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # the node polls and archives with or without a router: give it credentials and no router
    credentials.ensure(root / "home")
    env = {**os.environ, "SISOCK_HOME": str(root / "home"), "SISOCK_ROUTER_URL": f"ws://127.0.0.1:{free_port()}/ws"}
    sim = subprocess.Popen(
        [sys.executable, "-m", "sisock", "sim", "modbus", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    out = []
    try:
        wait_port(port, 30, sim)
        last_end = 0.0
        for i in range(trials):
            log = open(log_dir / f"node-{i}.log", "wb")
            node = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sisock",
                    "serve",
                    "modbus",
                    "--config",
                    str(cfg),
                    "--archive",
                    str(archive),
                    "--flush-interval",
                    str(flush_interval),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
            try:
                # ingest running: samples newer than the previous trial's reach the archive
                def newest():
                    with ArchiveReader(archive) as reader:
                        r = reader.read(["fast_ok"], last_end, 4e9)
                    tl = r["timeline"].get("fast")
                    return tl is not None and len(tl["t"]) > 10 and float(tl["t"][-1])

                if not wait_until(newest, 60, 0.2):
                    raise AssertionError(
                        f"trial {i}: ingest never started:\n" + (log_dir / f"node-{i}.log").read_text()[-2000:]
                    )
                time.sleep(0.3 + 0.7 * np.random.default_rng(i).random())  # mid-ingest
                os.killpg(node.pid, signal.SIGKILL)
                t_kill = time.time()
                node.wait(10)
            finally:
                if node.poll() is None:
                    os.killpg(node.pid, signal.SIGKILL)
                    node.wait(10)
            files = sorted(archive.glob("*.h5"))
            readable = True
            for f in files:
                try:
                    import h5py

                    with h5py.File(f, "r", libver="latest", swmr=True) as h:
                        list(h.keys())
                except OSError:
                    readable = False
            with ArchiveReader(archive) as reader:
                t = reader.read(["fast_ok"], 0, 4e9)["timeline"]["fast"]["t"]
            out.append(
                {
                    "trial": i,
                    "loss": t_kill - float(t[-1]),
                    "files": len(files),
                    "readable": readable,
                    "monotonic": bool(np.all(np.diff(t) > 0)),
                    "new_file": i == 0 or len(files) > out[-1]["files"],
                }
            )
            last_end = float(t[-1])
    finally:
        os.killpg(sim.pid, signal.SIGTERM)
        sim.wait(10)
    return out


def _as_root() -> list[str]:
    """The prefix that runs a command as root: none as root, else ``sudo -n`` (never prompts)."""
    return [] if os.geteuid() == 0 else ["sudo", "-n"]


def tmpfs(path: Path, size_mb: int) -> bool:
    """Mount a tmpfs of ``size_mb`` MiB on ``path`` (as root, or through ``sudo -n``);
    False if not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or (os.geteuid() != 0 and shutil.which("sudo") is None):
        return False
    cmd = [*_as_root(), "mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=1777", "tmpfs", str(path)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def umount(path: Path) -> None:
    """Unmount ``path`` (lazy, so a process still holding a file cannot block it)."""
    subprocess.run([*_as_root(), "umount", "-l", str(path)], capture_output=True)
