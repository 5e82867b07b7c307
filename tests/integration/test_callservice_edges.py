"""CallService edge cases on real clusters: parameters of every byte, fuzzed and spoofed headers
sent by SIPp from a cluster SOP's address, max_hops as a hard bound on the SIP legs of loops of
several shapes, local failures that are not node failures, and a module reload while a leg is
being dialled."""
from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import pytest

from pbx_python.testing import SippUas, parse_headers, rtp_port_range, run_uac
from pbx_python.testing.cluster import ClusterSpec, wait_qualified
from tests.conftest import MODULE_SO
from tests.integration.test_callservice import pick_hosts

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).with_name("scenarios")
ALL_BYTES = bytes(range(1, 256))
#: Four parameters holding every byte value 0x01-0xFF, three of them at the 1024-byte limit
#: (every byte at the start, in the middle, at the end), one made of separators and quotes.
PARAMS = (ALL_BYTES + b"s" * 769,
          b"m" * 400 + ALL_BYTES + b"m" * 369,
          b"\x1f,|\"\\\r\n\x1f",
          b"e" * 769 + ALL_BYTES[::-1])
RESULT = ("Verbose(0,RESULT STATUS=${CALLSERVICE_STATUS} SOP=${CALLSERVICE_SOP} "
          "TRIED=${CALLSERVICE_TRIED})")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def set_params(params=PARAMS) -> str:
    """Dialplan lines setting CALLSERVICE_PARAM1..4 to these bytes."""
    return "".join(f" same => n,Set(CALLSERVICE_PARAM{i}=${{BASE64_DECODE({b64(p)})}})\n"
                   for i, p in enumerate(params, start=1))


#: The result line, logged when the caller hangs up (a SIPp UAS that answers never hangs up).
AFTER_HANGUP = f"exten => h,1,{RESULT}\n"
SERVICE = """\
exten => 2000,1,Answer()
 same => n,Verbose(0,SERVICE NODE={node} ORIGIN=[${{INITSERVICE(origin)}}])
 same => n,Verbose(0,PARAM 1=[${{BASE64_ENCODE(${{INITSERVICE(1)}})}}])
 same => n,Verbose(0,PARAM 2=[${{BASE64_ENCODE(${{INITSERVICE(2)}})}}])
 same => n,Verbose(0,PARAM 3=[${{BASE64_ENCODE(${{INITSERVICE(3)}})}}])
 same => n,Verbose(0,PARAM 4=[${{BASE64_ENCODE(${{INITSERVICE(4)}})}}])
 same => n,Wait(0.2)
 same => n,Hangup()
"""


def dialplan(node: str, phones: str = "", services: str = "") -> str:
    return (f"[general]\nstatic = yes\n\n[phones]\n{phones}\n"
            f"[callservice-in]\n{SERVICE.format(node=node)}{services}")


def received(node, since: int) -> tuple[str, list[bytes]]:
    """(origin, the four parameters' bytes) the service on ``node`` logged."""
    origin = node.wait_for_log(r"SERVICE NODE=\S+ ORIGIN=\[(\S*)\]", since=since).group(1)
    params = []
    for i in range(1, 5):
        m = node.wait_for_log(rf"app_verbose\.c: PARAM {i}=\[(\S*)\]", since=since)
        params.append(base64.b64decode(m.group(1)))
    return origin, params


def call(node, exten: str, timeout: float = 20) -> str:
    since = node.log_offset()
    node.cli(f"channel originate Local/{exten}@phones application Wait 5")
    return node.wait_for_log(r"app_verbose\.c: (RESULT .*)$", timeout=timeout, since=since).group(1)


def start(asterisk_factory, spec: ClusterSpec, extensions, extra: dict[str, dict[str, str]] = {}):
    """Start the cluster's nodes, with extra config files per node, and wait for qualify."""
    nodes = {}
    for node, host in spec.sops.items():
        configs = {**spec.configs(node, extensions(node)), **extra.get(node, {})}
        nodes[node] = asterisk_factory(host=host, name=node, modules=[MODULE_SO], configs=configs)
        nodes[node].start()
    wait_qualified(nodes)
    return nodes


# ---------------------------------------------------------------------------- every byte

