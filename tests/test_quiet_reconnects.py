"""While the router is away, a process writes its reconnection attempts to its log at
most once per window (the first attempt whole), not three lines per attempt."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from sisock.wamp.quietlog import QuietReconnects

TRY = 'trying transport 0 ("ws://127.0.0.1:9/ws") using connect delay 0.2\n'
CONNECT = 'connecting once using transport type "websocket" over endpoint "tcp"\n'
FAIL = "Connection failed: ConnectionRefusedError: Connection was refused by other side\n"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.unit
def test_one_failure_line_per_window_with_the_count_left_out():
    """First attempt whole, then nothing until the window ends, then one failure line
    saying how many lines were left out; other lines always pass."""
    out, clock = io.StringIO(), Clock()
    q = QuietReconnects(out, window=30.0, clock=clock)
    written = 0
    for _ in range(100):  # 20 s of attempts every 0.2 s
        for line in (TRY, CONNECT, FAIL):
            q.write(line)
            written += 1
        clock.now += 0.2
    q.write("node 'x' joined\n")
    lines = out.getvalue().splitlines()
    assert lines == [TRY.strip(), CONNECT.strip(), FAIL.strip(), "node 'x' joined"]
    for _ in range(60):  # 12 s more: the window ends once
        for line in (TRY, CONNECT, FAIL):
            q.write(line)
            written += 1
            if len(out.getvalue().splitlines()) == 5:
                break
        else:
            clock.now += 0.2
            continue
        break
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[4].startswith(FAIL.strip()) and "reconnection lines left out" in lines[4]
    left_out = int(lines[4].split("(")[1].split()[0])
    assert left_out == written - 4  # all but the first attempt's three lines and this one
    assert 30.0 <= clock.now - 100.0 < 30.5
    assert out.getvalue().endswith("\n")


@pytest.mark.unit
def test_a_later_outage_starts_with_its_first_attempt_whole():
    """After a quiet spell longer than the window, the next outage's first attempt is written whole."""
    out, clock = io.StringIO(), Clock()
    q = QuietReconnects(out, window=30.0, clock=clock)
    for line in (TRY, CONNECT, FAIL):
        q.write(line)
    clock.now += 3600
    for line in (TRY, CONNECT, FAIL):
        q.write(line)
    assert out.getvalue().splitlines() == [x.strip() for x in (TRY, CONNECT, FAIL) * 2]


@pytest.mark.unit
def test_an_outage_soon_after_another_starts_with_its_first_attempt_whole():
    """Lines left out at the end of one outage are counted apart; the next outage,
    even within the window, shows its first attempt whole."""
    out, clock = io.StringIO(), Clock()
    q = QuietReconnects(out, window=30.0, clock=clock)
    for _ in range(10):  # an outage of 2 s: first attempt shown, 27 lines left out
        for line in (TRY, CONNECT, FAIL):
            q.write(line)
        clock.now += 0.2
    clock.now += 15.0  # connected for 15 s, then the router goes away again
    for line in (TRY, CONNECT, FAIL):
        q.write(line)
    lines = out.getvalue().splitlines()
    assert lines[:3] == [x.strip() for x in (TRY, CONNECT, FAIL)]
    assert lines[3] == "(27 reconnection lines of the previous outage were left out)"
    assert lines[4:] == [x.strip() for x in (TRY, CONNECT, FAIL)]


@pytest.mark.integration
def test_hub_without_router_writes_few_lines(tmp_path):
    """A hub whose router is away (a port that closes every connection) retries every
    0.2 s; over 20 attempts it writes its first attempt only, not three lines per attempt
    (it wrote about 13 lines a second)."""
    import socket
    import threading

    from conftest import wait_for

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    attempts = [0]

    def refuse_all() -> None:  # count each attempt, then reset it as a dead router would
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            attempts[0] += 1
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()

    threading.Thread(target=refuse_all, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
    env.update(
        SISOCK_HOME=str(tmp_path),
        SISOCK_USER="hub",
        SISOCK_SECRET="x",  # never checked: no router answers
        SISOCK_ROUTER_URL=f"ws://127.0.0.1:{listener.getsockname()[1]}/ws",
    )
    log = tmp_path / "hub.log"
    with open(log, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "sisock", "hub"], env=env, stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: attempts[0] >= 20, 120, "the hub never tried 20 times")
        wait_for(lambda: "Connection failed" in log.read_text(), 60, "the first attempt was never logged")
    finally:
        p.terminate()
        p.wait(30)
        listener.close()
    lines = [x for x in log.read_text().splitlines() if any(m in x for m in ("trying", "connecting", "Connection"))]
    assert len(lines) <= 4, lines


@pytest.mark.unit
def test_tally_says_once_per_interval_with_the_count_unsaid():
    """A Tally says the first occurrence, then the first after each interval with how many were unsaid."""
    from sisock.core.tally import Tally

    clock = Clock()
    t = Tally(10.0, clock=clock)
    said = []
    for _ in range(25):  # one a second for 25 s
        said.append(t.due())
        clock.now += 1.0
    assert said[0] == 0 and said[10] == 9 and said[20] == 9
    assert [i for i, x in enumerate(said) if x is not None] == [0, 10, 20]
