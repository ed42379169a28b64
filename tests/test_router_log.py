"""The router's log reads clean: a user who opens it should not think the router broke."""

from __future__ import annotations

import importlib.metadata

import pytest


def test_router_log_has_no_traceback(stack, client):
    """A router that started and served a session logged no Python traceback (crossbar's
    optional UBJSON backend, bjdata, printed a NumPy ABI traceback in every worker)."""
    assert client.nodes() is not None  # the router is up and has served a session
    text = stack.router.log_path.read_text(errors="replace")
    assert "Traceback" not in text and "_ARRAY_API" not in text, text[-3000:]


def test_bjdata_is_not_installed():
    """``make install`` removes bjdata (unused, built for NumPy 1.x)."""
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("bjdata")
