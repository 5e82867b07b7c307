"""Routing plan: candidate order, skip reasons, invalid input and loop rules."""

import pytest

from dialplan_funcs.callservice.routing import (
    Cluster, Kind, Request, SkipReason, Step, plan,
)

CLUSTER = Cluster(local_sop="sopB", sops=frozenset({"sopA", "sopB", "sopC"}), max_hops=2)


def fresh(exten="1001", sop1="", sop2="", cluster=CLUSTER, known_down=()):
    """Plan for a call that did not arrive from a cluster trunk."""
    return plan(Request(exten, sop1, sop2), cluster, None, (), 0, known_down)


def test_local_primary_is_a_local_candidate():
    p = fresh(sop1="sopB", sop2="sopA")
    assert p.error is None
    assert p.candidates == (Step(1, "sopB", kind=Kind.LOCAL), Step(2, "sopA", kind=Kind.REMOTE))


def test_remote_primary_then_secondary_in_order():
    p = fresh(sop1="sopA", sop2="sopC")
    assert [(s.sop, s.kind) for s in p.candidates] == [("sopA", Kind.REMOTE), ("sopC", Kind.REMOTE)]


def test_remote_primary_then_local_secondary():
    p = fresh(sop1="sopA", sop2="sopB")
    assert [(s.sop, s.kind) for s in p.candidates] == [("sopA", Kind.REMOTE), ("sopB", Kind.LOCAL)]


def test_empty_secondary_is_skipped_as_empty():
    p = fresh(sop1="sopA")
    assert p.error is None and p.skipped == (Step(2, "", skip=SkipReason.EMPTY),)


def test_empty_primary_with_secondary_uses_secondary():
    p = fresh(sop2="sopA")
    assert p.candidates == (Step(2, "sopA", kind=Kind.REMOTE),)
    assert p.skipped == (Step(1, "", skip=SkipReason.EMPTY),)


def test_secondary_equal_to_primary_is_skipped_as_duplicate():
    p = fresh(sop1="sopA", sop2="sopA")
    assert len(p.candidates) == 1 and p.skipped == (Step(2, "sopA", skip=SkipReason.DUPLICATE),)


def test_surrounding_whitespace_of_arguments_is_ignored():
    p = plan(Request(" 1001 ", " sopA", "sopC "), CLUSTER, None, (), 0)
    assert [s.sop for s in p.candidates] == ["sopA", "sopC"]


def test_both_sops_empty_is_invalid():
    p = fresh()
    assert p.error == "no SOP given: Sop1 and Sop2 are both empty" and p.candidates == ()


def test_unknown_sop_makes_the_whole_call_invalid():
    p = fresh(sop1="sopA", sop2="sopZ")
    assert p.error == "Sop2 'sopZ' is not a cluster SOP"
    assert Step(2, "sopZ", skip=SkipReason.UNKNOWN_SOP) in p.skipped


def test_malformed_sop_name_makes_the_call_invalid():
    p = fresh(sop1="sop&A")
    assert p.error is not None and "Sop1" in p.error


def test_invalid_extension_makes_the_call_invalid():
    p = fresh(exten="100&PJSIP/evil", sop1="sopA")
    assert p.error is not None and "extension" in p.error and p.steps == ()


def test_known_down_remote_is_skipped_as_known_down():
    p = fresh(sop1="sopA", sop2="sopC", known_down={"sopA"})
    assert p.skipped == (Step(1, "sopA", skip=SkipReason.KNOWN_DOWN),)
    assert p.candidates == (Step(2, "sopC", kind=Kind.REMOTE),)


def test_local_sop_is_never_known_down():
    p = fresh(sop1="sopB", known_down={"sopB"})
    assert p.candidates == (Step(1, "sopB", kind=Kind.LOCAL),)


# ---- loops ---------------------------------------------------------------------------

def test_call_back_to_the_sop_it_came_from_is_refused():
    # A -> B -> A: on B, for a call that came from A.
    p = plan(Request("1001", "sopA"), CLUSTER, "sopA", ("sopA",), 1)
    assert p.error is None and p.candidates == ()
    assert p.skipped[0] == Step(1, "sopA", skip=SkipReason.CAME_FROM)


