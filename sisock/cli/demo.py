"""``sisock demo``: the whole stack on one machine, as child processes.

Starts the router, waits until it accepts connections, then the hub and
every example node, waits until the hub lists them all, prints where to
connect, and keeps running until interrupted (or, with ``--check``, stops
everything and exits 0 when the stack came up).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sisock.site import credentials
from sisock.site.ports import free_port, wait_port
from sisock.site.settings import Settings, load_settings


@dataclass
class Stack:
    """The child processes of a running demo."""

    settings: Settings
    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """Environment that points children at this stack."""
        env = dict(os.environ)
        env.update(
            SISOCK_HOME=str(self.settings.home),
            SISOCK_ROUTER_URL=self.settings.router_url,
            SISOCK_REALM=self.settings.realm,
            SISOCK_BASE_URI=self.settings.base_uri,
        )
        for key in ("SISOCK_USER", "SISOCK_SECRET", "WAMP_USER", "WAMP_SECRET"):
            env.pop(key, None)  # each child uses its own role's credentials
        return env

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """Start ``sisock ARGS`` with output to ``<log_dir>/<name>.log``."""
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sisock", *args],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def stop(self) -> None:
        """Terminate every child and its own children (nodes first, router last)."""
        for name in reversed(list(self.procs)):
            _signal_group(self.procs[name], signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal a child's whole process group (crossbar has worker processes)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def wait_for_nodes(settings: Settings, names: set[str], timeout: float) -> list[dict]:
    """Block until the hub lists every name in ``names``; return the list."""
    from sisock.wamp.client import ClientError, connect

    deadline = time.monotonic() + timeout
    listed: list[dict] = []
    while time.monotonic() < deadline:
        try:
            with connect(
                settings.router_url, settings.realm, home=str(settings.home), base_uri=settings.base_uri, timeout=5
            ) as c:
                while time.monotonic() < deadline:
                    try:
                        listed = c.nodes()
                    except ClientError:
                        listed = []
                    if names <= {n["name"] for n in listed}:
                        return listed
                    time.sleep(0.2)
        except ClientError:
            time.sleep(0.3)
    missing = names - {n["name"] for n in listed}
    raise TimeoutError(f"the hub did not list {sorted(missing)} within {timeout} s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sisock demo``."""
    parser.add_argument(
        "--check", action="store_true", help="start everything, verify the hub lists every node, stop, exit"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the stack to come up (default 60)"
    )
    parser.add_argument("--web-host", default="127.0.0.1", help="address of the web dashboard (default 127.0.0.1)")
    parser.add_argument("--web-port", type=int, default=8000, help="port of the web dashboard (default 8000)")


#: The demo rewrites its example archive when it ends longer ago than this,
#: so the dashboard's default view (the last hour) always shows it.
DEMO_ARCHIVE_MAX_AGE = 3600.0


def demo_archive(home: Path) -> Path:
    """A generated demo archive in ``home``: a week ending now (~5 s to write).

    Written on first use, and written again when its newest file is older
    than :data:`DEMO_ARCHIVE_MAX_AGE` (it is example data in ``SISOCK_HOME``,
    nothing else is ever deleted).
    """
    directory = Path(home) / "examples" / "archive"
    files = list(directory.glob("*.h5"))
    newest = max((f.stat().st_mtime for f in files), default=0.0)
    if time.time() - newest > DEMO_ARCHIVE_MAX_AGE:
        import shutil

        from .generate import generate

        if files:
            shutil.rmtree(directory)
        print(f"sisock demo: writing a week of synthetic archive into {directory} ...", flush=True)
        generate(directory)
    return directory


def modbus_config(home: Path, port: int) -> Path:
    """The example Modbus config pointed at the demo's simulator port."""
    from sisock.servers.modbus.server import example_config

    path = Path(home) / "examples" / "modbus.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(example_config(port))
    return path


