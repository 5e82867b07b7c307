"""CallService's AMI events (CallServiceResult, CallServiceSopState) and its metrics as a
Prometheus scrape of Asterisk's own res_prometheus shows them, on a real cluster."""
from __future__ import annotations

import base64
import os
import re
import signal
import socket

import pytest

from pbx_python.testing import free_port
from pbx_python.testing.cluster import ClusterSpec, start_cluster, wait_qualified
from pbx_python.testing.configs import metrics_configs, scrape
from tests.conftest import MODULE_SO
from tests.integration.test_callservice import call, pick_hosts, wait_known_down, wait_reachable

pytestmark = pytest.mark.integration

RESULT = ("Verbose(0,RESULT STATUS=${CALLSERVICE_STATUS} UNIQUEID=${UNIQUEID} "
          "LINKEDID=${CHANNEL(linkedid)} CHANNEL=${CHANNEL})")
ANSWER_HOLD = 2     # seconds the service keeps an answered call up
FORGED = "20\r\nEvent: Forged\r\nInjected: 1"


def extensions(node: str) -> str:
    return f"""\
[general]
static = yes

[phones]
exten => remote,1,CallService(2000,sopB,sopC)
 same => n,{RESULT}
exten => only-b,1,CallService(2000,sopB)
 same => n,{RESULT}
exten => redirect,1,CallService(2000,sopA,,,,,,r)
 same => n,Verbose(0,RESULT NOT-REDIRECTED)
exten => notfound,1,CallService(2999)
 same => n,{RESULT}
exten => invalid,1,CallService(20&00,sopB)
 same => n,{RESULT}
exten => crlf,1,CallService(${{BASE64_DECODE({base64.b64encode(FORGED.encode()).decode()})}},sopB)
 same => n,{RESULT}

[callservice-in]
exten => 2000,1,Answer()
 same => n,Wait({ANSWER_HOLD})
 same => n,Hangup()
"""


@pytest.fixture
def cluster(asterisk_factory):
    def start(sops=("sopA", "sopB", "sopC"), metrics=False, modules=(), files=None):
        hosts = pick_hosts(sops)
        ports = {n: free_port(h, socket.SOCK_STREAM) for n, h in hosts.items()}
        spec = ClusterSpec(sops=hosts, modules=list(modules), extra_configs=lambda n: {
            **(metrics_configs(hosts[n], ports[n]) if metrics else {}), **(files or {})})
        nodes = start_cluster(spec, extensions, MODULE_SO, asterisk_factory)
        wait_qualified(nodes)
        for name, node in nodes.items():
            node.http_port = ports[name]
        return nodes
    return start


def call_with_events(node, exten: str, *names: str, timeout: float = 15):
    """Run ``exten`` on ``node``; its RESULT fields and the AMI events named, in order."""
    with node.ami() as ami:
        line = call(node, exten, timeout=timeout)
        got = [ami.wait_event(name) for name in names]
    return dict(re.findall(r"(\w+)=(\S*)", line)), got


def test_answered_call_reports_its_identity_status_and_setup_time_to_the_answer(cluster):
    nodes = cluster()
    fields, (ev,) = call_with_events(nodes["sopA"], "remote", "CallServiceResult")
    assert fields["STATUS"] == "ANSWER"
    assert {k: ev[k] for k in ("Channel", "Uniqueid", "Linkedid", "Exten", "Status", "SOP",
                               "Tried", "Attempts", "Attempt1", "LocalSOP", "Error")} == {
        "Channel": fields["CHANNEL"], "Uniqueid": fields["UNIQUEID"],
        "Linkedid": fields["LINKEDID"], "Exten": "2000", "Status": "ANSWER", "SOP": "sopB",
        "Tried": "sopB:ANSWER", "Attempts": "1", "Attempt1": "sopB ANSWER FINAL",
        "LocalSOP": "sopA", "Error": ""}
    assert "Attempt2" not in ev
    # to the answer, not to the end of the call (which came ANSWER_HOLD seconds later)
    assert re.fullmatch(r"\d+\.\d{3}", ev["SetupTime"])
    assert 0 < float(ev["SetupTime"]) < ANSWER_HOLD - 0.5