def test_parameters_of_every_byte_arrive_exactly_on_the_remote_sop(asterisk_factory):
    phones = f"exten => remote,1,NoOp()\n{set_params()} same => n,CallService(2000,sopB)\n" \
             f" same => n,{RESULT}\n"
    nodes = start(asterisk_factory, ClusterSpec(sops=pick_hosts(("sopA", "sopB"))),
                  lambda n: dialplan(n, phones))
    since = nodes["sopB"].log_offset()
    assert call(nodes["sopA"], "remote") == "RESULT STATUS=ANSWER SOP=sopB TRIED=sopB:ANSWER"
    assert received(nodes["sopB"], since) == ("sopA", list(PARAMS))


def test_parameters_of_every_byte_arrive_exactly_on_local_delivery(asterisk_factory):
    phones = f"exten => local,1,NoOp()\n{set_params()} same => n,CallService(2000,sopA)\n" \
             f" same => n,{RESULT}\n"
    nodes = start(asterisk_factory, ClusterSpec(sops=pick_hosts(("sopA", "sopB"))),
                  lambda n: dialplan(n, phones))
    since = nodes["sopA"].log_offset()
    assert call(nodes["sopA"], "local") == "RESULT STATUS=ANSWER SOP=sopA TRIED=sopA:ANSWER"
    assert received(nodes["sopA"], since) == ("sopA", list(PARAMS))


def test_a_parameter_over_the_limit_is_invalidargs_with_a_warning(asterisk_factory):
    params = (b"a", ALL_BYTES * 4 + b"\x80\x81\x82\x83\x84", b"c", b"d")     # 1025 bytes
    phones = f"exten => long,1,NoOp()\n{set_params(params)} same => n,CallService(2000,sopB)\n" \
             f" same => n,{RESULT}\n"
    nodes = start(asterisk_factory, ClusterSpec(sops=pick_hosts(("sopA", "sopB"))),
                  lambda n: dialplan(n, phones))
    b_since = nodes["sopB"].log_offset()
    assert call(nodes["sopA"], "long") == "RESULT STATUS=INVALIDARGS SOP= TRIED="
    assert re.search(r"WARNING.*CallService on .*: Parameter2 is 1025 bytes; the limit is 1024",
                     nodes["sopA"].log_text())
    assert "SERVICE NODE" not in nodes["sopB"].log_text(b_since)


# ---------------------------------------------------------------------------- received headers

ROUTE = "v=1;o=sopA;path=sopA;h=1;e=2000"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.fixture
def receiver(asterisk_factory):
    """sopB alone; SIPp sends from sopA's address, which sopB identifies as the sopA trunk."""
    hosts = pick_hosts()
    spec = ClusterSpec(sops=hosts, unqualified=frozenset({"sopA", "sopC"}))
    b = asterisk_factory(host=hosts["sopB"], name="sopB", modules=[MODULE_SO],
                         configs=spec.configs("sopB", dialplan("sopB")))
    b.start()
    return b, hosts


def send_from_sop_a(receiver, headers: dict[str, str]) -> tuple[str, list[bytes], str]:
    """Call 2000 on sopB from sopA's address with these headers; (origin, params, log)."""
    b, hosts = receiver
    since = b.log_offset()
    # The service hangs up after logging: SIPp's hold must outlast Answer()'s media wait.
    result = run_uac(b.host, local_host=hosts["sopA"], service="2000", headers=headers,
                     duration_ms=5000)
    assert result.successful == 1, result
    origin, params = received(b, since)
    return origin, params, b.log_text(since)


def test_valid_headers_from_a_cluster_sop_s_address_are_believed(receiver):
    headers = {"X-CallService": f"{ROUTE};p1={b64url(b'alpha')}"}
    origin, params, _ = send_from_sop_a(receiver, headers)
    assert (origin, params) == ("sopA", [b"alpha", b"", b"", b""])