def plan(stack: Stack) -> list[tuple[str, list[str]]]:
    """The child processes to start after the router, in order.

    Names of ``serve`` entries are the data-node names the hub must list.
    """
    home = stack.settings.home
    archive = demo_archive(home)
    sim_port = free_port()
    return [
        ("hub", ["hub"]),
        ("modbus-simulator", ["sim", "modbus", "--port", str(sim_port)]),
        ("weather", ["serve", "weather"]),
        ("sensors", ["serve", "sensors"]),
        ("archive", ["serve", "hdf5", "--name", "archive", "--archive", str(archive)]),
        (
            "modbus_sim",
            [
                "serve",
                "modbus",
                "--config",
                str(modbus_config(home, sim_port)),
                "--archive",
                str(Path(home) / "archives" / "modbus_sim"),
            ],
        ),
    ]


#: Processes the stack cannot do without: when one exits the demo stops. A data
#: node or the simulator that exits is reported and the rest keeps running (a
#: node stopped for maintenance, as at a site).
ESSENTIAL = ("router", "hub", "web")


def supervise(stack: Stack, log_dir: Path, poll: float = 1.0) -> int:
    """Watch the children until an essential one exits (returns 1) or Ctrl-C (raises)."""
    reported: set[str] = set()
    while True:
        for name, proc in list(stack.procs.items()):
            if proc.poll() is None or name in reported:
                continue
            reported.add(name)
            print(
                f"sisock demo: {name} exited with code {proc.returncode}; see {log_dir / (name + '.log')}", flush=True
            )
            if name in ESSENTIAL:
                print("sisock demo: stopping the stack", flush=True)
                return 1
            print(
                f"sisock demo: the rest keeps running; start {name} again by hand "
                "(see the log for its command) or restart the demo",
                flush=True,
            )
        time.sleep(poll)


def run(args: argparse.Namespace) -> int:
    """Run the demo stack."""
    settings = load_settings(router_url=args.router_url, realm=args.realm, base_uri=args.base_uri, home=args.home)
    credentials.ensure(settings.home)
    log_dir = Path(settings.home) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings, log_dir)
    t0 = time.monotonic()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop the children on any polite stop
        signal.signal(sig, _raise_interrupt)
    try:
        router = stack.start("router", "router")
        wait_port(settings.port, args.timeout, router, host=settings.host)
        names = set()
        for name, argv in plan(stack):
            stack.start(name, *argv)
            if argv[0] == "serve":
                names.add(name)
        web_host, web_port = getattr(args, "web_host", "127.0.0.1"), getattr(args, "web_port", 8000)
        web = stack.start("web", "web", "--host", web_host, "--port", str(web_port))
        listed = wait_for_nodes(settings, names, args.timeout)
        try:
            wait_port(web_port, args.timeout, web, host="127.0.0.1" if web_host in ("0.0.0.0", "::") else web_host)
        except RuntimeError:
            raise SystemExit(
                f"sisock demo: the web dashboard did not start (is port {web_port} "
                f"taken? use --web-port); see {log_dir / 'web.log'}"
            ) from None
        from sisock.web.app import dashboard_url

        print(f"sisock dashboard: {dashboard_url(web_host, web_port)}", flush=True)
        print(f"sisock stack up in {time.monotonic() - t0:.1f} s", flush=True)
        print(f"  router:   {settings.router_url}  (realm {settings.realm})")
        print(f"  secrets:  {credentials.path(settings.home)}")
        print(f"  logs:     {log_dir}")
        print("  data nodes listed by the hub:")
        for node in listed:
            print(f"    - {node['name']}: {node['description']}")
        print(
            '  try:     .venv/bin/python -c "from sisock.client import connect; print(connect().nodes())"',
            flush=True,
        )
        print(
            "  writes:   sisock credentials add NAME --role operator (then restart the demo), "
            "and with its SISOCK_USER/SISOCK_SECRET: sisock set modbus_sim setpoint 297.5; "
            "sisock audit modbus_sim (docs/operating.md)",
            flush=True,
        )
        if args.check:
            return 0
        print("Press Ctrl-C to stop.", flush=True)
        return supervise(stack, log_dir)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
