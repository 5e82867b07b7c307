"""SIP through the helpers: Asterisk to Asterisk, Asterisk to a SIPp UAS, a SIPp UAC to Asterisk."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from pbx_python.testing import (
    SippUas,
    configs,
    free_loopback_host,
    parse_headers,
    pjsip_endpoint,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed (apt-get install sip-tester)"),
]

CALLER_DIALPLAN = """\
[general]
[outgoing]
exten => 100,1,Dial(PJSIP/100@peer)
exten => 200,1,Dial(PJSIP/200@uas,5,b(addhdr^s^1))
 same => n,Verbose(1,DIALSTATUS=${DIALSTATUS})
[addhdr]
exten => s,1,Set(PJSIP_HEADER(add,X-Test)=hello-pbx)
 same => n,Return()
"""

CALLEE_DIALPLAN = """\
[general]
[incoming]
exten => 100,1,Verbose(1,HDR=${PJSIP_HEADER(read,X-From-Sipp)})
 same => n,Answer()
 same => n,UserEvent(Answered,Chan: ${CHANNEL(name)})
 same => n,Wait(1)
 same => n,Hangup()
exten => 101,1,Answer()
 same => n,Wait(0.2)
 same => n,Hangup()
exten => 486,1,Hangup(17)
"""


def _host(*preferred: int, exclude: tuple[str, ...] = ()) -> str:
    """A free loopback host, preferring 127.0.0.<preferred>."""
    return free_loopback_host(candidates=[*preferred, *range(30, 250)], exclude=exclude)


def _udp_sockets(pid: int) -> list[tuple[str, int]]:
    out = subprocess.run(["ss", "-H", "-lunp"], capture_output=True, text=True, check=True).stdout
    socks = []
    for line in out.splitlines():
        if f"pid={pid}," in line:
            addr, _, port = line.split()[3].rpartition(":")
            socks.append((addr.strip("[]"), int(port)))
    return socks


def test_call_between_two_instances(asterisk_factory) -> None:
    host_a = _host(2)
    host_b = _host(3, exclude=(host_a,))
    a = asterisk_factory(host_a, name="caller", configs={
        "extensions.conf": CALLER_DIALPLAN,
        "pjsip.conf": configs.pjsip_conf(host_a) + pjsip_endpoint("peer", host_b),
    }, start=True)
    b = asterisk_factory(host_b, name="callee", configs={
        "extensions.conf": CALLEE_DIALPLAN,
        "pjsip.conf": configs.pjsip_conf(host_b) + pjsip_endpoint("peer", host_a, context="incoming"),
    }, start=True)
    ami_b = b.ami()
    since_a, since_b = a.log_offset(), b.log_offset()
    a.originate_local("100", "outgoing", app="Wait", data="3")
    ev = ami_b.wait_event("UserEvent", timeout=10)
    assert ev["UserEvent"] == "Answered" and ev["Chan"].startswith("PJSIP/peer-")
    a.wait_for_log(r"PJSIP/peer-\S+ answered Local/100@outgoing", since=since_a)
    b.wait_for_log(r"Executing \[100@incoming:2\] Answer", since=since_b)
    # RTP is bound to each transport's address, inside each instance's own port range.
    for inst in (a, b):
        lo, hi = configs.rtp_port_range(inst.host)
        rtp = [s for s in _udp_sockets(inst.pid) if lo <= s[1] <= hi]
        assert rtp and all(addr == inst.host for addr, _ in rtp), rtp
    b.wait_for_log(r"Spawn extension \(incoming, 100, \d+\) exited|Auto fallthrough|hung up", since=since_b, timeout=10)


def test_sipp_uas_sees_header_from_predial_handler(asterisk_factory, tmp_path) -> None:
    host_a = _host(2)
    uas_host = _host(20, exclude=(host_a,))
    a = asterisk_factory(host_a, configs={
        "extensions.conf": CALLER_DIALPLAN,
        "pjsip.conf": configs.pjsip_conf(host_a) + pjsip_endpoint("uas", uas_host),
    }, start=True)
    with SippUas(uas_host, workdir=tmp_path / "uas") as uas:
        since = a.log_offset()
        a.originate_local("200", "outgoing", app="Wait", data="1")
        invite = uas.wait_for_invites(1)[0]
        a.wait_for_log(r"PJSIP/uas-\S+ answered Local/200@outgoing", since=since, timeout=10)
    assert invite.startswith(f"INVITE sip:200@{uas_host}:5060 SIP/2.0")
    headers = parse_headers(invite)
    assert headers["X-Test"] == ["hello-pbx"]
    assert headers.first("Content-Type") == "application/sdp"
    assert uas.proc is not None and uas.proc.poll() is not None  # stopped on exit


@pytest.mark.parametrize(("variant", "dialstatus"), [("busy", "BUSY"), ("silent", "NOANSWER")])
def test_sipp_uas_variants(asterisk_factory, tmp_path, variant: str, dialstatus: str) -> None:
    host_a = _host(2)
    uas_host = _host(21, exclude=(host_a,))
    dialplan = CALLER_DIALPLAN.replace("Dial(PJSIP/200@uas,5,", "Dial(PJSIP/200@uas,1,")
    a = asterisk_factory(host_a, configs={
        "extensions.conf": dialplan,
        "pjsip.conf": configs.pjsip_conf(host_a) + pjsip_endpoint("uas", uas_host),
    }, start=True)
    with SippUas(uas_host, scenario=variant, workdir=tmp_path / "uas") as uas:
        since = a.log_offset()
        a.originate_local("200", "outgoing", app="Wait", data="1")
        a.wait_for_log(f"DIALSTATUS={dialstatus}", since=since, timeout=10)
        assert len(uas.wait_for_invites(1)) == 1


@pytest.fixture
def callee(asterisk_factory):
    """An Asterisk whose endpoint 'sipp' accepts calls from 127.0.0.10 into [incoming]."""
    host = _host(4)
    return asterisk_factory(host, name="uacpeer", configs={
        "extensions.conf": CALLEE_DIALPLAN,
        "pjsip.conf": configs.pjsip_conf(host) + pjsip_endpoint("sipp", "127.0.0.10", context="incoming"),
    }, start=True)


def test_run_uac_successful_call(callee, sipp) -> None:
    since = callee.log_offset()
    # SIPp hangs up 0.5 s after the answer; Asterisk would at 1.5 s (Answer's media wait + Wait(1)):
    # equal times race the two BYEs, and SIPp counts a crossing BYE as a failed call
    res = sipp.run_uac(callee.host, service="100", duration_ms=500, headers={"X-From-Sipp": "yes"}, timeout=15)
    assert res.ok and res.successful == 1 and res.failed == 0, res
    assert res.final_status == 200
    callee.wait_for_log("HDR=yes", since=since)
    invite = res.sent()[0]
    assert parse_headers(invite)["X-From-Sipp"] == ["yes"]
    answers = [m for m in res.received() if m.startswith("SIP/2.0 200")]
    assert parse_headers(answers[0]).first("Content-Type") == "application/sdp"


def test_run_uac_remote_hangup_counts_as_success(callee, sipp) -> None:
    res = sipp.run_uac(callee.host, service="101", duration_ms=5000, timeout=15)
    assert res.ok and res.successful == 1, res
    assert any(m.startswith("BYE ") for m in res.received())


@pytest.mark.parametrize(("service", "status"), [("486", 486), ("999", 404)])
def test_run_uac_failure_is_recorded(callee, sipp, service: str, status: int) -> None:
    res = sipp.run_uac(callee.host, service=service, timeout=15)
    assert res.returncode == 1 and res.failed == 1 and res.successful == 0, res
    assert res.final_status == status and not res.timed_out


def test_run_uac_several_calls(callee, sipp) -> None:
    res = sipp.run_uac(callee.host, service="101", calls=3, rate=20, duration_ms=2000, timeout=20)
    assert res.ok and res.successful == 3, res
    assert len(res.statuses) == 3 and set(res.statuses.values()) == {200}
