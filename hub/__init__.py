"""The sisock hub (installed as ``sisock.hub``): the list of live data nodes."""

from .registry import Entry, Registry

__all__ = ["Entry", "Registry"]
