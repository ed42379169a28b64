"""The hub's bookkeeping: which session owns which data-node name (pure).

A name is *claimed* when its session first registers a procedure under
``{base}.consumer.<name>.`` (the router's authorizer asks the hub), and
*listed* once the session calls ``data_node.add``. Either order works, so
sisock 0.x servers (register, then add) and new ones (add, then register)
are both served. Only the owning session may list or subtract a name; a
name is freed when its session leaves.

*Replicated* names (``sisock serve hdf5 --replica``, ``docs/scaling.md``)
are served by several sessions at once through a WAMP shared
registration. The first claim decides: a name first claimed as a replica is
replicable, and further sessions may join it only when they too claim as a
replica *and* authenticated with the same authid as the first; a name first
claimed as a single node takes no replica, and a replicated name takes no
single node. The name stays listed until its last member leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    replicable : bool
        True when the first claim came from a replica (shared registration).
    authid : str or None
        The authid of the first claimer of a replicable name; every replica
        must run under it.
    replicas : set of int
        Sessions serving the name besides ``session``.
    """

    name: str
    description: str
    session: int
    listed: bool = False
    replicable: bool = False
    authid: str | None = None
    replicas: set[int] = field(default_factory=set)

    def members(self) -> set[int]:
        """Every session serving this name."""
        return {self.session} | self.replicas

    def _leave(self, session: int) -> bool:
        """Forget one member; True when none is left."""
        if session == self.session:
            if not self.replicas:
                return True
            self.session = min(self.replicas)
            session = self.session  # promoted: no longer one of the others
        self.replicas.discard(session)
        return False

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

    def _is_member(self, entry: Entry, session: int) -> bool:
        return session == entry.session or session in entry.replicas

    def description(self, name: str) -> str:
        """Description of ``name`` ("" if unknown)."""
        entry = self._entries.get(name)
        return entry.description if entry else ""

    def claim(self, name: str, session: int, replica: bool = False,
              authid: str | None = None) -> bool:
        """Reserve ``name`` for ``session`` (True if free or already its own).

        With ``replica`` the session asks to serve the name as one of its
        replicas: granted when the name is free (it becomes replicable, for
        ``authid``) or is replicable for the same ``authid``.
        """
        entry = self._entries.get(name)
        if entry is None:
            self._entries[name] = Entry(name, "", session, listed=False,
                                        replicable=replica, authid=authid if replica else None)
            return True
        if self._is_member(entry, session):
            return True
        if replica and entry.replicable and authid is not None and authid == entry.authid:
            entry.replicas.add(session)
            return True
        return False

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
        if entry is not None and not self._is_member(entry, session):
            return False, False
        if entry is None:
            entry = self._entries[name] = Entry(name, description or "", session)
        newly = not entry.listed
        entry.listed = True
        if description:
            entry.description = description
        return True, newly

    def subtract(self, name: str, session: int) -> Entry | None:
        """Remove ``name`` if ``session`` owns it; return the entry if it was listed.

        A replica that subtracts only withdraws itself; the name goes when
        its last member does.
        """
        entry = self._entries.get(name)
        if entry is None or not self._is_member(entry, session):
            return None
        if not entry._leave(session):
            return None
        del self._entries[name]
        return entry if entry.listed else None

    def drop_session(self, session: int) -> list[Entry]:
        """Remove every name of a session that left; return the listed ones."""
        gone = [e for e in self._entries.values()
                if self._is_member(e, session) and e._leave(session)]
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

    def restore_replicas(self, name: str, sessions: list[int], authid: str | None) -> None:
        """Re-create a replicated, listed name found in the router after a hub restart."""
        if not sessions:
            return
        first, *rest = sorted(sessions)
        self._entries[name] = Entry(name, self.description(name), first, listed=True,
                                    replicable=True, authid=authid, replicas=set(rest))

    def replica_counts(self) -> dict[str, int]:
        """``{name: sessions serving it}`` for every listed name."""
        return {e.name: len(e.members()) for e in self._entries.values() if e.listed}
