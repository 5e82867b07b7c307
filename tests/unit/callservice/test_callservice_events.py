"""CallService's events and metrics as built from a routing result (events.py)."""
from __future__ import annotations

import pytest

from dialplan_funcs.callservice import events
from dialplan_funcs.callservice.routing import (Attempt, Disposition, Outcome, Status,
                                                local_failure)
from pbx_python import metrics

ANSWER = Outcome(Disposition.FINAL, "ANSWER", Status.ANSWER)
BUSY = Outcome(Disposition.FINAL, "BUSY", Status.BUSY)
UNREACHABLE = Outcome(Disposition.FAILOVER, "UNREACHABLE")
KNOWN_DOWN = Outcome(Disposition.FAILOVER, "KNOWN_DOWN", sent=False)
VISITED = Outcome(Disposition.REFUSED, "VISITED", sent=False)


def result(**kw):
    args = dict(channel="PJSIP/phones-00000001", uniqueid="1700000000.1", linkedid="1700000000.0",
                exten="2000", status="ANSWER", sop="sopB",
                attempts=(Attempt("sopA", KNOWN_DOWN), Attempt("sopB", ANSWER)),
                setup_time=0.2345, local_sop="sopA")
    args.update(kw)
    return events.result_event(**args)


def test_result_event_carries_the_call_identity_status_and_tried_list_in_order():
    assert result() == {
        "Channel": "PJSIP/phones-00000001", "Uniqueid": "1700000000.1",
        "Linkedid": "1700000000.0", "Exten": "2000", "Status": "ANSWER", "SOP": "sopB",
        "Tried": "sopA:KNOWN_DOWN,sopB:ANSWER", "Attempts": "2",
        "Attempt1": "sopA KNOWN_DOWN FAILOVER", "Attempt2": "sopB ANSWER FINAL",
        "SetupTime": "0.234", "LocalSOP": "sopA", "Error": ""}
    assert list(result())[:5] == ["Channel", "Uniqueid", "Linkedid", "Exten", "Status"]


def test_result_event_of_invalid_arguments_has_no_attempts_and_the_error():
    ev = result(status="INVALIDARGS", sop=None, attempts=(), setup_time=0.0,
                error="extension '' is invalid")
    assert ev["SOP"] == "" and ev["Tried"] == "" and ev["Attempts"] == "0"
    assert not any(k.startswith("Attempt") and k != "Attempts" for k in ev)
    assert ev["Error"] == "extension '' is invalid" and ev["SetupTime"] == "0.000"


def test_setup_time_is_empty_when_unknown():
    assert result(setup_time=None)["SetupTime"] == ""


@pytest.mark.parametrize("text", ["a\r\nEvent: Forged", "a\nB: c", "a\rB", "a\x85b", "a\u2028b",
                                  "a\x0bb"])
def test_no_event_value_can_hold_a_line_break(text):
    ev = result(exten=text, error=text)
    for value in ev.values():
        assert value.splitlines() == [value] and "\r" not in value and "\n" not in value
    assert ev["Exten"].startswith("a")


def test_line_breaks_are_shown_escaped():
    assert events.clean("a\r\nb\x85") == "a\\r\\nb\\x85"


def test_a_sop_starts_unknown_and_each_change_is_reported_once():
    states = events.SopStates()
    assert states.get("sopA") is events.SopState.UNKNOWN
    first = states.observe("sopA", ANSWER)
    assert first == events.SopStateChange("sopA", events.SopState.UP, events.SopState.UNKNOWN,
                                          "ANSWER")
    assert states.observe("sopA", BUSY) is None          # still UP
    down = states.observe("sopA", UNREACHABLE)
    assert (down.state, down.previous, down.reason) == (events.SopState.DOWN,
                                                        events.SopState.UP, "UNREACHABLE")
    assert states.observe("sopA", KNOWN_DOWN) is None    # still DOWN
    back = states.observe("sopA", ANSWER)
    assert (back.state, back.previous) == (events.SopState.UP, events.SopState.DOWN)


@pytest.mark.parametrize("outcome", [local_failure(), VISITED])
def test_local_failures_and_loop_refusals_leave_the_sop_state_alone(outcome):
    states = events.SopStates()
    states.observe("sopA", UNREACHABLE)
    assert states.observe("sopA", outcome) is None
    assert states.get("sopA") is events.SopState.DOWN


def test_sop_state_event_headers():
    change = events.SopStateChange("sopB", events.SopState.DOWN, events.SopState.UP,
                                   "KNOWN_DOWN")
    assert events.sop_state_event(change, local_sop="sopA", channel="PJSIP/x-1",
                                  uniqueid="1.2") == {
        "SOP": "sopB", "State": "DOWN", "PreviousState": "UP", "Reason": "KNOWN_DOWN",
        "LocalSOP": "sopA", "Channel": "PJSIP/x-1", "Uniqueid": "1.2"}


def test_metrics_count_runs_attempts_failovers_and_setup_time():
    reg = metrics.Registry()
    m = events.CallServiceMetrics(reg)
    m.record("ANSWER", "sopB", (Attempt("sopA", UNREACHABLE), Attempt("sopB", ANSWER)), 0.3)
    m.record("UNAVAILABLE", None, (Attempt("sopA", KNOWN_DOWN),), 0.001)
    m.record("INVALIDARGS", None, (), 0.0)
    p = events.PREFIX
    text = reg.render()
    assert f'{p}calls_total{{sop="sopB",status="ANSWER"}} 1\n' in text
    assert f'{p}calls_total{{sop="",status="UNAVAILABLE"}} 1\n' in text
    assert f'{p}calls_total{{sop="",status="INVALIDARGS"}} 1\n' in text
    assert f'{p}attempts_total{{sop="sopA",result="UNREACHABLE"}} 1\n' in text
    assert f'{p}attempts_total{{sop="sopA",result="KNOWN_DOWN"}} 1\n' in text
    assert f'{p}attempts_total{{sop="sopB",result="ANSWER"}} 1\n' in text
    assert f'{p}failovers_total{{sop="sopA"}} 2\n' in text
    assert f'{p}failovers_total{{sop="sopB"}}' not in text
    assert f'{p}setup_seconds_bucket{{sop="sopB",status="ANSWER",le="0.25"}} 0\n' in text
    assert f'{p}setup_seconds_bucket{{sop="sopB",status="ANSWER",le="0.5"}} 1\n' in text
    assert f'{p}setup_seconds_count{{sop="",status="UNAVAILABLE"}} 1\n' in text


def test_metrics_declared_twice_share_their_counts():
    reg = metrics.Registry()
    events.CallServiceMetrics(reg).record("BUSY", "sopA", (Attempt("sopA", BUSY),), 1.0)
    again = events.CallServiceMetrics(reg)     # what a module reload does
    assert again.calls.value(sop="sopA", status="BUSY") == 1
