"""max_hops bounds every SIP leg of a routed call, failovers included; the receiving side's
482/483 so that no sender adds legs after it; local failures are not node failures."""

import pytest

from dialplan_funcs.callservice.routing import (
    LOCAL_FAILURE, Attempt, Cluster, Disposition, Outcome, Request, RoutingResult, Status,
    arm_code, classify_dial, local_failure, never_sent, plan, reject_response, run,
    sip_response_for_cause,
)

CLUSTER = Cluster(local_sop="sopA", sops=frozenset({"sopA", "sopB", "sopC"}), max_hops=2)
UNREACHABLE = classify_dial("CHANUNAVAIL", None, None)
CONGESTED = classify_dial("CONGESTION", 34, "SIP 503 Service Unavailable")
ANSWER = classify_dial("ANSWER", 16, None)
UNSENT = Outcome(Disposition.FAILOVER, "UNREACHABLE", sent=False)


def route(request, outcomes, hop=0, came_from=None, visited=(), cluster=CLUSTER):
    """Run a plan with scripted outcomes; return (result, [(sop, legs used before it)])."""
    queue, calls = list(outcomes), []

    def dial(step, used):
        calls.append((step.sop, used))
        return queue.pop(0)
    the_plan = plan(request, cluster, came_from, visited, hop)
    return run(the_plan, dial, hop, cluster.max_hops), calls


def tried(result):
    return result.tried


def test_a_failover_leg_counts_the_leg_that_failed():
    result, calls = route(Request("2000", "sopB", "sopC"), [CONGESTED, ANSWER])
    assert calls == [("sopB", 0), ("sopC", 1)]          # the legs carry h=1, then h=2
    assert result.legs == 2 and tried(result) == "sopB:SIP503,sopC:ANSWER"


def test_no_failover_leg_beyond_max_hops_on_a_node_that_received_the_call():
    # Arrived with h=1, max_hops 2: one leg left; the failover would be the third.
    result, calls = route(Request("2000", "sopB", "sopC"), [CONGESTED], hop=1,
                          came_from="sopX", visited=("sopX",),
                          cluster=Cluster("sopA", frozenset({"sopA", "sopB", "sopC", "sopX"}),
                                          max_hops=2))
    assert calls == [("sopB", 1)]
    assert tried(result) == "sopB:SIP503,sopC:HOP_LIMIT"
    assert result.status is Status.UNAVAILABLE


def test_legs_that_never_left_do_not_count():
    result, calls = route(Request("2000", "sopB", "sopC"), [UNSENT, ANSWER], hop=1,
                          came_from="sopX", visited=("sopX",),
                          cluster=Cluster("sopA", frozenset({"sopA", "sopB", "sopC", "sopX"}),
                                          max_hops=2))
    assert calls == [("sopB", 1), ("sopC", 1)] and result.legs == 1   # only sopC's


def test_a_local_failure_tries_the_next_sop_and_counts_no_leg():
    result, calls = route(Request("2000", "sopB", "sopC"), [local_failure(), ANSWER])
    assert calls == [("sopB", 0), ("sopC", 0)]
    assert tried(result) == f"sopB:{LOCAL_FAILURE},sopC:ANSWER" and result.status is Status.ANSWER


def test_only_local_failures_give_unavailable_and_no_failover_is_counted():
    result, _ = route(Request("2000", "sopB", "sopC"), [local_failure(), local_failure()])
    assert result.status is Status.UNAVAILABLE
    assert not any(a.outcome.failover for a in result.attempts)
    assert all(a.outcome.disposition is Disposition.LOCAL for a in result.attempts)


def test_the_local_sop_is_delivered_whatever_the_legs_used():
    result, calls = route(Request("2000", "sopB", "sopA"), [CONGESTED, ANSWER], hop=1,
                          came_from="sopX", visited=("sopX",),
                          cluster=Cluster("sopA", frozenset({"sopA", "sopB", "sopX"}), max_hops=2))
    assert calls == [("sopB", 1), ("sopA", 2)] and result.status is Status.ANSWER


@pytest.mark.parametrize("outcome", [classify_dial("CHANUNAVAIL", 127, "SIP 482 Loop Detected"),
                                     classify_dial("NOANSWER", 19, "SIP 483 Too Many Hops")])
