"""classify_dial: Dial() results mapped to a final status or a node-level failover."""

import pytest

from dialplan_funcs.callservice.routing import (Disposition, Status, classify_dial, classify_local,
                                                local_leg_cause, local_not_here, sip_code)


def final(status, label=None):
    return (Disposition.FINAL, status, label or status.value)


def failover(label):
    return (Disposition.FAILOVER, None, label)


def result(*args, **kwargs):
    o = classify_dial(*args, **kwargs)
    return (o.disposition, o.status, o.label)


@pytest.mark.parametrize("dialstatus, cause, tech, expected", [
    # DIALSTATUS alone (no SIP response, e.g. a Local leg or a dead node)
    ("ANSWER", 16, None, final(Status.ANSWER)),
    ("BUSY", 17, None, final(Status.BUSY)),
    ("NOANSWER", 19, None, final(Status.NOANSWER)),
    ("CANCEL", 16, None, final(Status.CANCEL)),
    ("CHANUNAVAIL", 3, None, failover("UNREACHABLE")),    # no reachable contact: cause 3
    ("CHANUNAVAIL", None, None, failover("UNREACHABLE")),  # progress timeout
    ("CONGESTION", 34, None, failover("CONGESTION")),
    ("CHANUNAVAIL", 21, None, failover("UNREACHABLE")),  # no SIP code: the cause decides nothing
    ("DONTCALL", None, None, final(Status.BUSY, "DONTCALL")),
    ("TORTURE", None, None, final(Status.BUSY, "TORTURE")),
    ("INVALIDARGS", None, None, failover("DIALINVALID")),
    ("", None, None, failover("UNKNOWN")),
    ("SOMETHING", None, None, failover("UNKNOWN")),
])
def test_dialstatus_without_sip_code(dialstatus, cause, tech, expected):
    assert result(dialstatus, cause, tech) == expected


@pytest.mark.parametrize("dialstatus, cause, tech, expected", [
    # What Asterisk 22 reports for each SIP final response (ast_sip_hangup_sip2cause +
    # app_dial handle_cause): the tech cause decides.
    ("BUSY", 17, "SIP 486 Busy Here", final(Status.BUSY)),
    ("BUSY", 17, "SIP 600 Busy Everywhere", final(Status.BUSY)),
    ("CHANUNAVAIL", 21, "SIP 603 Decline", final(Status.BUSY, "DECLINED")),
    ("CHANUNAVAIL", 1, "SIP 404 Not Found", failover("SIP404")),
    ("CHANUNAVAIL", 18, "SIP 408 Request Timeout", failover("SIP408")),
    ("NOANSWER", 19, "SIP 480 Temporarily Unavailable", failover("SIP480")),
    ("CONGESTION", 34, "SIP 503 Service Unavailable", failover("SIP503")),
    ("CHANUNAVAIL", 38, "SIP 500 Server Internal Error", failover("SIP500")),
    ("CHANUNAVAIL", 27, "SIP 502 Bad Gateway", failover("SIP502")),
    ("CHANUNAVAIL", 102, "SIP 504 Server Time-out", failover("SIP504")),
    ("CHANUNAVAIL", 21, "SIP 403 Forbidden", failover("SIP403")),
    ("CHANUNAVAIL", 21, "SIP 401 Unauthorized", failover("SIP401")),
    ("CHANUNAVAIL", 58, "SIP 488 Not Acceptable Here", failover("SIP488")),
])
def test_sip_response_classification(dialstatus, cause, tech, expected):
    assert result(dialstatus, cause, tech) == expected


def test_answer_wins_over_a_stale_tech_cause():
    assert result("ANSWER", 16, "SIP 503 Service Unavailable") == final(Status.ANSWER)


def test_caller_hangup_is_final_cancel_whatever_the_tech_cause():
    assert result("CANCEL", 16, "SIP 487 Request Terminated") == final(Status.CANCEL)


def test_487_after_our_answer_timeout_is_noanswer():
    assert result("NOANSWER", 16, "SIP 487 Request Terminated") == final(Status.NOANSWER)


@pytest.mark.parametrize("tech", ["SIP 480 Temporarily Unavailable", "SIP 408 Request Timeout"])
def test_480_or_408_after_ringing_is_noanswer(tech):
    assert result("NOANSWER", 19, tech, progressed=True) == final(Status.NOANSWER)


def test_503_after_ringing_still_fails_over():
    assert result("CONGESTION", 34, "SIP 503", progressed=True) == failover("SIP503")


def test_non_numeric_hangupcause_is_ignored():
    assert result("CHANUNAVAIL", "abc", "") == failover("UNREACHABLE")


def test_dialstatus_is_case_and_space_insensitive():
    assert result(" answer ", None, None) == final(Status.ANSWER)


def test_failover_property_is_true_only_for_failover():
    assert classify_dial("CONGESTION", None, None).failover
    assert not classify_dial("BUSY", None, None).failover


