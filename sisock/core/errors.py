"""WAMP error URIs and the exceptions that carry them.

Every error a sisock component raises towards a caller is a
:class:`SisockError`; the WAMP shells turn it into an
``autobahn.wamp.exception.ApplicationError`` whose URI is
``{base}.error.<kind>`` (README, "Wire protocol") and whose single argument is a
message a person can act on: which argument, what was expected, what limit.

This module has no reactor and no autobahn import so that pure cores
(archive, downsampling, Modbus decoding) can raise these errors too.
"""

from __future__ import annotations

from typing import Any


class SisockError(Exception):
    """Base class for errors that travel to a caller as a WAMP error.

    Parameters
    ----------
    message : str
        What happened and what to do, for a person.
    **details
        Values a program acts on (e.g. ``min_stride`` and ``limit`` of a
        ``too_much_data`` refusal); they travel as the WAMP error's keyword
        arguments, which callers that do not read them never see. None
        values are left out.

    Attributes
    ----------
    kind : str
        Last component of the error URI, e.g. ``"bad_argument"`` gives
        ``"{base}.error.bad_argument"``.
    details : dict
        The keyword arguments given.
    """

    kind = "internal"

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.details = {k: v for k, v in details.items() if v is not None}

    def uri(self, base_uri: str) -> str:
        """Return the full WAMP error URI under ``base_uri``."""
        return f"{base_uri}.error.{self.kind}"


class BadArgument(SisockError, ValueError):
    """An argument is malformed or out of range (the message names it)."""

    kind = "bad_argument"


class TooMuchData(SisockError):
    """A request would return more samples than the node allows."""

    kind = "too_much_data"


class NotFound(SisockError):
    """What was asked for does not exist (a node, a point)."""

    kind = "not_found"
