"""The hub's bookkeeping: which session owns which data-node name (pure).

A name is *claimed* when its session first registers a procedure under
``{base}.consumer.<name>.`` (the router's authorizer asks the hub), and
*listed* once the session calls ``data_node.add``. Either order works, so
sisock 0.x servers (register, then add) and new ones (add, then register)
are both served. Only the owning session may list or subtract a name; a
name is freed when its session leaves.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Entry:
    """One data-node name.

    Attributes
    ----------
    name : str
    description : str
    session : int
        WAMP session id of the owner.
    listed : bool
        True once ``data_node.add`` succeeded (consumers see it).
    """

    name: str
    description: str
    session: int
    listed: bool = False

    def public(self) -> dict:
        """The ``{"name", "description"}`` dict consumers receive."""
        return {"name": self.name, "description": self.description}


class Registry:
    """Names, owners and listing state of data nodes."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def owner(self, name: str) -> int | None:
        """Session id owning ``name``, or None."""
        entry = self._entries.get(name)
        return entry.session if entry else None

    def description(self, name: str) -> str:
        """Description of ``name`` ("" if unknown)."""
        entry = self._entries.get(name)
        return entry.description if entry else ""

    def claim(self, name: str, session: int) -> bool:
        """Reserve ``name`` for ``session`` (True if free or already its own)."""
        entry = self._entries.get(name)
        if entry is None:
            self._entries[name] = Entry(name, "", session, listed=False)
            return True
        return entry.session == session

    def add(self, name: str, description: str, session: int) -> tuple[bool, bool]:
        """List ``name`` for ``session``.

        Returns
        -------
        ok : bool
            False when another session owns the name.
        newly_listed : bool
            True when consumers should be told (it was not listed before).
        """
        entry = self._entries.get(name)
        if entry is not None and entry.session != session:
            return False, False
        if entry is None:
            entry = self._entries[name] = Entry(name, description or "", session)
        newly = not entry.listed
        entry.listed = True
        if description:
            entry.description = description
        return True, newly

    def subtract(self, name: str, session: int) -> Entry | None:
        """Remove ``name`` if ``session`` owns it; return the entry if it was listed."""
        entry = self._entries.get(name)
        if entry is None or entry.session != session:
            return None
        del self._entries[name]
        return entry if entry.listed else None

    def drop_session(self, session: int) -> list[Entry]:
        """Remove every name of a session that left; return the listed ones."""
        gone = [e for e in self._entries.values() if e.session == session]
        for e in gone:
            del self._entries[e.name]
        return [e for e in gone if e.listed]

    def listed(self) -> list[dict]:
        """Public dicts of listed nodes, sorted by name."""
        return [e.public() for e in sorted(self._entries.values(), key=lambda e: e.name)
                if e.listed]

    def restore(self, name: str, session: int) -> None:
        """Re-create a listed entry found in the router after a hub restart."""
        entry = self._entries.get(name)
        if entry is None or entry.session == session:
            self._entries[name] = Entry(name, entry.description if entry else "", session,
                                        listed=True)
