"""CallService and INITSERVICE on a real three-SOP cluster (separate Asterisk processes, PJSIP
trunks with qualify over loopback), with SIPp as the phone and as a node capturing the wire."""
from __future__ import annotations

import base64
import os
import random
import re
import signal
import time

import pytest

from pbx_python.testing import SippUas, free_loopback_host, parse_headers, run_uac
from pbx_python.testing.cluster import ClusterSpec, start_cluster, wait_qualified
from tests.conftest import MODULE_SO

pytestmark = pytest.mark.integration

SOPS = ("sopA", "sopB", "sopC")


def pick_hosts(names=SOPS, more_udp_ports=()) -> dict[str, str]:
    """Free 127.0.0.N addresses (SIP 5060 and AMI 5038 unused, and ``more_udp_ports``),
    outside the phones range, tried in random order: suites running at the same time would
    otherwise all take the lowest free ones, and an address taken between the check and
    Asterisk's bind fails a test for nothing."""
    hosts: dict[str, str] = {}
    for name in names:
        hosts[name] = free_loopback_host(udp_ports=(5060, *more_udp_ports), tcp_ports=(5038,),
                                         candidates=random.sample(range(11, 190), 179),
                                         exclude=hosts.values())
    return hosts
RESULT = ("Verbose(0,RESULT STATUS=${CALLSERVICE_STATUS} SOP=${CALLSERVICE_SOP} "
          "TRIED=${CALLSERVICE_TRIED})")
PARAMS_CRLF = "line one\r\nX-Evil: injected\r\nVia: nope, \"quoted\"; semi\u00e9\u4e2d"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def extensions(node: str) -> str:
    return f"""\
[general]
static = yes

[phones]
exten => remote,1,CallService(2000,sopB,sopC,alpha,be\\,ta,"ga,mma",d\u00e9\\;lta)
 same => n,{RESULT}
 same => n,Hangup()
exten => local,1,CallService(2000,sopA,sopB,alpha,be\\,ta,"ga,mma",d\u00e9\\;lta)
 same => n,{RESULT}
 same => n,Hangup()
exten => redirect,1,CallService(2000,sopA,,alpha,,,,r)
 same => n,Verbose(0,RESULT NOT-REDIRECTED)
exten => crlf,1,Set(CALLSERVICE_PARAM1=${{BASE64_DECODE({b64(PARAMS_CRLF)})}})
 same => n,CallService(2000,sopB)
 same => n,{RESULT}
exten => busy,1,CallService(2001,sopB,sopC)
 same => n,{RESULT}
exten => noanswer,1,CallService(2002,sopB,sopC,,,,,T(1))
 same => n,{RESULT}
exten => nothere,1,CallService(2999,sopB,sopC)
 same => n,{RESULT}
exten => bounce,1,CallService(2003,sopC,sopB)
 same => n,{RESULT}
exten => invalid-exten,1,CallService(20&00,sopB)
 same => n,{RESULT}
exten => unknown-sop,1,CallService(2000,sopZ)
 same => n,{RESULT}
exten => bad-option,1,CallService(2000,sopB,,,,,,x)
 same => n,{RESULT}
exten => toolong,1,Set(CALLSERVICE_PARAM3=${{SPRINTF(%01500d,7)}})
 same => n,CallService(2000,sopB)
 same => n,{RESULT}
exten => timeout,1,CallService(2000,sopB,sopC,,,,,t(1))
 same => n,{RESULT}
exten => loopback,1,CallService(2004,sopB)
 same => n,{RESULT}
exten => hops,1,CallService(2005,sopB)
 same => n,{RESULT}
exten => cancel,1,CallService(2002,sopB,sopC)
 same => n,{RESULT}
exten => full,1,Set(CALLSERVICE_PARAM1=${{SPRINTF(%01024d,1)}})
 same => n,Set(CALLSERVICE_PARAM2=${{SPRINTF(%01024d,2)}})
 same => n,Set(CALLSERVICE_PARAM3=${{SPRINTF(%01024d,3)}})
 same => n,Set(CALLSERVICE_PARAM4=${{SPRINTF(%01024d,4)}})
 same => n,CallService(2006,sopB)
 same => n,{RESULT}
exten => h,1,Verbose(0,HANGUP-RESULT STATUS=${{CALLSERVICE_STATUS}} SOP=${{CALLSERVICE_SOP}} TRIED=${{CALLSERVICE_TRIED}})
exten => 2000,1,Goto(callservice-in,2000,1)
exten => plain,1,Answer()
 same => n,Verbose(0,PLAIN ORIGIN=[${{INITSERVICE(origin)}}] P1=[${{INITSERVICE(Parameter1)}}])
 same => n,Hangup()

[callservice-in]
exten => 2000,1,Answer()
 same => n,Verbose(0,SERVICE 2000 NODE={node} ORIGIN=[${{INITSERVICE(origin)}}] P1=[${{BASE64_ENCODE(${{INITSERVICE(Parameter1)}})}}] P2=[${{BASE64_ENCODE(${{INITSERVICE(2)}})}}] P3=[${{BASE64_ENCODE(${{INITSERVICE(Parameter3)}})}}] P4=[${{BASE64_ENCODE(${{INITSERVICE(4)}})}}])
 same => n,Wait(0.2)
 same => n,Hangup()
exten => 2001,1,Busy(2)
exten => 2002,1,Ringing()
 same => n,Wait(5)
exten => 2003,1,CallService(2003,sopC,sopB)
 same => n(inner),Verbose(0,INNER STATUS=${{CALLSERVICE_STATUS}} TRIED=${{CALLSERVICE_TRIED}} NODE={node})
 same => n,Answer()
 same => n,Wait(0.2)
 same => n,Hangup()
exten => 2004,1,CallService(2000,sopA)
 same => n,Goto(2003,inner)
exten => 2005,1,CallService(2000,sopC)
 same => n,Goto(2003,inner)
exten => 2006,1,Answer()
 same => n,Verbose(0,FULL NODE={node} LENGTHS=${{LEN(${{INITSERVICE(1)}})}},${{LEN(${{INITSERVICE(2)}})}},${{LEN(${{INITSERVICE(3)}})}},${{LEN(${{INITSERVICE(4)}})}} SAME=$["${{INITSERVICE(1)}}" = "${{SPRINTF(%01024d,1)}}"]$["${{INITSERVICE(2)}}" = "${{SPRINTF(%01024d,2)}}"]$["${{INITSERVICE(3)}}" = "${{SPRINTF(%01024d,3)}}"]$["${{INITSERVICE(4)}}" = "${{SPRINTF(%01024d,4)}}"])
 same => n,Wait(0.2)
 same => n,Hangup()
"""


