"""Keep autobahn's optional ``bjdata`` (UBJSON) import quiet under NumPy 2.

``bjdata``'s wheel is built against NumPy 1.x; importing it under NumPy 2
prints a long traceback and then fails, after which autobahn simply goes
without UBJSON. sisock never uses UBJSON, so we make that import fail
cleanly instead. Called by the modules that import autobahn, before they
do.
"""

from __future__ import annotations

import sys


def silence_bjdata() -> None:
    """Make ``import bjdata`` raise ImportError without the NumPy traceback."""
    if "bjdata" in sys.modules:
        return
    try:
        import numpy

        if int(numpy.__version__.split(".")[0]) < 2:
            return
    except Exception:  # pragma: no cover - numpy always present
        return
    sys.modules["bjdata"] = None  # type: ignore[assignment]