def test_a_loop_answer_from_the_primary_ends_the_routing(outcome):
    result, calls = route(Request("2000", "sopB", "sopC"), [outcome])
    assert calls == [("sopB", 0)] and result.status is Status.LOOP and result.sop == "sopB"


# ---------------------------------------------------------------------------- receiving side

def result_of(status, *attempts):
    return RoutingResult(status, None, tuple(Attempt(sop, o) for sop, o in attempts))


REFUSED = {label: Outcome(Disposition.REFUSED, label, sent=False)
           for label in ("CAME_FROM", "VISITED", "HOP_LIMIT", "DELIVERED")}


@pytest.mark.parametrize("label", ["CAME_FROM", "VISITED", "HOP_LIMIT"])
def test_a_loop_refusal_arms_482(label):
    assert arm_code(result_of(Status.LOOP, ("sopB", REFUSED[label]))) == 482


def test_a_call_already_delivered_here_is_not_armed():
    # The callflow serves it; what it answers is the service's own outcome.
    assert arm_code(result_of(Status.LOOP, ("sopB", REFUSED["DELIVERED"]),
                              ("sopC", REFUSED["DELIVERED"]))) is None


def test_legs_sent_downstream_arm_483():
    assert arm_code(result_of(Status.UNAVAILABLE, ("sopC", CONGESTED),
                              ("sopD", REFUSED["HOP_LIMIT"]))) == 483
    assert arm_code(result_of(Status.BUSY, ("sopC", classify_dial("BUSY", 17, "SIP 486")))) == 483


def test_a_downstream_loop_answer_arms_482():
    loop = classify_dial("CHANUNAVAIL", 127, "SIP 482 Loop Detected")
    assert arm_code(result_of(Status.LOOP, ("sopC", loop))) == 482


@pytest.mark.parametrize("attempts", [
    [("sopC", Outcome(Disposition.FAILOVER, "KNOWN_DOWN", sent=False))],
    [("sopC", local_failure())],
    [("sopC", UNSENT)],
])
def test_nothing_sent_leaves_the_sender_free_to_fail_over(attempts):
    assert arm_code(result_of(Status.UNAVAILABLE, *attempts)) is None


@pytest.mark.parametrize("status", [Status.ANSWER, Status.CANCEL])
def test_answered_or_cancelled_is_never_armed(status):
    assert arm_code(result_of(status, ("sopC", ANSWER))) is None


@pytest.mark.parametrize("cause, sip", [(0, 603), (16, 603), (17, 486), (21, 403), (34, 503),
                                        (1, 404), (19, 480), (127, 500), ("", 603), (None, 603)])
def test_the_response_an_unanswered_pjsip_call_sends_for_its_cause(cause, sip):
    assert sip_response_for_cause(cause) == sip


@pytest.mark.parametrize("cause", [21, 34, 1, 3, 38, 42, 127, 23])
def test_a_response_the_sender_would_fail_over_on_is_replaced(cause):
    assert reject_response(482, cause, "LOOP") == 482
    assert reject_response(483, cause, "UNAVAILABLE") == 483


@pytest.mark.parametrize("cause, status", [(17, "BUSY"), (16, "LOOP"), (0, "UNAVAILABLE"),
                                           (19, "NOANSWER"), (18, "NOANSWER")])
def test_a_response_the_sender_takes_as_final_stands(cause, status):
    assert reject_response(483, cause, status) is None


def test_no_answer_without_ringing_is_replaced():
    assert reject_response(483, 19, "UNAVAILABLE") == 483


# ---------------------------------------------------------------------------- local failures

@pytest.mark.parametrize("args, expected", [
    (("CHANUNAVAIL", None, False, 0.01, 2.0), True),     # never waited on: not sent
    (("CHANUNAVAIL", None, False, 0.01, 0.0), True),     # no progress timeout: timer B is longer
    (("CHANUNAVAIL", None, False, 2.0, 2.0), False),     # the progress timeout expired: silence
    (("CHANUNAVAIL", None, False, 1.5, 0.0), False),
    (("CHANUNAVAIL", "SIP 404 Not Found", False, 0.01, 2.0), False),   # the SOP answered
    (("CHANUNAVAIL", None, True, 0.01, 2.0), False),     # it rang
    (("CONGESTION", None, False, 0.01, 2.0), False),
    (("BUSY", None, False, 0.01, 2.0), False),
])
def test_a_leg_is_known_never_sent_only_when_nothing_can_have_answered(args, expected):
    assert never_sent(*args) is expected

