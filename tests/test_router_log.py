"""The router's log reads clean: a user who opens it should not think the router broke."""

from __future__ import annotations

import importlib.metadata
import re

import pytest


def unexplained_tracebacks(log: str, base: str) -> list[str]:
    """Tracebacks in a router log other than Crossbar's report of a refusal that the
    hub explained (a ``{base}.error.*`` raised by the authorizer: Crossbar logs every
    raising authorizer with a traceback, and the node receives the explanation)."""
    out = []
    for block in re.split(r"\n(?=\d{4}-\d\d-\d\dT)", log):  # one block per log record
        if "Traceback" in block and f"error=<{base}.error." not in block:
            out.append(block[:1500])
    return out


def test_router_log_has_no_traceback(stack, client):
    """A router that started and served the session's tests logged no unexplained
    traceback; in particular not the NumPy ABI traceback of crossbar's optional UBJSON
    backend (bjdata), which every worker printed."""
    assert client.nodes() is not None  # the router is up and has served a session
    text = stack.router.log_path.read_text(errors="replace")
    assert "_ARRAY_API" not in text and "compiled using NumPy 1.x" not in text
    assert unexplained_tracebacks(text, "org.simonsobservatory") == []


def test_bjdata_is_not_installed():
    """``make install`` removes bjdata (unused, built for NumPy 1.x)."""
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("bjdata")