def test_failover_lists_the_down_primary_and_the_answering_secondary(cluster):
    nodes = cluster()
    nodes["sopB"].stop()
    wait_known_down(nodes["sopA"], "sopB")
    fields, (ev,) = call_with_events(nodes["sopA"], "remote", "CallServiceResult")
    assert (ev["Status"], ev["SOP"], ev["Tried"], ev["Attempts"]) == \
        ("ANSWER", "sopC", "sopB:KNOWN_DOWN,sopC:ANSWER", "2")
    assert (ev["Attempt1"], ev["Attempt2"]) == ("sopB KNOWN_DOWN FAILOVER", "sopC ANSWER FINAL")


def test_no_sop_reachable_reports_unavailable_without_a_sop(cluster):
    nodes = cluster()
    nodes["sopB"].stop()
    nodes["sopC"].stop()
    wait_known_down(nodes["sopA"], "sopB")
    wait_known_down(nodes["sopA"], "sopC")
    fields, (ev,) = call_with_events(nodes["sopA"], "remote", "CallServiceResult")
    assert (ev["Status"], ev["SOP"], ev["Tried"]) == \
        ("UNAVAILABLE", "", "sopB:KNOWN_DOWN,sopC:KNOWN_DOWN")
    assert float(ev["SetupTime"]) < 1


def test_invalid_arguments_report_invalidargs_with_the_reason(cluster):
    nodes = cluster(sops=("sopA", "sopB"))
    fields, (ev,) = call_with_events(nodes["sopA"], "invalid", "CallServiceResult")
    assert (ev["Status"], ev["SOP"], ev["Tried"], ev["Attempts"]) == ("INVALIDARGS", "", "", "0")
    assert ev["Uniqueid"] == fields["UNIQUEID"]
    assert "20&00" in ev["Error"]


def test_an_extension_not_in_the_directory_reports_notfound_with_the_reason(cluster):
    nodes = cluster(sops=("sopA", "sopB"), modules=("dialplan_funcs.directory",),
                    files={"cluster_directory.conf": "2000  sopB  -\n"})
    fields, (ev,) = call_with_events(nodes["sopA"], "notfound", "CallServiceResult")
    assert fields["STATUS"] == "NOTFOUND"
    assert (ev["Status"], ev["SOP"], ev["Tried"], ev["Attempts"], ev["Exten"]) == \
        ("NOTFOUND", "", "", "0", "2999")
    assert "2999 is not in the cluster directory" in ev["Error"]


def test_a_redirected_call_reports_redirect_with_the_local_sop(cluster):
    nodes = cluster(sops=("sopA", "sopB"))
    a = nodes["sopA"]
    with a.ami() as ami:
        a.cli("channel originate Local/redirect@phones application Wait 1")
        ev = ami.wait_event("CallServiceResult")
    assert (ev["Status"], ev["SOP"], ev["Tried"], ev["Attempt1"]) == \
        ("REDIRECT", "sopA", "sopA:REDIRECT", "sopA REDIRECT FINAL")
    assert ev["Channel"].startswith("Local/redirect@phones-")


def test_pbx_python_loads_without_res_prometheus_and_still_reports_events(cluster):
    nodes = cluster(sops=("sopA", "sopB"))        # the default test modules.conf: no res_prometheus
    a = nodes["sopA"]
    assert "0 modules loaded" in a.cli("module show like res_prometheus")
    assert "Running" in a.cli("module show like pbx_python")
    assert "pbx_python: res_prometheus is not loaded: metrics are not exposed" in a.log_text()
    _, (ev,) = call_with_events(a, "only-b", "CallServiceResult")
    assert ev["Status"] == "ANSWER"


def test_a_value_with_line_breaks_stays_in_its_header(cluster):
    nodes = cluster(sops=("sopA", "sopB"))
    fields, (ev,) = call_with_events(nodes["sopA"], "crlf", "CallServiceResult")
    assert (ev["Event"], ev["Status"]) == ("CallServiceResult", "INVALIDARGS")
    assert ev["Exten"] == "20\\r\\nEvent: Forged\\r\\nInjected: 1"
    assert "Injected" not in ev and "\r" not in ev["Error"] and "\n" not in ev["Error"]


