"""What a data-node server builds: its core and what to run beside it (pure).

A server module (``servers/*``, or a site's own package) returns a
:class:`Plan` from ``build(args, settings)``; ``sisock serve``
(:mod:`sisock.cli.serve`) wires it to a WAMP node service and runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .contract import DataCore
from .protocol import Result

#: Publishes one result on the node's ``live`` topic; False while not connected.
Publish = Callable[[Result], bool]


@dataclass
class Plan:
    """What a server built: its core and what to run beside it.

    Attributes
    ----------
    core : DataCore
        Answers ``get_fields`` / ``get_data``.
    warm : list of callable
        Blocking work to do in a thread once running (e.g. load an index),
        so the first query is fast.
    start : list of callable
        Called on the reactor once it runs, with a :data:`Publish` function
        (e.g. start polling a device and publish each poll).
    stop : list of callable
        Called before the reactor shuts down.
    replica : bool
        Serve the name as one of several replicas (a read-only core over
        shared storage, e.g. ``sisock serve hdf5 --replica``).
    """

    core: DataCore
    warm: list[Callable[[], object]] = field(default_factory=list)
    start: list[Callable[[Publish], object]] = field(default_factory=list)
    stop: list[Callable[[], object]] = field(default_factory=list)
    replica: bool = False
