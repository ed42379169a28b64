"""``sisock demo`` keeps the stack up when one data node stops; it stops only when a
process the stack cannot do without (router, hub, web bridge) exits."""

from __future__ import annotations

import pytest

from sisock.cli import demo

pytestmark = pytest.mark.unit


class FakeProc:
    """A child that has exited with ``code`` after ``alive`` polls (None: never)."""

    def __init__(self, alive: int | None, code: int = 0) -> None:
        self.alive, self.returncode, self.polls = alive, None, 0

    def poll(self):
        self.polls += 1
        if self.alive is not None and self.polls > self.alive:
            self.returncode = 0
        return self.returncode


class FakeStack:
    """The demo's children by name."""

    def __init__(self, procs: dict) -> None:
        self.procs = procs


def test_a_node_that_stops_leaves_the_rest_running(tmp_path, capsys):
    """A node exiting is reported once and the demo goes on; the web bridge exiting
    stops it."""
    stack = FakeStack({"router": FakeProc(None), "hub": FakeProc(None), "sensors": FakeProc(1), "web": FakeProc(5)})
    assert demo.supervise(stack, tmp_path, poll=0) == 1
    out = capsys.readouterr().out
    assert out.count("sensors exited") == 1 and "the rest keeps running" in out
    assert "web exited" in out and "stopping the stack" in out
    assert stack.procs["sensors"].polls > 3  # the demo kept watching after the node stopped
