"""Benchmark the Modbus data node process: CPU, missed polls, latency, archive time.

Default (whole node): in a temporary ``SISOCK_HOME`` on free ports, start
``sisock router``, ``sisock hub`` and ``sisock sim modbus --registers N``
(N extra holding registers of mixed types), write a TOML config polling all
of them (plus a few derived points) at ``--rate`` Hz, and run the real node,
``sisock serve modbus --config FILE --archive DIR``: it polls, archives in
its writer thread, publishes every poll on its ``live`` topic (no
subscriber) and serves ``get_fields``/``get_data``. Once the hub lists it,
wait ``--warmup`` seconds, send SIGUSR1 (the node zeroes its statistics),
measure the node's CPU with psutil for ``--seconds``, then SIGTERM it and
read the ``sisock-modbus-stats`` line it prints at shutdown. Its figures
therefore cover the measured window (plus the < 0.1 s until the poller
stops), not the warm-up.

``--core-only``: the poller core and the same threaded archive sink in a
bare asyncio subprocess (no Twisted, no router, no live publishing), to see
what the WAMP side costs.

Prints figures; asserts nothing about time. Targets: <= 25 % of one core
for the node process and 0 missed polls at 10 Hz with 1000 registers.

Usage::

    python benchmarks/bench_modbus.py                  # 60 s, 10 Hz, 1000 registers
    python benchmarks/bench_modbus.py --seconds 20
    python benchmarks/bench_modbus.py --groups 2 --connections per_group
    python benchmarks/bench_modbus.py --core-only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sisock.site.ports import free_port, wait_port

STATS_PREFIX = "sisock-modbus-stats "  # = sisock.servers.modbus.server.STATS_PREFIX
NODE_NAME = "modbus_bench"


def build_config(port: int, registers: int, rate: float, groups: int, connections: str) -> dict:
    """The node config (as the dict a TOML file parses to) for the simulator's extra registers."""
    from sisock.servers.modbus.simulator import extra_layout

    layout = extra_layout(registers)
    per = -(-len(layout) // groups)
    out = []
    for g in range(groups):
        chunk = layout[g * per : (g + 1) * per]
        points = [{"name": n, "kind": "holding", "address": a, "type": t} for n, t, a in chunk]
        floats = [n for n, t, _a in chunk if t.startswith("float")][:20]
        derived = [
            {"name": f"g{g}_d{i}", "expr": f"({{{a}}} - {{{b}}}) / 2 + sqrt(abs({{{a}}}))"}
            for i, (a, b) in enumerate(zip(floats[::2], floats[1::2]))
        ]
        out.append({"name": f"bench{g}", "interval": 1.0 / rate, "point": points, "derived": derived})
    return {
        "node": {"name": NODE_NAME, "description": "bench_modbus.py"},
        "device": {"host": "127.0.0.1", "port": port, "timeout": 1.0, "connections": connections},
        "group": out,
    }


def to_toml(config: dict) -> str:
    """TOML text for :func:`build_config`'s shape (tables of scalars, arrays of tables)."""

    def scalar(v) -> str:
        return json.dumps(v) if isinstance(v, str) else repr(v)  # JSON strings are TOML strings

    lines: list[str] = []

    def table(header: str, d: dict) -> None:
        lines.append(header)
        lines.extend(f"{k} = {scalar(v)}" for k, v in d.items() if not isinstance(v, list))
        for k, v in d.items():
            if isinstance(v, list):
                for item in v:
                    table(f"[[{header.strip('[]')}.{k}]]", item)
        lines.append("")

    for key, value in config.items():
        for item in value if isinstance(value, list) else [value]:
            table(f"[[{key}]]" if isinstance(value, list) else f"[{key}]", item)
    return "\n".join(lines)


# ------------------------------------------------------------------ core-only child


def core_main(args: argparse.Namespace) -> None:
    """Run the poller core for ``args.seconds``; print one stats line (plus CPU)."""
    from sisock.servers.modbus.archiving import ThreadedArchiveSink
    from sisock.servers.modbus.config import parse_config
    from sisock.servers.modbus.server import AppendTimes, reset_stats, run_stats
    from sisock.servers.modbus.poller import Poller

    cfg = parse_config(build_config(args.port, args.registers, args.rate, args.groups, args.connections))
    with tempfile.TemporaryDirectory(prefix="bench_modbus_") as tmp:
        appends = AppendTimes()
        sink = ThreadedArchiveSink(Path(tmp), cfg.field_specs(), 0.5, on_append=appends).start()

        async def main() -> dict:
            poller = Poller(cfg, sink)
            task = asyncio.create_task(poller.run())
            await asyncio.sleep(args.warmup)
            reset_stats(poller, appends)
            r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            await asyncio.sleep(args.seconds)
            r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            poller.stop()
            await task
            sink.close()
            out = run_stats(poller, appends, w1 - w0)
            out["cpu_s"] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            out["wall_s"] = w1 - w0
            return out

        stats = asyncio.run(main())
    print(STATS_PREFIX + json.dumps(stats), flush=True)


# ------------------------------------------------------------------ driver


class Children:
    """Child processes, each in its own session with a log file; stopped in reverse order."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    @staticmethod
    def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
        """SIGTERM the child's process group; SIGKILL it after ``timeout`` s."""
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            self.stop(proc)


def child_env(home: Path, router_port: int) -> dict[str, str]:
    """This environment without SISOCK_*/WAMP_*, plus the benchmark's home and router."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
    env.update(SISOCK_HOME=str(home), SISOCK_ROUTER_URL=f"ws://127.0.0.1:{router_port}/ws", PYTHONUNBUFFERED="1")
    return env


def wait_listed(name: str, proc: subprocess.Popen, timeout: float = 30.0) -> float:
    """Block until the hub lists ``name``; return the seconds waited."""
    import txaio

    from sisock.client import ClientError, connect

    txaio.set_global_log_level("error")  # no "trying transport" chatter from this client
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}")
        try:
            with connect(timeout=3) as c:
                while time.monotonic() - t0 < timeout and proc.poll() is None:
                    if name in {n["name"] for n in c.nodes()}:
                        return time.monotonic() - t0
                    time.sleep(0.1)
        except ClientError:
            time.sleep(0.2)
    raise TimeoutError(f"{name} not listed by the hub after {timeout} s")


def parse_stats(text: str) -> dict:
    lines = [ln for ln in text.splitlines() if ln.startswith(STATS_PREFIX)]
    if not lines:
        raise RuntimeError("no statistics line in the node's output")
    return json.loads(lines[-1][len(STATS_PREFIX) :])


def run_node(args: argparse.Namespace, tmp: Path) -> tuple[dict, dict]:
    """The whole-node scenario; return (node stats incl. cpu_s/wall_s, info for the report)."""
    import psutil

    router_port, sim_port = free_port(), free_port()
    env = child_env(tmp / "home", router_port)
    os.environ.clear()
    os.environ.update(env)  # this process's client (wait_listed) uses the same stack
    logs = tmp / "logs"
    logs.mkdir()
    kids = Children(logs, env)
    try:
        router = kids.start("router", "-m", "sisock", "router", "--loglevel", "warn")
        sim = kids.start(
            "sim", "-m", "sisock", "sim", "modbus", "--port", str(sim_port), "--registers", str(args.registers)
        )
        wait_port(router_port, proc=router)
        kids.start("hub", "-m", "sisock", "hub", "--log-level", "warn")
        wait_port(sim_port, proc=sim)

        from sisock.servers.modbus.config import load_config

        cfg_path = tmp / "node.toml"
        cfg_path.write_text(to_toml(build_config(sim_port, args.registers, args.rate, args.groups, args.connections)))
        cfg = load_config(cfg_path)  # fail here, with a clear message, on a bad config
        node = kids.start(
            "node",
            "-m",
            "sisock",
            "serve",
            "modbus",
            "--config",
            str(cfg_path),
            "--archive",
            str(tmp / "archive"),
            "--log-level",
            "warn",
        )
        listed_after = wait_listed(NODE_NAME, node)
        time.sleep(args.warmup)

        node_ps, sim_ps = psutil.Process(node.pid), psutil.Process(sim.pid)
        router_ps = [psutil.Process(router.pid)] + psutil.Process(router.pid).children(True)

        def cpu() -> tuple[float, float, float]:
            def s(p):
                t = p.cpu_times()
                return t.user + t.system

            return s(node_ps), s(sim_ps), sum(s(p) for p in router_ps if p.is_running())

        os.kill(node.pid, signal.SIGUSR1)  # zero the node's statistics
        c0, w0 = cpu(), time.monotonic()
        time.sleep(args.seconds)
        c1, w1 = cpu(), time.monotonic()
        Children.stop(node)
        if node.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"node exited with code {node.returncode}")
        stats = parse_stats(kids.log("node"))
        stats.update(cpu_s=c1[0] - c0[0], wall_s=w1 - w0)
        info = {
            "listed_after": listed_after,
            "sim_cpu": (c1[1] - c0[1]) / (w1 - w0),
            "router_cpu": (c1[2] - c0[2]) / (w1 - w0),
            "points": sum(len(g.points) for g in cfg.groups),
            "derived": sum(len(g.derived) for g in cfg.groups),
            "archive_mb": sum(p.stat().st_size for p in (tmp / "archive").rglob("*") if p.is_file()) / 1e6,
        }
        return stats, info
    except BaseException:
        for name in ("node", "sim", "hub", "router"):
            if (logs / f"{name}.log").exists():
                print(f"--- {name} log (tail)\n{kids.log(name)[-3000:]}", file=sys.stderr)
        raise
    finally:
        kids.stop_all()


def run_core(args: argparse.Namespace, tmp: Path) -> tuple[dict, dict]:
    """The ``--core-only`` scenario (simulator + bare poller subprocess)."""
    import psutil

    port = free_port()
    logs = tmp / "logs"
    logs.mkdir()
    env = child_env(tmp / "home", free_port())
    kids = Children(logs, env)
    try:
        sim = kids.start(
            "sim", "-m", "sisock", "sim", "modbus", "--port", str(port), "--registers", str(args.registers)
        )
        wait_port(port, proc=sim)
        sim_ps = psutil.Process(sim.pid)
        sim0 = sum(sim_ps.cpu_times()[:2])
        t0 = time.monotonic()
        out = subprocess.run(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--core-child",
                "--port",
                str(port),
                "--seconds",
                str(args.seconds),
                "--warmup",
                str(args.warmup),
                "--rate",
                str(args.rate),
                "--registers",
                str(args.registers),
                "--groups",
                str(args.groups),
                "--connections",
                args.connections,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=args.seconds + args.warmup + 60,
        )
        sim_cpu = (sum(sim_ps.cpu_times()[:2]) - sim0) / (time.monotonic() - t0)
    finally:
        kids.stop_all()
    if out.returncode != 0:
        raise RuntimeError(f"core child failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    from sisock.servers.modbus.config import parse_config

    cfg = parse_config(build_config(port, args.registers, args.rate, args.groups, args.connections))
    return parse_stats(out.stdout), {
        "sim_cpu": sim_cpu,
        "points": sum(len(g.points) for g in cfg.groups),
        "derived": sum(len(g.derived) for g in cfg.groups),
    }


def report(args: argparse.Namespace, r: dict, info: dict) -> None:
    def ms(key: str, digits: int = 2) -> str:
        return "n/a" if r[key] is None else f"{r[key]:.{digits}f} ms"

    what = (
        "poller core only (asyncio, threaded archive sink; no Twisted/WAMP)"
        if args.core_only
        else "node process `sisock serve modbus` (poll + archive + live publish + serve)"
    )
    expected = args.rate * r["seconds"] * r["groups"]  # the node's window: up to its stop
    cpu_frac = r["cpu_s"] / r["wall_s"]
    print(f"Modbus data node benchmark: {what}")
    print(
        f"  {args.registers} registers ({info['points']} points + {info['derived']} derived) "
        f"in {r['groups']} group(s) at {args.rate:g} Hz, connections={args.connections}; "
        f"measured {r['wall_s']:.1f} s after {args.warmup:g} s warm-up"
    )
    if "listed_after" in info:
        print(f"  node listed by the hub    {info['listed_after']:.1f} s after start")
    print(
        f"  node CPU                  {cpu_frac * 100:.1f} % of one core "
        f"({r['cpu_s']:.2f} CPU s / {r['wall_s']:.1f} s)   target <= 25 %"
    )
    print(f"  polls done / expected     {r['polls']} / {expected:.1f}  ({r['requests']} Modbus requests)")
    print(f"  polls missed              {r['missed']}   target 0")
    print(f"  gaps (failed polls)       {r['gaps']}")
    print(
        f"  poll latency              mean {ms('latency_mean_ms')}, "
        f"p99 {ms('latency_p99_ms')}, max {ms('latency_max_ms')}"
    )
    print(
        f"  archive append per batch  mean {ms('append_mean_ms', 3)}, "
        f"p99 {ms('append_p99_ms', 3)}, max {ms('append_max_ms')} "
        f"(writer thread; includes flushes; {r['appends']} batches for {r['polls']} polls)"
    )
    if "archive_mb" in info:
        print(f"  archive size              {info['archive_mb']:.1f} MB (whole run)")
    print(f"  simulator CPU (for info)  {info['sim_cpu'] * 100:.1f} % of one core")
    if "router_cpu" in info:
        print(f"  router CPU (for info)     {info['router_cpu'] * 100:.1f} % of one core (crossbar, all its processes)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="measured run time (default 60)")
    p.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of polling before the measurement starts (default 2)"
    )
    p.add_argument("--rate", type=float, default=10.0, help="polls per second (default 10)")
    p.add_argument("--registers", type=int, default=1000, help="registers polled (default 1000)")
    p.add_argument("--groups", type=int, default=1, help="split the points into K groups")
    p.add_argument("--connections", choices=("shared", "per_group"), default="shared")
    p.add_argument(
        "--core-only",
        action="store_true",
        help="benchmark the poller core in a bare asyncio process instead of the node",
    )
    p.add_argument("--core-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.core_child:
        core_main(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_modbus_") as tmp:
        try:
            r, info = (run_core if args.core_only else run_node)(args, Path(tmp))
        except (RuntimeError, TimeoutError) as exc:
            print(f"bench_modbus: {exc}", file=sys.stderr)
            return 1
    report(args, r, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
