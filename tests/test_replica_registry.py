"""The hub registry's rules for replicated names (pure, no router)."""

from __future__ import annotations

from sisock.hub.registry import Registry


def test_first_claim_decides_replicable():
    """A name first claimed as a replica takes replicas of the same authid only."""
    r = Registry()
    assert r.claim("arch", 1, replica=True, authid="site-archive")
    assert r.claim("arch", 2, replica=True, authid="site-archive")
    assert not r.claim("arch", 3, replica=True, authid="other")  # other credentials
    assert not r.claim("arch", 4)  # not a replica
    assert not r.claim("arch", 5, replica=True, authid=None)
    assert r.add("arch", "archive", 2) == (True, True)
    assert r.add("arch", "archive", 1) == (True, False)  # listed once, announced once
    assert r.listed() == [{"name": "arch", "description": "archive"}]
    assert r.replica_counts() == {"arch": 2}


def test_single_name_takes_no_replica():
    """A name first claimed by a single node refuses replicas, even with the same authid."""
    r = Registry()
    assert r.claim("solo", 1)
    assert not r.claim("solo", 2, replica=True, authid="server")
    assert r.add("solo", "", 2) == (False, False)
    assert r.replica_counts() == {}
    r.add("solo", "one", 1)
    assert r.replica_counts() == {"solo": 1}


def test_members_leave_one_by_one():
    """The name stays listed until its last member leaves, whatever the order."""
    r = Registry()
    for s in (1, 2, 3):
        assert r.claim("arch", s, replica=True, authid="a")
    r.add("arch", "d", 1)
    assert r.drop_session(1) == []  # the first owner leaves: another takes over
    assert r.owner("arch") in (2, 3) and r.replica_counts() == {"arch": 2}
    assert r.subtract("arch", 3) is None  # a replica withdraws itself only
    assert r.replica_counts() == {"arch": 1}
    assert not r.claim("arch", 9)  # still replicable, still refused to single nodes
    gone = r.drop_session(2)
    assert [e.name for e in gone] == ["arch"] and r.listed() == []
    assert r.claim("arch", 9)  # free again


def test_restore_replicas_after_hub_restart():
    """Replicas found in the router are listed again with their authid and count."""
    r = Registry()
    r.restore_replicas("arch", [7, 5], "a")
    assert r.owner("arch") == 5 and r.replica_counts() == {"arch": 2}
    assert r.claim("arch", 8, replica=True, authid="a")
    assert not r.claim("arch", 9, replica=True, authid="b")
    assert r.replica_counts() == {"arch": 3}