@pytest.mark.parametrize("text, code", [
    ("SIP 404 Not Found", 404), ("SIP 503", 503), ("  SIP  486 Busy", 486),
    ("", None), (None, None), ("IAX2 34", None), ("SIP abc", None), ("SIP 4040", None),
])
def test_sip_code_is_parsed_from_the_tech_cause(text, code):
    assert sip_code(text) == code


@pytest.mark.parametrize("dialstatus, cause, tech, label", [
    ("CHANUNAVAIL", 127, "SIP 482 Loop Detected", "SIP482"),
    ("NOANSWER", 19, "SIP 483 Too Many Hops", "SIP483"),
])
@pytest.mark.parametrize("progressed", [False, True])
def test_loop_detected_and_too_many_hops_are_final_loop_never_failover(dialstatus, cause, tech,
                                                                        label, progressed):
    # The next node refused for a loop, or used the legs max_hops allows downstream: another
    # SOP would only add legs.
    assert result(dialstatus, cause, tech, progressed=progressed) == final(Status.LOOP, label)


# ---------------------------------------------------------------------------- local delivery

def local(*args, **kwargs):
    o = classify_local(*args, **kwargs)
    return (o.disposition, o.status, o.label)


@pytest.mark.parametrize("how, dialstatus, cause, progressed, expected", [
    # How a service ends, what Dial on the Local channel reports, and the result a remote SOP
    # gives for the same service (the SIP response chan_pjsip sends for it).
    ("answer", "ANSWER", "16", False, final(Status.ANSWER)),
    ("Busy()", "BUSY", None, False, final(Status.BUSY)),                      # 486
    ("Hangup(17)", "BUSY", "17", False, final(Status.BUSY)),                  # 486
    ("Congestion()", "CONGESTION", None, False, failover("SIP503")),          # 503
    ("Hangup(34)", "CONGESTION", "34", False, failover("SIP503")),            # 503
    ("Hangup() after Ringing()", "NOANSWER", "16", True, final(Status.BUSY, "DECLINED")),  # 603
    ("Hangup() at once", "NOANSWER", "16", False, final(Status.BUSY, "DECLINED")),         # 603
    ("Hangup(21)", "CHANUNAVAIL", "21", False, failover("SIP403")),           # 403
    ("Hangup(21) after Ringing()", "CHANUNAVAIL", "21", True, failover("SIP403")),
    ("Hangup(19) after Ringing()", "NOANSWER", "19", True, final(Status.NOANSWER)),  # 480
    ("Hangup(19) at once", "NOANSWER", "19", False, failover("SIP480")),      # 480: not here
    ("Hangup(1)", "CHANUNAVAIL", "1", False, failover("SIP404")),             # 404
    ("Hangup(18) at once", "CHANUNAVAIL", "18", False, failover("SIP408")),   # 408
    ("Hangup(38)", "CHANUNAVAIL", "38", False, failover("SIP500")),           # 500
    ("ringing until T()", "NOANSWER", None, True, final(Status.NOANSWER)),    # Dial ended it
    ("caller hung up", "CANCEL", "16", True, final(Status.CANCEL)),
])
def test_a_local_service_ends_as_the_same_service_on_a_remote_sop(how, dialstatus, cause,
                                                                   progressed, expected):
    assert local(dialstatus, cause, progressed=progressed) == expected


@pytest.mark.parametrize("cause", [None, "", "0", 0, "abc"])
def test_a_local_leg_without_a_cause_of_its_own_is_classified_by_dialstatus(cause):
    assert local("NOANSWER", cause, progressed=True) == final(Status.NOANSWER)
    assert local("CHANUNAVAIL", cause) == failover("UNREACHABLE")


def test_local_hangupcause_as_int_or_string_is_the_same():
    assert local("CHANUNAVAIL", 21) == local("CHANUNAVAIL", " 21 ") == failover("SIP403")


def test_a_local_outcome_counts_as_delivered():
    assert classify_local("NOANSWER", "16").sent


def test_a_missing_local_service_is_what_a_remote_sop_answers_for_it_404_and_no_leg():
    outcome = local_not_here()
    assert (outcome.disposition, outcome.label, outcome.sent) == (Disposition.FAILOVER,
                                                                 "SIP404", False)


@pytest.mark.parametrize("before, after, cause", [
    ("", "21", 21),        # a fresh caller: the leg ended with Hangup(21)
    ("0", "16", 16),
    ("21", "16", 16),      # an earlier leg's cause replaced by this leg's
    ("21", "21", None),    # unchanged: may be the earlier leg's (the answer timeout, a cancel)
    ("16", "", None),
    ("34", "0", None),     # Dial set "no cause": nothing to classify by
    ("", "abc", None),
])
def test_the_local_leg_s_cause_is_the_caller_s_hangupcause_when_the_dial_changed_it(before, after,
                                                                                    cause):
    assert local_leg_cause(before, after) == cause