FUZZED = {
    "oversized route header": (
        {"X-CallService": f"{ROUTE};p1={'QUFB' * 1500}"},
        r"X-CallService: value is 6035 characters; the limit is 4095"),
    "0x1F in a parameter header": (
        {"X-CallService": f"{ROUTE};p1={b64url(b'alpha')};x=2", "X-CallService-P2": "YmV0\x1fYQ"},
        r"X-CallService-P2: characters outside the base64url alphabet"),
    "0x1F in the route header": (
        {"X-CallService": f"{ROUTE};p1=YWxw\x1faGE;p2={b64url(b'beta')}"},
        r"X-CallService p1: characters outside the base64url alphabet"),
    "oversized parameter header": (
        {"X-CallService": f"{ROUTE};p1={b64url(b'alpha')};x=3", "X-CallService-P3": "QUFB" * 1400},
        r"X-CallService-P3: encoded value is 5600 characters; the limit is 1366"),
    "a listed parameter header missing": (
        {"X-CallService": f"{ROUTE};p1={b64url(b'alpha')};x=24",
         "X-CallService-P2": b64url(b"beta")},
        r"X-CallService-P4 is missing but listed in X-CallService \(x=24\)"),
    "a NUL byte in a parameter": (
        {"X-CallService": f"{ROUTE};p1={b64url(b'alpha')};p2={b64url(b'a' + bytes(1) + b'b')}"},
        r"X-CallService p2: decoded value contains a NUL byte"),
    "another SOP's origin": (
        {"X-CallService": f"v=1;o=sopC;path=sopC;h=1;e=2000;p1={b64url(b'evil')}"},
        r"X-CallService: origin o=sopC but the call arrived on the trunk of SOP sopA"),
    "a path through a SOP outside the cluster": (
        {"X-CallService": f"v=1;o=sopA;path=sopZ/sopA;h=2;e=2000;p1={b64url(b'evil')}"},
        r"X-CallService: path names sopZ, which is not a cluster SOP"),
}


@pytest.mark.parametrize("case", FUZZED)
def test_headers_that_cannot_be_read_whole_or_decoded_exactly_give_a_warning_and_no_parameters(
        receiver, case):
    headers, reason = FUZZED[case]
    origin, params, log = send_from_sop_a(receiver, headers)
    assert (origin, params) == ("", [b"", b"", b"", b""])       # none of them, never a part
    assert re.search(r"WARNING.*ignoring CallService headers on PJSIP/sopA-\w+ from SOP sopA: "
                     + reason + r".*; the call carries no parameters", log), log[-3000:]


# ---------------------------------------------------------------------------- max_hops

def legs(nodes, since: dict[str, int]) -> dict[str, int]:
    """CallService SIP legs each node sent since ``since`` (one verbose line per leg)."""
    return {name: len(re.findall(r"CallService \S+ on \S+: SOP \w+: remote delivery",
                                 node.log_text(since[name])))
            for name, node in nodes.items()}


def arrivals(nodes, since: dict[str, int]) -> dict[str, int]:
    """SIP legs that reached each node's service context."""
    return {name: len(re.findall(r"Executing \[\w+@callservice-in:1\] \w+\(\"PJSIP/",
                                 node.log_text(since[name])))
            for name, node in nodes.items()}


def loop_cluster(asterisk_factory, sops, phones: str, services: str, max_hops=None):
    spec = ClusterSpec(sops=pick_hosts(sops), max_hops=max_hops)
    return start(asterisk_factory, spec, lambda n: dialplan(n, phones, services))


def run_loop(nodes, exten: str) -> tuple[str, dict[str, int], dict[str, int]]:
    since = {name: node.log_offset() for name, node in nodes.items()}
    line = call(nodes["sopA"], exten)
    time.sleep(0.5)      # the other nodes' calls have ended before sopA's result; let logs settle
    return line, legs(nodes, since), arrivals(nodes, since)


def test_legs_used_downstream_stop_the_sender_s_failover(asterisk_factory):
    # The shape: A routes to B or C; the service forwards to D, which refuses; B's
    # callflow hangs up with cause 21 (403, a failover code). Before: A failed over to C, which
    # repeated the chain, 4 legs with max_hops 2.
    nodes = loop_cluster(
        asterisk_factory, ("sopA", "sopB", "sopC", "sopD"),
        f"exten => x,1,CallService(3000,sopB,sopC)\n same => n,{RESULT}\n",
        "exten => 3000,1,CallService(3001,sopD)\n same => n,Hangup(21)\n"
        "exten => 3001,1,Hangup(21)\n")
    line, sent, arrived = run_loop(nodes, "x")
    assert line == "RESULT STATUS=LOOP SOP=sopB TRIED=sopB:SIP483"
    assert sent == {"sopA": 1, "sopB": 1, "sopC": 0, "sopD": 0}
    assert sum(arrived.values()) == 2 <= 2


def test_a_to_b_to_a_is_refused_with_482_and_no_failover(asterisk_factory):
    nodes = loop_cluster(
        asterisk_factory, ("sopA", "sopB", "sopC"),
        f"exten => x,1,CallService(3000,sopB,sopC)\n same => n,{RESULT}\n",
        "exten => 3000,1,CallService(3001,sopA)\n same => n,Hangup(21)\n")
    line, sent, arrived = run_loop(nodes, "x")
    assert line == "RESULT STATUS=LOOP SOP=sopB TRIED=sopB:SIP482"
    assert sent == {"sopA": 1, "sopB": 0, "sopC": 0} and arrived["sopC"] == 0
    assert re.search(r"CallService on PJSIP/sopA-\w+: answering 482 instead of the response for "
                     r"cause 21", nodes["sopB"].log_text())


