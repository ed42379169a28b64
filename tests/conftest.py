"""Shared fixtures: one real Crossbar router (and hub) per test session.

The router listens on a free port on 127.0.0.1 with its own
``SISOCK_HOME`` (generated secrets, rendered config, logs), so the suite
never touches a developer's running stack. Tests that restart the router
or the hub leave them running again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sisock.site.ports import free_port, wait_port

REPO = Path(__file__).resolve().parent.parent

__all__ = ["REPO", "free_port", "wait_port", "wait_for", "listed", "Proc", "Stack"]


class Proc:
    """A ``python -m sisock ...`` child process with a log file."""

    def __init__(
        self, name: str, args: list[str], log_dir: Path, env: dict | None = None, module: str = "sisock"
    ) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.module = module
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Proc":
        log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", self.module, *self.args] if self.module else self.args
        self.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env or dict(os.environ),
            start_new_session=True,
            cwd=str(REPO),
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""


class Stack:
    """The session's router and hub, with restart helpers."""

    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.log_dir = home / "test-logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.router = Proc("router", ["router", "--loglevel", "warn"], self.log_dir)
        self.hub = Proc("hub", ["hub"], self.log_dir)
        self._n = 0

    def start_router(self) -> float:
        """Start the router; return seconds until it accepted connections."""
        t0 = time.monotonic()
        self.router.start()
        wait_port(self.port, 30, self.router.proc)
        return time.monotonic() - t0

    def restart_router(self) -> float:
        """Stop and start the router on the same port."""
        self.router.stop()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    time.sleep(0.1)
            except OSError:
                break
        return self.start_router()

    def start(self, name: str, *args: str, env: dict | None = None, module: str = "sisock") -> Proc:
        """Start a child process (``python -m sisock ARGS``) logged under ``name``."""
        self._n += 1
        return Proc(f"{name}-{self._n}", list(args), self.log_dir, env, module).start()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """A running router and hub for the whole test session."""
    home = tmp_path_factory.mktemp("sisock-home")
    port = free_port()
    saved = {
        k: os.environ.get(k)
        for k in (
            "SISOCK_HOME",
            "SISOCK_ROUTER_URL",
            "SISOCK_USER",
            "SISOCK_SECRET",
            "WAMP_USER",
            "WAMP_SECRET",
            "SISOCK_REALM",
            "SISOCK_BASE_URI",
            "SISOCK_TLS_CA",
        )
    }
    for k in saved:
        os.environ.pop(k, None)
    os.environ["SISOCK_HOME"] = str(home)
    os.environ["SISOCK_ROUTER_URL"] = f"ws://127.0.0.1:{port}/ws"
    s = Stack(home, port)
    s.start_router()
    s.hub.start()
    try:
        wait_for(lambda: _hub_up(), 20, "hub did not come up")
        yield s
    finally:
        s.hub.stop()
        s.router.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _hub_up() -> bool:
    from sisock.client import ClientError, connect

    try:
        with connect(timeout=3) as c:
            c.nodes()
            return True
    except ClientError:
        return False


def wait_for(predicate, timeout: float, message: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message)


@pytest.fixture
def client(stack):
    """A consumer-role client connected to the session router."""
    from sisock.client import connect

    with connect(timeout=10) as c:
        yield c


@pytest.fixture
def procs(stack):
    """Start child processes that are stopped at the end of the test."""
    started: list[Proc] = []

    def start(name: str, *args: str, **kw) -> Proc:
        p = stack.start(name, *args, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def listed(client) -> set[str]:
    """Names the hub lists right now (empty if the hub is down)."""
    from sisock.client import ClientError

    try:
        return {n["name"] for n in client.nodes()}
    except ClientError:
        return set()


# -- web bridge -------------------------------------------------------------


def http(
    method: str, url: str, body=None, headers: dict | None = None, timeout: float = 60.0
) -> tuple[int, dict, bytes]:
    """One HTTP request; returns ``(status, headers, body)`` (no exception on 4xx/5xx)."""
    import json as _json
    import urllib.error
    import urllib.request

    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else _json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


class WebDemo:
    """Data nodes and a ``sisock web`` bridge on the session router."""

    def __init__(self, stack: Stack, port: int, archive: Path) -> None:
        self.stack = stack
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.archive = archive
        self.procs: list[Proc] = []

    def start(self, name: str, *args: str) -> Proc:
        p = self.stack.start(name, *args)
        self.procs.append(p)
        return p

    def nodes(self) -> set[str]:
        status, _, body = http("GET", self.url + "/api/nodes", timeout=5)
        if status != 200:
            return set()
        import json as _json

        return {n["name"] for n in _json.loads(body)}

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


@pytest.fixture(scope="session")
def web_demo(stack, tmp_path_factory):
    """An archive node (``webarch``, 2 generated days), a live sensors node
    (``websens``, 5 Hz), the weather node (``webwx``) and ``sisock web``."""
    archive = tmp_path_factory.mktemp("web-archive")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sisock",
            "generate",
            str(archive),
            "--days",
            "2",
            "--fast-hours",
            "0.2",
            "--burst-minutes",
            "1",
        ],
        check=True,
        cwd=str(REPO),
        capture_output=True,
    )
    demo = WebDemo(stack, free_port(), archive)
    demo.start("webarch", "serve", "hdf5", "--name", "webarch", "--archive", str(archive))
    demo.start("websens", "serve", "sensors", "--name", "websens", "--interval", "0.2")
    demo.start("webwx", "serve", "weather", "--name", "webwx")
    demo.web = demo.start("web", "web", "--port", str(demo.port))
    try:
        wait_port(demo.port, 30, demo.web.proc)
        wait_for(
            lambda: {"webarch", "websens", "webwx"} <= demo.nodes(),
            60,
            f"web bridge never listed the nodes:\n{demo.web.log()}",
        )
        yield demo
    finally:
        demo.stop()


#: Fixtures that start real parts: the router and hub, data-node processes, devices.
INTEGRATION_FIXTURES = {"stack", "client", "procs", "instrument", "archive_node", "web_demo"}
#: Modules whose tests start real devices, routers or kernels without those fixtures.
INTEGRATION_MODULES = {"test_modbus_poller", "test_notebook", "test_tls_and_demo", "test_streaming"}


def pytest_collection_modifyitems(config, items):
    """Mark each test ``unit`` (no router, device or kernel: seconds) or ``integration``.

    A test marked explicitly keeps its mark; otherwise it is ``integration``
    when it uses a fixture of :data:`INTEGRATION_FIXTURES` or lives in a
    module of :data:`INTEGRATION_MODULES`. ``pytest -m unit`` gives
    feedback in seconds.
    """
    for item in items:
        if item.get_closest_marker("unit") or item.get_closest_marker("integration"):
            continue
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        real = bool(INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ()))) or module in INTEGRATION_MODULES
        item.add_marker(pytest.mark.integration if real else pytest.mark.unit)