@pytest.fixture
def cluster(asterisk_factory):
    def start(sops=SOPS, **spec_kwargs):
        spec = ClusterSpec(sops=pick_hosts(sops), **spec_kwargs)
        nodes = start_cluster(spec, extensions, MODULE_SO, asterisk_factory)
        wait_qualified(nodes)
        return nodes
    return start


def call(node, exten: str, timeout: float = 15) -> str:
    """Originate a Local channel into the phones context; return its RESULT line."""
    since = node.log_offset()
    node.cli(f"channel originate Local/{exten}@phones application Wait 5")
    return node.wait_for_log(r"app_verbose\.c: (RESULT .*)$", timeout=timeout, since=since).group(1)


def wait_known_down(node, sop: str, timeout: float = 10) -> None:
    """Wait until Asterisk's device state for the SOP's trunk says UNAVAILABLE (qualify)."""
    deadline = time.monotonic() + timeout
    while node.eval_function(f"DEVICE_STATE(PJSIP/{sop})") != "UNAVAILABLE":
        assert time.monotonic() < deadline, f"{sop} not known down on {node.name}"
        time.sleep(0.1)


def wait_reachable(node, sop: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while node.eval_function(f"DEVICE_STATE(PJSIP/{sop})") in ("UNAVAILABLE", None):
        assert time.monotonic() < deadline, f"{sop} not reachable from {node.name}"
        time.sleep(0.1)


def service_line(node, since: int = 0, timeout: float = 10) -> dict[str, str]:
    m = node.wait_for_log(r"app_verbose\.c: SERVICE 2000 (.*)$", timeout=timeout, since=since)
    return dict(re.findall(r"(\w+)=\[?([^\]\s]*)\]?", m.group(1)))


def decoded(fields: dict[str, str], key: str) -> str:
    return base64.b64decode(fields[key]).decode()


def test_remote_sop_takes_the_call_and_reads_four_parameters(cluster):
    nodes = cluster()
    b_since = nodes["sopB"].log_offset()
    assert call(nodes["sopA"], "remote") == "RESULT STATUS=ANSWER SOP=sopB TRIED=sopB:ANSWER"
    fields = service_line(nodes["sopB"], b_since)
    assert fields["NODE"] == "sopB" and fields["ORIGIN"] == "sopA"
    assert [decoded(fields, f"P{i}") for i in range(1, 5)] == ["alpha", "be,ta", "ga,mma", "d\u00e9;lta"]


def test_local_sop_reads_the_parameters_the_same_way(cluster):
    nodes = cluster()
    since = nodes["sopA"].log_offset()
    assert call(nodes["sopA"], "local") == "RESULT STATUS=ANSWER SOP=sopA TRIED=sopA:ANSWER"
    fields = service_line(nodes["sopA"], since)
    assert fields["NODE"] == "sopA" and fields["ORIGIN"] == "sopA"
    assert [decoded(fields, f"P{i}") for i in range(1, 5)] == ["alpha", "be,ta", "ga,mma", "d\u00e9;lta"]


def test_redirect_option_continues_the_same_channel_in_the_service(cluster):
    nodes = cluster()
    a = nodes["sopA"]
    since = a.log_offset()
    a.cli("channel originate Local/redirect@phones application Wait 1")
    fields = service_line(a, since)
    assert decoded(fields, "P1") == "alpha"
    m = a.wait_for_log(r"Executing \[2000@callservice-in:1\] Answer\(\"(Local/redirect@phones-\w+;2)\"", since=since)
    assert m  # the phones channel itself runs the service: no new Local channel
    assert "RESULT NOT-REDIRECTED" not in a.log_text(since)


def test_parameter_with_crlf_arrives_byte_identical_and_adds_no_header(cluster):
    nodes = cluster()
    b_since = nodes["sopB"].log_offset()
    assert call(nodes["sopA"], "crlf").startswith("RESULT STATUS=ANSWER SOP=sopB")
    fields = service_line(nodes["sopB"], b_since)
    assert decoded(fields, "P1") == PARAMS_CRLF


def test_primary_stopped_secondary_takes_the_call(cluster):
    nodes = cluster()
    nodes["sopB"].stop()
    # qualify notices within qualify_frequency + qualify_timeout
    wait_known_down(nodes["sopA"], "sopB")
    c_since = nodes["sopC"].log_offset()
    assert call(nodes["sopA"], "remote") == \
        "RESULT STATUS=ANSWER SOP=sopC TRIED=sopB:KNOWN_DOWN,sopC:ANSWER"
    assert service_line(nodes["sopC"], c_since)["NODE"] == "sopC"


def test_both_down_is_unavailable(cluster):
    nodes = cluster()
    nodes["sopB"].stop()
    nodes["sopC"].stop()
    wait_known_down(nodes["sopA"], "sopC")
    wait_known_down(nodes["sopA"], "sopB")
    assert call(nodes["sopA"], "remote") == \
        "RESULT STATUS=UNAVAILABLE SOP= TRIED=sopB:KNOWN_DOWN,sopC:KNOWN_DOWN"


def test_busy_extension_does_not_fail_over(cluster):
    nodes = cluster()
    c_since = nodes["sopC"].log_offset()
    assert call(nodes["sopA"], "busy") == "RESULT STATUS=BUSY SOP=sopB TRIED=sopB:BUSY"
    assert "callservice-in" not in nodes["sopC"].log_text(c_since)


def test_extension_not_on_primary_fails_over_and_then_unavailable(cluster):
    nodes = cluster()
    assert call(nodes["sopA"], "nothere") == \
        "RESULT STATUS=UNAVAILABLE SOP= TRIED=sopB:SIP404,sopC:SIP404"


def test_silent_primary_is_abandoned_after_the_progress_timeout(cluster):
    nodes = cluster()
    b = nodes["sopB"]
    os.kill(b.pid, signal.SIGSTOP)          # up for qualify until its timeout, but silent
    try:
        start = time.monotonic()
        line = call(nodes["sopA"], "timeout", timeout=20)
        elapsed = time.monotonic() - start
    finally:
        os.kill(b.pid, signal.SIGCONT)
    assert line.startswith("RESULT STATUS=ANSWER SOP=sopC TRIED=sopB:")
    assert elapsed < 10   # never SIP timer B (32 s)


def test_secondary_running_callservice_again_does_not_bounce(cluster):
    nodes = cluster()
    nodes["sopC"].stop()
    wait_known_down(nodes["sopA"], "sopC")
    b_since = nodes["sopB"].log_offset()
    assert call(nodes["sopA"], "bounce") == \
        "RESULT STATUS=ANSWER SOP=sopB TRIED=sopC:KNOWN_DOWN,sopB:ANSWER"
    inner = nodes["sopB"].wait_for_log(r"app_verbose\.c: (INNER .*)$", since=b_since).group(1)
    assert inner == "INNER STATUS=LOOP TRIED=sopC:DELIVERED,sopB:DELIVERED NODE=sopB"


@pytest.mark.parametrize("exten, warning", [
    ("invalid-exten", r"CallService on .*: .*20&00"),
    ("unknown-sop", r"CallService on .*: Sop1 'sopZ' is not a cluster SOP"),
    ("bad-option", r"CallService on .*: .*x"),
    ("toolong", r"CallService on .*: Parameter3 is 1500 bytes; the limit is 1024"),
])
def test_invalid_arguments_place_no_call(cluster, exten, warning):
    nodes = cluster()
    b_since = nodes["sopB"].log_offset()
    assert call(nodes["sopA"], exten) == "RESULT STATUS=INVALIDARGS SOP= TRIED="
    assert re.search(r"WARNING.*" + warning, nodes["sopA"].log_text())
    assert "callservice-in" not in nodes["sopB"].log_text(b_since)


def test_initservice_is_empty_on_a_call_not_routed_by_callservice(cluster):
    nodes = cluster()
    since = nodes["sopA"].log_offset()
    nodes["sopA"].cli("channel originate Local/plain@phones application Wait 1")
    m = nodes["sopA"].wait_for_log(r"app_verbose\.c: (PLAIN .*)$", since=since)
    assert m.group(1) == "PLAIN ORIGIN=[] P1=[]"
    assert not re.search(r"(WARNING|ERROR).*INITSERVICE", nodes["sopA"].log_text(since))


def test_headers_on_the_wire_are_encoded_and_carry_the_routing_data(asterisk_factory):
    hosts = pick_hosts(("sopA", "sopB"))                      # sopB is a SIPp UAS
    spec = ClusterSpec(sops=hosts, unqualified=frozenset({"sopB"}))  # SIPp answers no OPTIONS
    with SippUas(hosts["sopB"]) as uas:
        a = asterisk_factory(host=hosts["sopA"], name="sopA", modules=[MODULE_SO],
                             configs=spec.configs("sopA", extensions("sopA")), start=True)
        a.cli("channel originate Local/crlf@phones application Wait 1")
        invite = uas.wait_for_invites(1)[0]
    headers = parse_headers(invite)
    route = headers["x-callservice"][0]
    assert route.startswith("v=1;o=sopA;path=sopA;h=1;e=2000;p1=")
    assert not [h for h in headers if h.startswith("x-callservice-")]   # everything fits in one
    p1 = route.split(";p1=", 1)[1]
    assert re.fullmatch(r"[A-Za-z0-9_-]+=*", p1)
    assert base64.urlsafe_b64decode(p1 + "=" * (-len(p1) % 4)).decode() == PARAMS_CRLF
    assert "x-evil" not in headers
    assert invite.startswith(f"INVITE sip:2000@{hosts['sopB']}")


def test_four_full_size_parameters_arrive_intact(cluster):
    # 4 x 1024 bytes do not fit one header value (4 kB): two travel in headers of their own
    nodes = cluster()
    since = nodes["sopB"].log_offset()
    assert call(nodes["sopA"], "full") == "RESULT STATUS=ANSWER SOP=sopB TRIED=sopB:ANSWER"
    line = nodes["sopB"].wait_for_log(r"app_verbose\.c: (FULL .*)$", since=since).group(1)
    assert line == "FULL NODE=sopB LENGTHS=1024,1024,1024,1024 SAME=1111"


def test_known_down_sop_gets_no_invite(asterisk_factory):
    hosts = pick_hosts()                                      # sopB is a silent SIPp UAS
    spec = ClusterSpec(sops=hosts)
    with SippUas(hosts["sopB"], scenario="silent") as uas:
        a = asterisk_factory(host=hosts["sopA"], name="sopA", modules=[MODULE_SO],
                             configs=spec.configs("sopA", extensions("sopA")), start=True)
        c = asterisk_factory(host=hosts["sopC"], name="sopC", modules=[MODULE_SO],
                             configs=spec.configs("sopC", extensions("sopC")), start=True)
        wait_known_down(a, "sopB")
        wait_reachable(a, "sopC")
        assert call(a, "remote") == "RESULT STATUS=ANSWER SOP=sopC TRIED=sopB:KNOWN_DOWN,sopC:ANSWER"
        assert uas.received_invites() == []
        assert c.running


def test_headers_from_a_non_cluster_endpoint_are_ignored_with_a_warning(cluster, tmp_path):
    nodes = cluster()
    b = nodes["sopB"]
    since = b.log_offset()
    result = run_uac(b.host, local_host="127.0.0.201", service="2000",
                     headers={"X-CallService": "v=1;o=sopA;path=sopA;h=1;e=2000;p1=ZXZpbA"})
    assert result.successful == 1
    fields = service_line(b, since)
    assert fields["ORIGIN"] == "" and fields["P1"] == ""
    assert re.search(r"WARNING.*ignoring CallService headers .* from endpoint 'phones': it is not a cluster SOP",
                     b.log_text(since))


def test_phone_call_from_sipp_is_routed_to_the_remote_sop(cluster):
    nodes = cluster()
    b_since = nodes["sopB"].log_offset()
    a_since = nodes["sopA"].log_offset()
    result = run_uac(nodes["sopA"].host, local_host="127.0.0.201", service="remote",
                     duration_ms=5000)
    assert result.successful == 1
    assert nodes["sopA"].wait_for_log(r"app_verbose\.c: (RESULT .*)$", since=a_since).group(1) == \
        "RESULT STATUS=ANSWER SOP=sopB TRIED=sopB:ANSWER"
    assert decoded(service_line(nodes["sopB"], b_since), "P4") == "d\u00e9;lta"


def test_cli_shows_sops_with_reachability_and_counts(cluster):
    nodes = cluster()
    call(nodes["sopA"], "remote")
    out = nodes["sopA"].cli("callservice show sops")
    assert re.search(r"^sopA\s+local\b", out, re.M)
    assert re.search(r"^sopB\s+remote\s+sopB\s+\S+\s+Reachable\s+[\d.]+\s+1\s+0$", out, re.M), out
    assert re.search(r"^sopC\s+remote\s+sopC\s+\S+\s+Reachable\s+[\d.]+\s+0\s+0$", out, re.M), out


def test_one_verbose_line_per_routing_decision(cluster):
    nodes = cluster()
    nodes["sopB"].stop()
    wait_known_down(nodes["sopA"], "sopB")
    since = nodes["sopA"].log_offset()
    call(nodes["sopA"], "remote")
    log = nodes["sopA"].log_text(since)
    assert re.search(r"CallService 2000 on Local/remote@phones-\w+;2: SOP sopB: KNOWN_DOWN \(skipped\)", log)
    assert re.search(r"CallService 2000 on Local/remote@phones-\w+;2: SOP sopC: remote delivery", log)
    assert re.search(r"CallService 2000 on Local/remote@phones-\w+;2: SOP sopC: ANSWER \(final\)", log)


def test_docs_are_shown_by_core_show(cluster):
    nodes = cluster(sops=("sopA", "sopB"))
    app = nodes["sopA"].cli("core show application CallService")
    assert "CALLSERVICE_STATUS" in app and "UNAVAILABLE" in app and "CallService(extension,sop1" in app
    func = nodes["sopA"].cli("core show function INITSERVICE")
    assert "INITSERVICE(Parameter1" in func and "origin" in func


def test_routing_back_to_the_sending_sop_is_refused_as_loop(cluster):
    nodes = cluster()
    b_since = nodes["sopB"].log_offset()
    assert call(nodes["sopA"], "loopback") == "RESULT STATUS=ANSWER SOP=sopB TRIED=sopB:ANSWER"
    inner = nodes["sopB"].wait_for_log(r"app_verbose\.c: (INNER .*)$", since=b_since).group(1)
    assert inner == "INNER STATUS=LOOP TRIED=sopA:CAME_FROM NODE=sopB"


def test_hop_limit_bounds_re_routing(cluster):
    nodes = cluster(max_hops=1)
    b_since = nodes["sopB"].log_offset()
    c_since = nodes["sopC"].log_offset()
    assert call(nodes["sopA"], "hops") == "RESULT STATUS=ANSWER SOP=sopB TRIED=sopB:ANSWER"
    inner = nodes["sopB"].wait_for_log(r"app_verbose\.c: (INNER .*)$", since=b_since).group(1)
    assert inner == "INNER STATUS=LOOP TRIED=sopC:HOP_LIMIT NODE=sopB"
    assert "callservice-in" not in nodes["sopC"].log_text(c_since)


SECRET = "a-shared-secret-of-the-cluster"


def test_signed_parameters_are_believed_with_the_shared_secret(cluster):
    nodes = cluster(secret=SECRET)
    b_since = nodes["sopB"].log_offset()
    assert call(nodes["sopA"], "remote") == "RESULT STATUS=ANSWER SOP=sopB TRIED=sopB:ANSWER"
    fields = service_line(nodes["sopB"], b_since)
    assert fields["ORIGIN"] == "sopA" and decoded(fields, "P1") == "alpha"


def test_parameters_failing_verification_are_ignored_with_a_warning(cluster):
    nodes = cluster(secret=SECRET)
    b = nodes["sopB"]
    conf = (b.base / "etc" / "pbx_python.conf").read_text()
    b.write_config("pbx_python.conf", conf.replace(SECRET, "another-secret-not-shared"))
    assert "reloaded successfully" in b.cli("module reload pbx_python.so")
    b_since = b.log_offset()
    assert call(nodes["sopA"], "remote") == "RESULT STATUS=ANSWER SOP=sopB TRIED=sopB:ANSWER"
    fields = service_line(b, b_since)
    assert fields["ORIGIN"] == "" and fields["P1"] == ""
    assert re.search(r"WARNING.*ignoring CallService headers on PJSIP/sopA-\w+ from SOP sopA: .*signature",
                     b.log_text(b_since), re.I)


def test_no_answer_is_final_and_does_not_fail_over(cluster):
    nodes = cluster()
    c_since = nodes["sopC"].log_offset()
    assert call(nodes["sopA"], "noanswer") == "RESULT STATUS=NOANSWER SOP=sopB TRIED=sopB:NOANSWER"
    assert "callservice-in" not in nodes["sopC"].log_text(c_since)


def test_caller_hanging_up_while_it_rings_is_cancel_without_failover(cluster):
    nodes = cluster()
    a, b = nodes["sopA"], nodes["sopB"]
    c_since, b_since, a_since = nodes["sopC"].log_offset(), b.log_offset(), a.log_offset()
    a.cli("channel originate Local/cancel@phones application Wait 5")
    b.wait_for_log(r"Executing \[2002@callservice-in:2\] Wait", since=b_since)
    caller = a.wait_for_log(r"CallService\(\"(Local/cancel@phones-\w+;2)\"", since=a_since).group(1)
    a.cli(f"channel request hangup {caller}")
    line = a.wait_for_log(r"app_verbose\.c: (HANGUP-RESULT .*)$", since=a_since).group(1)
    assert line == "HANGUP-RESULT STATUS=CANCEL SOP=sopB TRIED=sopB:CANCEL"
    assert "callservice-in" not in nodes["sopC"].log_text(c_since)