def test_a_to_b_to_c_back_to_a_ends_as_loop_everywhere(asterisk_factory):
    nodes = loop_cluster(
        asterisk_factory, ("sopA", "sopB", "sopC"),
        f"exten => x,1,CallService(3000,sopB)\n same => n,{RESULT}\n",
        "exten => 3000,1,CallService(3001,sopC)\n same => n,Hangup(21)\n"
        "exten => 3001,1,CallService(3002,sopA)\n same => n,Hangup(21)\n", max_hops=3)
    line, sent, arrived = run_loop(nodes, "x")
    assert line == "RESULT STATUS=LOOP SOP=sopB TRIED=sopB:SIP482"
    assert sent == {"sopA": 1, "sopB": 1, "sopC": 0}      # C never sends the call back to A
    assert sum(arrived.values()) == 2


def test_hop_limit_reached_mid_chain_with_secondaries_everywhere(asterisk_factory):
    nodes = loop_cluster(
        asterisk_factory, ("sopA", "sopB", "sopC", "sopD"),
        f"exten => x,1,CallService(3000,sopB,sopC)\n same => n,{RESULT}\n",
        "exten => 3000,1,CallService(3001,sopC,sopD)\n same => n,Hangup(21)\n"
        "exten => 3001,1,CallService(3002,sopD,sopB)\n same => n,Hangup(21)\n"
        "exten => 3002,1,Hangup(21)\n")
    line, sent, arrived = run_loop(nodes, "x")
    assert sum(sent.values()) <= 2 and sum(arrived.values()) <= 2
    assert sent == {"sopA": 1, "sopB": 1, "sopC": 0, "sopD": 0}
    assert line == "RESULT STATUS=LOOP SOP=sopB TRIED=sopB:SIP482"
    assert re.search(r"CallService 3002 on PJSIP/sopB-\w+: SOP sopD: HOP_LIMIT",
                     nodes["sopC"].log_text())


def test_a_failover_leg_carries_the_failed_leg_in_its_hop_count(asterisk_factory):
    hosts = pick_hosts(("sopA", "sopB", "sopC"))
    spec = ClusterSpec(sops=hosts, unqualified=frozenset({"sopB", "sopC"}))
    phones = f"exten => x,1,CallService(2000,sopB,sopC)\n{AFTER_HANGUP}"
    with SippUas(hosts["sopB"], scenario="notfound") as b, SippUas(hosts["sopC"]) as c:
        a = asterisk_factory(host=hosts["sopA"], name="sopA", modules=[MODULE_SO],
                             configs=spec.configs("sopA", dialplan("sopA", phones)))
        a.start()
        assert call(a, "x") == "RESULT STATUS=ANSWER SOP=sopC TRIED=sopB:SIP404,sopC:ANSWER"
        first = parse_headers(b.wait_for_invites(1)[0])["x-callservice"][0]
        second = parse_headers(c.wait_for_invites(1)[0])["x-callservice"][0]
    assert first.startswith("v=1;o=sopA;path=sopA;h=1;e=2000")
    assert second.startswith("v=1;o=sopA;path=sopA;h=2;e=2000")


# ---------------------------------------------------------------------------- local failures

def tiny_rtp(host: str) -> dict[str, str]:
    """rtp.conf with 4 ports: two RTP sessions (RTP + RTCP each), then no port is left."""
    start_port, _ = rtp_port_range(host)
    return {"rtp.conf": f"[general]\nrtpstart = {start_port}\nrtpend = {start_port + 3}\n"
                        "icesupport = no\n"}


HOLD = "exten => 3000,1,Answer()\n same => n,Verbose(0,HELD NODE=${CHANNEL(name)})\n" \
       " same => n,Wait(8)\n same => n,Hangup()\n" \
       "exten => 3001,1,Answer()\n same => n,Wait(0.2)\n same => n,Hangup()\n"


def hold_two_calls(a, b) -> None:
    """Two calls from sopA to sopB that stay up (each holds one of sopA's two RTP sessions)."""
    since = b.log_offset()
    for _ in range(2):
        a.cli("channel originate Local/hold@phones application Wait 10")
    deadline = time.monotonic() + 15
    while len(re.findall(r"HELD NODE=", b.log_text(since))) < 2:
        assert time.monotonic() < deadline, b.log_text(since)[-3000:]
        time.sleep(0.1)


