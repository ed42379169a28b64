"""The consumer side of the protocol, sans I/O: what a consumer sends, how it reads
what comes back.

Both consumers — the notebook client (:mod:`sisock.wamp.client`, asyncio) and the
web bridge (:mod:`sisock.web.session`, Twisted) — are thin shells around
this module, as caproto's virtual circuit is around its state machine: they
own the session and the waiting; the rules are here, once.

* :class:`DataCall` — the arguments of one ``get_data`` call: positional as
  in sisock 0.x, the extensions (``method``, ``encoding``,
  ``max_message_bytes``) as keywords, dropped for a 0.x node.
* :class:`NodeVersions` — which nodes turned out to be sisock 0.x (they
  refuse the ``encoding`` extension with autobahn's generic errors) and the
  call to send them instead.
* :class:`Parts` — streamed parts (progressive results) assembled into one
  :class:`~sisock.core.protocol.Result`, keeping the node's ``field_timeline``.
* :func:`remote_error` — a WAMP error from a node as a typed
  :class:`~sisock.core.errors.SisockError` whose ``details`` carry what the node
  said in the error's keyword arguments (``min_stride`` and ``limit`` of a
  ``too_much_data`` refusal).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sisock.core import wire
from sisock.core.errors import BadArgument, NotFound, SisockError, TooMuchData
from sisock.core.protocol import OLD_NODE_ERRORS, Result

__all__ = ["DataCall", "NodeVersions", "Parts", "is_old_node_refusal", "remote_error"]


@dataclass(frozen=True)
class DataCall:
    """One ``get_data`` call as a consumer sends it.

    Attributes
    ----------
    fields : list of str
    start, end : float
        As the caller gave them (UNIX seconds, or <= 0 for "before now").
    min_stride : float or None
    method : str or None
        Sent only when given (a 0.x node knows no ``method``).
    binary : bool
        Ask for binary arrays (``encoding="binary"``).
    max_message_bytes : int or None
        The largest message the consumer's transport takes (the node
        assumes 1 MiB without it).
    legacy : bool
        A sisock 0.x node: no extension at all.
    """

    fields: Sequence[str]
    start: float
    end: float
    min_stride: float | None = None
    method: str | None = None
    binary: bool = True
    max_message_bytes: int | None = None
    legacy: bool = False

    @property
    def args(self) -> tuple:
        """Positional arguments (the 0.x signature)."""
        return (list(self.fields), self.start, self.end, self.min_stride)

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments: the extensions this node understands."""
        out: dict[str, Any] = {}
        if self.method is not None:
            out["method"] = self.method
        if self.legacy:
            return out
        if self.binary:
            out["encoding"] = "binary"
        if self.max_message_bytes is not None:
            out["max_message_bytes"] = int(self.max_message_bytes)
        return out

    def for_old_node(self) -> DataCall:
        """The same request for a sisock 0.x node (lists, no extensions)."""
        return replace(self, binary=False, max_message_bytes=None, legacy=True)


def is_old_node_refusal(error_uri: str) -> bool:
    """True if a node refused the extensions because it predates them (sisock 0.x).

    A sisock node sends only ``{base}.error.*``; autobahn's generic errors
    (:data:`sisock.core.protocol.OLD_NODE_ERRORS`) come from a 0.x node.
    """
    return error_uri in OLD_NODE_ERRORS


class NodeVersions:
    """Which nodes are sisock 0.x, learnt from their refusals."""

    def __init__(self) -> None:
        self.old: set[str] = set()

    def call(self, node: str, request: DataCall) -> DataCall:
        """The call to send ``node`` for ``request``."""
        return request.for_old_node() if node in self.old else request

    def fallback(self, node: str, sent: DataCall, error_uri: str) -> DataCall | None:
        """After ``node`` refused ``sent`` with ``error_uri``: the call to send instead, or None.

        Only a refusal of the extensions by a 0.x node has a fallback (sent
        once; the node is remembered).
        """
        if sent.legacy or not is_old_node_refusal(error_uri):
            return None
        self.old.add(node)
        return sent.for_old_node()


class Parts:
    """Streamed parts of one answer, assembled in place (see :mod:`sisock.core.wire`)."""

    def __init__(self) -> None:
        self._asm = wire.Assembler()
        self.field_timeline: dict[str, str] | None = None

    def add(self, part: Any) -> None:
        """A progressive result, or the final answer."""
        self._asm.add(part)
        if isinstance(part, Mapping) and isinstance(part.get("field_timeline"), Mapping):
            self.field_timeline = dict(part["field_timeline"])

    @property
    def received(self) -> int:
        """Samples received so far."""
        return self._asm.received

    @property
    def expected(self) -> int:
        """Samples the answer holds in all (as the parts announce)."""
        return self._asm.expected

    @property
    def count(self) -> int:
        """Parts received."""
        return self._asm.parts

    def reply(self) -> dict:
        """The whole answer in ``get_data`` shape (numpy arrays), ``field_timeline`` kept."""
        reply = self._asm.reply()
        if self.field_timeline is not None:
            reply["field_timeline"] = self.field_timeline
        return reply

    def result(self) -> Result:
        """The whole answer as a :class:`~sisock.core.protocol.Result`."""
        return Result.from_wire(self.reply())


# Nodes that predate the error's keyword arguments said the stride only in
# their message; read it there for them.
_MIN_STRIDE_TEXT = re.compile(r"min_stride\s*>=?\s*([0-9.eE+-]+)")

_KINDS: dict[str, type[SisockError]] = {
    "bad_argument": BadArgument,
    "too_much_data": TooMuchData,
    "not_found": NotFound,
}


def remote_error(
    base_uri: str, error_uri: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
) -> SisockError | None:
    """A node's WAMP error as a typed error, or None when it is not a sisock error.

    Parameters
    ----------
    base_uri : str
        The realm's base URI (errors are ``{base}.error.<kind>``).
    error_uri, args, kwargs
        The WAMP error as received.

    Returns
    -------
    SisockError or None
        :class:`~sisock.core.errors.BadArgument`, :class:`~sisock.core.errors.TooMuchData`,
        :class:`~sisock.core.errors.NotFound` or a plain :class:`SisockError`
        (``kind`` set from the URI), with ``details`` from ``kwargs``.
    """
    prefix = f"{base_uri}.error."
    if not error_uri.startswith(prefix):
        return None
    kind = error_uri[len(prefix) :]
    message = str(args[0]) if args else error_uri
    details = {k: v for k, v in (kwargs or {}).items() if isinstance(k, str)}
    if kind == "too_much_data" and "min_stride" not in details:
        found = _MIN_STRIDE_TEXT.search(message)
        if found:
            details["min_stride"] = float(found.group(1))
    cls = _KINDS.get(kind)
    if cls is not None:
        return cls(message, **details)
    err = SisockError(message, **details)
    err.kind = kind
    return err
