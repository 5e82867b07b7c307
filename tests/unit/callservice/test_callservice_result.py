"""final_status, the tried variable, the run() driver and loop_state/dial_string helpers."""

import pytest

from dialplan_funcs.callservice.codec import CallMeta
from dialplan_funcs.callservice.routing import (
    Attempt, Cluster, Disposition, Kind, Outcome, Request, SkipReason, Status, Step,
    classify_dial, dial_string, final_status, format_tried, loop_state, plan, run,
    skip_outcome,
)

CLUSTER = Cluster(
    local_sop="sopB", sops=frozenset({"sopA", "sopB", "sopC"}), endpoints={"sopC": "trunk-c"}
)
UNREACHABLE = classify_dial("CHANUNAVAIL", 3, None)
ANSWER = classify_dial("ANSWER", 16, None)
BUSY = classify_dial("BUSY", 17, "SIP 486 Busy Here")


def scripted(*outcomes):
    """A dial callback returning the given outcomes in order and recording the steps."""
    calls = []
    queue = list(outcomes)

    def dial(step, used):
        calls.append(step)
        dial.used.append(used)
        return queue.pop(0)
    dial.used = []
    dial.calls = calls
    return dial


def test_final_attempt_decides_status_and_sop():
    attempts = [Attempt("sopA", UNREACHABLE), Attempt("sopC", ANSWER)]
    assert final_status(attempts) == (Status.ANSWER, "sopC")


@pytest.mark.parametrize("outcome, status", [
    (BUSY, Status.BUSY), (classify_dial("NOANSWER", 19, None), Status.NOANSWER),
    (classify_dial("CANCEL", 16, None), Status.CANCEL),
    (classify_dial("CHANUNAVAIL", 21, "SIP 603 Decline"), Status.BUSY),
])
def test_each_final_outcome_gives_its_status(outcome, status):
    assert final_status([Attempt("sopA", outcome)]) == (status, "sopA")


def test_all_node_level_failures_give_unavailable():
    congested = classify_dial("CONGESTION", 34, None)
    attempts = [Attempt("sopA", UNREACHABLE), Attempt("sopC", congested)]
    assert final_status(attempts) == (Status.UNAVAILABLE, None)


def test_known_down_counts_as_node_failure():
    assert final_status([Attempt("sopA", skip_outcome(SkipReason.KNOWN_DOWN))]) == (
        Status.UNAVAILABLE, None)


def test_all_refused_for_loops_gives_loop():
    attempts = [Attempt("sopA", skip_outcome(SkipReason.CAME_FROM)),
                Attempt("sopC", skip_outcome(SkipReason.HOP_LIMIT))]
    assert final_status(attempts) == (Status.LOOP, None)


def test_loop_refusal_plus_node_failure_gives_unavailable():
    attempts = [Attempt("sopA", skip_outcome(SkipReason.VISITED)), Attempt("sopC", UNREACHABLE)]
    assert final_status(attempts) == (Status.UNAVAILABLE, None)


def test_no_attempts_means_invalidargs():
    assert final_status([]) == (Status.INVALIDARGS, None)


@pytest.mark.parametrize("reason", [SkipReason.EMPTY, SkipReason.DUPLICATE, SkipReason.UNKNOWN_SOP])
def test_empty_duplicate_and_unknown_skips_are_not_recorded(reason):
    assert skip_outcome(reason) is None


def test_loop_skips_are_refusals():
    for reason in (SkipReason.CAME_FROM, SkipReason.VISITED, SkipReason.HOP_LIMIT):
        assert skip_outcome(reason) == Outcome(Disposition.REFUSED, reason.value, sent=False)


def test_tried_lists_sop_and_label_in_order():
    attempts = [Attempt("sopA", classify_dial("CONGESTION", 34, "SIP 503 Service Unavailable")),
                Attempt("sopC", ANSWER)]
    assert format_tried(attempts) == "sopA:SIP503,sopC:ANSWER"


def test_tried_is_empty_without_attempts():
    assert format_tried([]) == ""


def test_run_local_primary_delivers_locally_once():
    dial = scripted(ANSWER)
    r = run(plan(Request("1001", "sopB", "sopA"), CLUSTER, None, (), 0), dial)
    assert (r.status, r.sop, r.tried) == (Status.ANSWER, "sopB", "sopB:ANSWER")
    assert dial.calls == [Step(1, "sopB", kind=Kind.LOCAL)]


def test_run_fails_over_from_unreachable_primary_to_secondary():
    dial = scripted(UNREACHABLE, ANSWER)
    r = run(plan(Request("1001", "sopA", "sopC"), CLUSTER, None, (), 0), dial)
    assert (r.status, r.sop, r.tried) == (Status.ANSWER, "sopC", "sopA:UNREACHABLE,sopC:ANSWER")


def test_run_stops_at_busy_primary_without_trying_secondary():
    dial = scripted(BUSY)
    r = run(plan(Request("1001", "sopA", "sopC"), CLUSTER, None, (), 0), dial)
    assert (r.status, r.sop, r.tried) == (Status.BUSY, "sopA", "sopA:BUSY")
    assert len(dial.calls) == 1