def test_no_rtp_port_here_is_a_local_failure_not_a_node_failure(asterisk_factory):
    hosts = pick_hosts()
    phones = f"exten => hold,1,CallService(3000,sopB,sopC)\n same => n,{RESULT}\n"
    nodes = start(asterisk_factory, ClusterSpec(sops=hosts), lambda n: dialplan(n, phones, HOLD),
                  extra={"sopA": tiny_rtp(hosts["sopA"])})
    a = nodes["sopA"]
    since = {name: node.log_offset() for name, node in nodes.items()}
    hold_two_calls(a, nodes["sopB"])                    # the two calls the ports allow
    assert call(a, "hold") == \
        "RESULT STATUS=UNAVAILABLE SOP= TRIED=sopB:LOCAL_FAILURE,sopC:LOCAL_FAILURE"
    assert re.search(r"WARNING.*CallService 3000 on .*: SOP sopB: this node could not place the "
                     r"call .*; sopB is not counted as failed", a.log_text(since["sopA"]))
    assert arrivals(nodes, since) == {"sopA": 0, "sopB": 2, "sopC": 0}
    out = a.cli("callservice show sops")
    # Failovers (last column) stay 0: a shortage here says nothing about sopB or sopC.
    assert re.search(r"^sopB\s+remote\s+sopB\s+\S+\s+Reachable\s+[\d.]+\s+\d+\s+0$", out, re.M), out
    assert re.search(r"^sopC\s+remote\s+sopC\s+\S+\s+Reachable\s+[\d.]+\s+0\s+0$", out, re.M), out
    assert "2 leg(s) this node could not place itself" in out


def test_after_a_local_failure_the_local_sop_still_takes_the_call(asterisk_factory):
    hosts = pick_hosts()
    phones = (f"exten => hold,1,CallService(3000,sopB,sopC)\n same => n,{RESULT}\n"
              f"exten => fallback,1,CallService(3001,sopB,sopA)\n same => n,{RESULT}\n")
    nodes = start(asterisk_factory, ClusterSpec(sops=hosts), lambda n: dialplan(n, phones, HOLD),
                  extra={"sopA": tiny_rtp(hosts["sopA"])})
    a = nodes["sopA"]
    hold_two_calls(a, nodes["sopB"])
    assert call(a, "fallback") == \
        "RESULT STATUS=ANSWER SOP=sopA TRIED=sopB:LOCAL_FAILURE,sopA:ANSWER"


# ---------------------------------------------------------------------------- reload

def test_a_reload_while_a_leg_rings_keeps_the_failover_leg_s_header(asterisk_factory):
    hosts = pick_hosts()
    spec = ClusterSpec(sops=hosts, unqualified=frozenset({"sopB", "sopC"}), progress_timeout=0)
    phones = (f"exten => x,1,NoOp()\n{set_params()} same => n,CallService(2000,sopB,sopC)\n"
              f"{AFTER_HANGUP}")
    with SippUas(hosts["sopB"], scenario=SCENARIOS / "uas_ring_then_503.xml") as b, \
            SippUas(hosts["sopC"]) as c:
        a = asterisk_factory(host=hosts["sopA"], name="sopA", modules=[MODULE_SO],
                             configs=spec.configs("sopA", dialplan("sopA", phones)))
        a.start()
        since = a.log_offset()
        a.cli("channel originate Local/x@phones application Wait 5")
        b.wait_for_invites(1)                           # sopB's leg rings for 2.5 s
        assert "reloaded successfully" in a.cli("module reload pbx_python.so")
        invite = c.wait_for_invites(1)[0]               # the failover leg, placed after it
        line = a.wait_for_log(r"app_verbose\.c: (RESULT .*)$", since=since).group(1)
    assert line == "RESULT STATUS=ANSWER SOP=sopC TRIED=sopB:SIP503,sopC:ANSWER"
    headers = parse_headers(invite)
    route = headers["x-callservice"][0]
    assert route.startswith("v=1;o=sopA;path=sopA;h=2;e=2000")
    fields = dict(f.split("=", 1) for f in route.split(";"))
    values = {f"p{i}": fields.get(f"p{i}") or headers[f"x-callservice-p{i}"][0]
              for i in range(1, 5)}
    assert [base64.urlsafe_b64decode(values[f"p{i}"] + "=" * (-len(values[f"p{i}"]) % 4))
            for i in range(1, 5)] == list(PARAMS)
    assert "unknown token" not in a.log_text(since)