def test_a_sop_going_down_and_coming_back_is_reported_as_state_changes(cluster):
    nodes = cluster(sops=("sopA", "sopB"))
    a, b = nodes["sopA"], nodes["sopB"]
    _, (first,) = call_with_events(a, "only-b", "CallServiceSopState")
    assert {k: first[k] for k in ("SOP", "State", "PreviousState", "Reason", "LocalSOP")} == \
        {"SOP": "sopB", "State": "UP", "PreviousState": "UNKNOWN", "Reason": "ANSWER",
         "LocalSOP": "sopA"}
    os.kill(b.pid, signal.SIGSTOP)           # qualify marks it down; no INVITE is sent
    try:
        wait_known_down(a, "sopB")
        fields, (down, result) = call_with_events(a, "only-b", "CallServiceSopState",
                                                  "CallServiceResult")
    finally:
        os.kill(b.pid, signal.SIGCONT)
    assert {k: down[k] for k in ("SOP", "State", "PreviousState", "Reason")} == \
        {"SOP": "sopB", "State": "DOWN", "PreviousState": "UP", "Reason": "KNOWN_DOWN"}
    assert down["Uniqueid"] == fields["UNIQUEID"] and result["Status"] == "UNAVAILABLE"
    wait_reachable(a, "sopB")
    _, (back,) = call_with_events(a, "only-b", "CallServiceSopState")
    assert {k: back[k] for k in ("SOP", "State", "PreviousState", "Reason")} == \
        {"SOP": "sopB", "State": "UP", "PreviousState": "DOWN", "Reason": "ANSWER"}


def test_an_unchanged_sop_state_sends_no_event(cluster):
    nodes = cluster(sops=("sopA", "sopB"))
    a = nodes["sopA"]
    call_with_events(a, "only-b", "CallServiceSopState")
    with a.ami() as ami:
        call(a, "only-b")
        ami.wait_event("CallServiceResult")
        assert [e for e in ami.events() if e.get("Event") == "CallServiceSopState"] == []


def metric(text: str, name: str, **labels: str) -> str:
    """The value of one series in a scrape ("" if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    return m.group(1) if m else ""


@pytest.mark.asterisk_modules("res_prometheus")
def test_a_prometheus_scrape_shows_the_callservice_counters_and_setup_histogram(cluster):
    nodes = cluster(metrics=True)
    a = nodes["sopA"]
    call(a, "remote")
    call(a, "remote")
    call(a, "invalid")
    nodes["sopB"].stop()
    wait_known_down(a, "sopB")
    call(a, "remote")
    text = scrape(a.host, a.http_port)
    p = "asterisk_pbx_python_callservice_"
    assert "# TYPE asterisk_pbx_python_callservice_calls_total counter" in text
    assert "# TYPE asterisk_pbx_python_callservice_setup_seconds histogram" in text
    assert metric(text, p + "calls_total", sop="sopB", status="ANSWER") == "2"
    assert metric(text, p + "calls_total", sop="sopC", status="ANSWER") == "1"
    assert metric(text, p + "calls_total", sop="", status="INVALIDARGS") == "1"
    assert metric(text, p + "attempts_total", sop="sopB", result="ANSWER") == "2"
    assert metric(text, p + "attempts_total", sop="sopB", result="KNOWN_DOWN") == "1"
    assert metric(text, p + "attempts_total", sop="sopC", result="ANSWER") == "1"
    assert metric(text, p + "failovers_total", sop="sopB") == "1"
    assert metric(text, p + "failovers_total", sop="sopC") == ""
    assert metric(text, p + "setup_seconds_count", sop="sopB", status="ANSWER") == "2"
    assert metric(text, p + "setup_seconds_bucket", sop="sopB", status="ANSWER", le="+Inf") == "2"
    assert metric(text, p + "setup_seconds_count", sop="sopC", status="ANSWER") == "1"
    assert metric(text, p + "setup_seconds_count", sop="", status="INVALIDARGS") == "1"
    assert "pbx_python: metrics exposed through res_prometheus" in a.log_text()
    # Asterisk's own metrics are still there: the text was appended, not substituted
    assert "asterisk_core_uptime_seconds" in text
    # each node counts its own routings
    other = scrape(nodes["sopC"].host, nodes["sopC"].http_port)
    assert "asterisk_core_uptime_seconds" in other
    assert metric(other, p + "calls_total", sop="sopB", status="ANSWER") == ""
