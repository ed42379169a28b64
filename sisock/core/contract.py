"""The data-core contract: what every data node's core answers, and how.

A *core* is the plain-Python heart of a data node: it knows its fields and
samples and nothing about WAMP. :class:`sisock.wamp.service.NodeService` serves any
core; the in-memory timelines (:mod:`sisock.core.timelines`, used by the weather
and sensors nodes) and the HDF5 archive (:mod:`sisock.archive.core`) are
the two kinds shipped. Every core answers the same questions the same way:

``get_fields(start, end)``
    ``(field, timeline)`` for the fields with data in ``[start, end)``:
    ``field[name] = FieldSpec.describe(timeline)`` and
    ``timeline[name] = {"interval", "field": [names]}``, where ``interval``
    is the mean spacing of the timeline's samples *inside the range*
    (:func:`sisock.core.protocol.timeline_interval`; None with fewer than two).
``get_data(fields, start, end, min_stride=None, method="mean", *, streaming=False)``
    A :class:`sisock.core.protocol.Result` with one array per requested field
    (empty when the field is unknown or has no data in the range) and the
    times of each timeline that has data. Samples are in ``[start, end)``;
    downsampled as the README's "Downsampling" section says when
    ``min_stride`` is given.
``max_samples`` / ``max_samples_streamed``
    The most *values* (samples summed over the requested fields) one reply
    may hold when it travels as one message / as streamed parts. ``streaming``
    tells the core which limit applies (the caller accepts progressive
    results and asked for binary arrays). Over the limit the core raises
    :class:`~sisock.core.errors.TooMuchData` from :func:`too_much_data`, which
    names the ``min_stride`` that would fit.
``finalized_until``
    Per timeline in the result: None when nothing returned can change any
    more (no more samples will arrive in the range). Otherwise, for raw
    data, the time of the timeline's last stored sample (samples before it
    are final); for downsampled data, the start of the bin holding that
    time.

Methods run in a worker thread; a core that keeps mutable state guards it.

Optional write side
    A core that also has ``write_points()``, ``read_point(name)`` and
    ``write_point(name, value)`` offers operator writes: the node shell
    then registers ``{base}.operator.<name>.points/set/audit`` and applies
    the checks, idempotency and audit log of :mod:`sisock.writes.rules`
    (contract there; :mod:`sisock.wamp.operator` is the shell). Cores without
    them are served exactly as before.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .errors import TooMuchData
from .protocol import Result, fitting_min_stride, values_per_bin


@runtime_checkable
class DataCore(Protocol):
    """The data-core contract as a :class:`typing.Protocol`.

    Any object with these attributes and methods is a core
    (``isinstance(obj, DataCore)`` checks their presence); subclassing is
    optional and gives :meth:`limit` and the default limits.
    ``tests/test_core_contract.py`` runs the same conformance checks against
    every core shipped.

    Attributes
    ----------
    name, description : str
        Data-node name (one URI component) and text for consumers.
    max_samples : int
        Values allowed in a one-message reply.
    max_samples_streamed : int
        Values allowed in a streamed reply.
    """

    name: str = "node"
    description: str = ""
    max_samples: int = 2_000_000
    max_samples_streamed: int = 200_000_000

    def get_fields(self, start: float, end: float) -> tuple[dict, dict]:
        """``(field, timeline)`` for ``[start, end)`` in UNIX seconds."""
        raise NotImplementedError

    def get_data(
        self,
        fields: list[str],
        start: float,
        end: float,
        min_stride: float | None = None,
        method: str = "mean",
        *,
        streaming: bool = False,
    ) -> Result:
        """Samples of ``fields`` in ``[start, end)``, downsampled when ``min_stride`` is set."""
        raise NotImplementedError

    def limit(self, streaming: bool) -> int:
        """The values allowed in one reply (see :attr:`max_samples`)."""
        return self.max_samples_streamed if streaming else self.max_samples


def too_much_data(limit: int, values: int, nfields: int, start: float, end: float, method: str = "mean") -> TooMuchData:
    """The error for a reply of ``values`` values over ``limit``, with a ``min_stride`` that fits.

    Parameters
    ----------
    limit : int
        The core's limit (values).
    values : int
        What the reply would hold.
    nfields : int
        Fields requested (a downsampled bin gives one value per field, two
        with ``minmax``).
    start, end : float
        The requested range.
    method : str
        The downsampling method.
    """
    suggest = fitting_min_stride(end - start, max(1, nfields) * values_per_bin(method), limit)
    return TooMuchData(
        f"the result would hold {values} values ({nfields} field(s)), more than "
        f"max_samples={limit}; pass min_stride >= {suggest:g} s (or request a shorter "
        "range or fewer fields)",
        min_stride=suggest,
        limit=limit,
    )


def offers_writes(core: object) -> bool:
    """True when ``core`` has the write side of the data-core contract."""
    return all(callable(getattr(core, m, None)) for m in ("write_points", "read_point", "write_point"))