def test_came_from_primary_refused_and_local_secondary_delivers_locally():
    # The 1.02 bug: on B, reached from A, asked sop1=A sop2=B -> deliver on B.
    p = plan(Request("1001", "sopA", "sopB"), CLUSTER, "sopA", ("sopA", "sopB"), 1)
    assert p.skipped == (Step(1, "sopA", skip=SkipReason.CAME_FROM),)
    assert p.candidates == (Step(2, "sopB", kind=Kind.LOCAL),)


def test_visited_sop_is_refused():
    # C -> A -> B: on B, A is came_from and C is visited.
    p = plan(Request("1001", "sopC"), CLUSTER, "sopA", ("sopC", "sopA"), 2)
    assert p.skipped[0] == Step(1, "sopC", skip=SkipReason.VISITED) and p.candidates == ()


def test_remote_is_refused_when_hop_reaches_max_hops():
    cluster = Cluster("sopB", frozenset({"sopA", "sopB", "sopC", "sopD"}), max_hops=2)
    p = plan(Request("1001", "sopD"), cluster, "sopA", ("sopC", "sopA"), 2)
    assert p.skipped[0] == Step(1, "sopD", skip=SkipReason.HOP_LIMIT) and p.candidates == ()


def test_remote_is_allowed_below_max_hops():
    p = plan(Request("1001", "sopC"), CLUSTER, "sopA", ("sopA",), 1)
    assert p.candidates == (Step(1, "sopC", kind=Kind.REMOTE),)


def test_max_hops_one_forbids_any_reroute_of_a_received_call():
    cluster = Cluster("sopB", CLUSTER.sops, max_hops=1)
    p = plan(Request("1001", "sopC", "sopB"), cluster, "sopA", ("sopA",), 1)
    assert p.skipped == (Step(1, "sopC", skip=SkipReason.HOP_LIMIT),)
    assert p.candidates == (Step(2, "sopB", kind=Kind.LOCAL),)


@pytest.mark.parametrize("hop", [0, 1, 2, 5, 99])
def test_local_sop_is_allowed_whatever_the_hop_and_path(hop):
    p = plan(Request("1001", "sopB"), CLUSTER, "sopB", ("sopA", "sopB"), hop)
    assert p.candidates == (Step(1, "sopB", kind=Kind.LOCAL),)


def test_came_from_takes_precedence_over_visited_and_known_down():
    p = plan(Request("1001", "sopA"), CLUSTER, "sopA", ("sopA",), 5, known_down={"sopA"})
    assert p.skipped[0].skip is SkipReason.CAME_FROM


def test_loop_refusal_takes_precedence_over_known_down():
    p = plan(Request("1001", "sopC"), CLUSTER, None, ("sopC",), 1, known_down={"sopC"})
    assert p.skipped[0].skip is SkipReason.VISITED


def test_cluster_requires_local_sop_to_be_a_member():
    with pytest.raises(ValueError, match="local SOP"):
        Cluster("sopX", frozenset({"sopA"}))


def test_cluster_requires_positive_max_hops():
    with pytest.raises(ValueError, match="max_hops"):
        Cluster("sopA", frozenset({"sopA"}), max_hops=0)


def test_call_already_delivered_here_for_the_same_extension_is_refused_as_a_loop():
    from dialplan_funcs.callservice import routing as r
    cluster = r.Cluster(local_sop="sopB", sops=frozenset({"sopA", "sopB", "sopC"}))
    p = r.plan(r.Request("2000", "sopC", "sopB"), cluster, "sopA", ("sopA",), 1, delivered=True)
    assert [s.skip for s in p.steps] == [r.SkipReason.DELIVERED, r.SkipReason.DELIVERED]
    result = r.run(p, lambda step: (_ for _ in ()).throw(AssertionError("must not dial")))
    assert result.status is r.Status.LOOP