def test_run_both_unreachable_is_unavailable():
    r = run(plan(Request("1001", "sopA", "sopC"), CLUSTER, None, (), 0),
            scripted(UNREACHABLE, UNREACHABLE))
    assert (r.status, r.sop) == (Status.UNAVAILABLE, None)
    assert r.tried == "sopA:UNREACHABLE,sopC:UNREACHABLE"


def test_run_skips_known_down_without_dialling_it():
    dial = scripted(ANSWER)
    r = run(plan(Request("1001", "sopA", "sopC"), CLUSTER, None, (), 0, {"sopA"}), dial)
    assert r.tried == "sopA:KNOWN_DOWN,sopC:ANSWER"
    assert [s.sop for s in dial.calls] == ["sopC"]


def test_run_invalid_plan_places_no_call():
    dial = scripted()
    r = run(plan(Request("1001", "sopZ"), CLUSTER, None, (), 0), dial)
    assert (r.status, r.tried, dial.calls) == (Status.INVALIDARGS, "", [])
    assert r.error == "Sop1 'sopZ' is not a cluster SOP"


def test_run_a_to_b_to_a_is_loop():
    r = run(plan(Request("1001", "sopA"), CLUSTER, "sopA", ("sopA",), 1), scripted())
    assert (r.status, r.tried) == (Status.LOOP, "sopA:CAME_FROM")


def test_run_primary_down_secondary_reruns_callservice_and_delivers_locally():
    # C -> B because A is down; B's callflow runs CallService(1001, sopA, sopB) again.
    came_from, visited, hop = loop_state("sopC", CallMeta("sopC", ("sopC",), 1, "1001"))
    dial = scripted(UNREACHABLE, ANSWER)
    r = run(plan(Request("1001", "sopA", "sopB"), CLUSTER, came_from, visited, hop), dial)
    assert (r.status, r.sop, r.tried) == (Status.ANSWER, "sopB", "sopA:UNREACHABLE,sopB:ANSWER")


def test_run_passes_each_candidate_step_to_dial():
    dial = scripted(UNREACHABLE, ANSWER)
    run(plan(Request("1001", "sopA", "sopB"), CLUSTER, None, (), 0), dial)
    assert [(s.sop, s.kind) for s in dial.calls] == [("sopA", Kind.REMOTE), ("sopB", Kind.LOCAL)]


def test_loop_state_of_a_call_not_from_the_cluster():
    assert loop_state(None, None) == (None, (), 0)


def test_loop_state_of_a_trunk_call_without_metadata_counts_one_hop():
    assert loop_state("sopA", None) == ("sopA", ("sopA",), 1)


def test_loop_state_uses_metadata_path_and_hop():
    meta = CallMeta("sopA", ("sopC", "sopA"), 2, "1001")
    assert loop_state("sopA", meta) == ("sopA", ("sopC", "sopA"), 2)


def test_loop_state_falls_back_to_origin_when_trunk_is_unknown():
    meta = CallMeta("sopA", ("sopA",), 1, "1001")
    assert loop_state(None, meta) == ("sopA", ("sopA",), 1)


def test_loop_state_adds_a_trunk_sop_missing_from_the_path():
    meta = CallMeta("sopA", ("sopA",), 1, "1001")
    assert loop_state("sopC", meta) == ("sopC", ("sopA", "sopC"), 1)


def test_dial_string_for_remote_uses_the_endpoint():
    def remote(sop):
        return dial_string(Step(1, sop, kind=Kind.REMOTE), "1001", CLUSTER, "svc")
    assert remote("sopA") == "PJSIP/1001@sopA"
    assert remote("sopC") == "PJSIP/1001@trunk-c"


def test_dial_string_for_local_uses_a_no_optimize_local_channel():
    assert dial_string(Step(1, "sopB", kind=Kind.LOCAL), "*97", CLUSTER, "svc") == "Local/*97@svc/n"


def test_dial_string_refuses_a_skipped_step():
    with pytest.raises(ValueError, match="not a candidate"):
        dial_string(Step(1, "sopA", skip=SkipReason.VISITED), "1001", CLUSTER, "svc")


def test_dial_string_refuses_an_unsafe_extension():
    with pytest.raises(ValueError):
        dial_string(Step(1, "sopA", kind=Kind.REMOTE), "1&DAHDI/g1/123", CLUSTER, "svc")


def test_cluster_maps_trunk_endpoint_back_to_its_sop():
    assert CLUSTER.sop_for_endpoint("trunk-c") == "sopC"
    assert CLUSTER.sop_for_endpoint("sopA") == "sopA"
    assert CLUSTER.sop_for_endpoint("sopC") is None   # overridden: not its endpoint any more
    assert CLUSTER.sop_for_endpoint("sopB") is None   # the local SOP has no trunk
    assert CLUSTER.sop_for_endpoint("phone-1") is None
