"""Unit tests of pbx_python.testing that need neither Asterisk nor SIPp."""
from __future__ import annotations

import pytest

from pbx_python.testing import (
    AsteriskInstance,
    cli_quote,
    configs,
    parse_headers,
    require_loopback,
    sipmsg,
)
from pbx_python.testing.ami import parse_message
from pbx_python.testing.sipp import SCENARIO_DIR, _render_uac, _stat_counts

INVITE = (
    "INVITE sip:200@127.0.0.20:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.2:5060;rport;branch=z9hG4bKPj1\r\n"
    "f: <sip:asterisk@127.0.0.2>;tag=abc\r\n"
    "To: <sip:200@127.0.0.20>\r\n"
    "Call-ID: cid-1\r\n"
    "CSeq: 7 INVITE\r\n"
    "X-Test: hello\r\n"
    "x-test: again\r\n"
    "Subject: folded\r\n"
    " line\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)

TRACE = """----------------------------------------------- 2026-01-01 10:00:00.000001
UDP message received [300] bytes :

INVITE sip:200@127.0.0.20:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKPj1
Call-ID: cid-1
CSeq: 7 INVITE
X-Test: hello
Content-Length: 0


----------------------------------------------- 2026-01-01 10:00:00.000002
UDP message sent (200 bytes):

SIP/2.0 486 Busy Here
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKPj1
Call-ID: cid-1
CSeq: 7 INVITE
Content-Length: 0


----------------------------------------------- 2026-01-01 10:00:00.500000
UDP message received [300] bytes :

INVITE sip:200@127.0.0.20:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKPj1
Call-ID: cid-1
CSeq: 7 INVITE
X-Test: hello
Content-Length: 0


-----------------------------------------------
Unexpected UDP message received:

SIP/2.0 404 Not Found
Call-ID: cid-2
CSeq: 1 INVITE

"""


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "127.255.255.254"])
def test_require_loopback_accepts(host: str) -> None:
    assert require_loopback(host) == host


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "192.168.1.1", "::1", "localhost", "128.0.0.1", ""])
def test_require_loopback_refuses(host: str) -> None:
    with pytest.raises(ValueError):
        require_loopback(host)


def test_instance_refuses_non_loopback_host(tmp_path) -> None:
    with pytest.raises(ValueError, match="127.0.0.0/8"):
        AsteriskInstance(tmp_path, host="10.1.2.3")


def test_cli_quote() -> None:
    assert cli_quote("LEN(a b)") == '"LEN(a b)"'
    assert cli_quote('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'


def test_rtp_ranges_distinct() -> None:
    ranges = [configs.rtp_port_range(f"127.0.0.{n}") for n in range(256)]
    flat = [p for lo, hi in ranges for p in (lo, hi)]
    assert all(lo < hi <= 65535 for lo, hi in ranges)
    assert flat == sorted(flat) and len(set(flat)) == len(flat)


def test_modules_conf_lists_only_present() -> None:
    text = configs.modules_conf({"chan_pjsip.so", "chan_iax2.so"})
    assert "autoload = yes" in text
    assert "noload => chan_iax2.so" in text
    assert "chan_alsa" not in text
    assert "noload => chan_alsa.so" in configs.modules_conf()


def test_asterisk_conf_plain_directories() -> None:
    text = configs.asterisk_conf({"astetcdir": "/x/etc"}, verbose=5, debug=1)
    assert text.startswith("[directories]\n")  # not the ignored [directories](!) template
    assert "astetcdir => /x/etc" in text and "verbose = 5" in text and "debug = 1" in text


def test_manager_and_pjsip_bind_host_only() -> None:
    assert "bindaddr = 127.0.0.9" in configs.manager_conf("127.0.0.9")
    assert "bind = 127.0.0.9:5060" in configs.pjsip_conf("127.0.0.9")
    with pytest.raises(ValueError):
        configs.pjsip_conf("0.0.0.0")
    ep = configs.pjsip_endpoint("peer", "127.0.0.5", context="in", extra={"dtmf_mode": "info"})
    assert "transport = transport-udp" in ep and "contact = sip:127.0.0.5:5060" in ep
    assert "match = 127.0.0.5" in ep and "dtmf_mode = info" in ep


def test_parse_headers() -> None:
    h = parse_headers(INVITE)
    assert h["X-Test"] == ["hello", "again"]
    assert h["x-test"] == ["hello", "again"]
    assert "X-TEST" in h and "X-Other" not in h
    assert h.first("From") == "<sip:asterisk@127.0.0.2>;tag=abc"  # compact 'f' expanded
    assert h["Subject"] == ["folded line"]
    assert sipmsg.request_method(INVITE) == "INVITE"
    assert sipmsg.status_code(INVITE) is None
    assert sipmsg.cseq(INVITE) == (7, "INVITE")


def test_trace_parsing() -> None:
    entries = list(sipmsg.iter_trace(TRACE))
    assert [e.direction for e in entries] == ["received", "sent", "received", "unexpected"]
    received = sipmsg.received_messages(TRACE)
    invites = sipmsg.unique_requests(received, "INVITE")
    assert len(received) == 2 and len(invites) == 1  # the retransmission is dropped
    assert parse_headers(invites[0])["X-Test"] == ["hello"]
    assert sipmsg.status_code(sipmsg.sent_messages(TRACE)[0]) == 486
    assert sipmsg.final_invite_statuses(sipmsg.sent_messages(TRACE)) == {"cid-1": 486}


def test_render_uac_headers() -> None:
    text = (SCENARIO_DIR / "uac.xml").read_text()
    out = _render_uac(text, {"X-A": "1", "X-B": "two words"}, 1234)
    assert "[pbx_python_extra_headers]" not in out and "PBXPY_HOLD_MS" not in out
    assert "      X-A: 1\n      X-B: two words\n" in out
    assert 'timeout="1234"' in out
    assert "[pbx_python_extra_headers]" not in _render_uac(text, {}, 10)
    with pytest.raises(ValueError):
        _render_uac(text, {"X-Bad": "a\r\nInjected: 1"}, 10)


def test_stat_counts() -> None:
    csv = "A;SuccessfulCall(C);FailedCall(C);\n1;0;0;\n2;3;1;\n"
    stats = _stat_counts(csv)
    assert stats["SuccessfulCall(C)"] == "3" and stats["FailedCall(C)"] == "1"


def test_ami_parse_message() -> None:
    msg = parse_message("Response: Success\r\nActionID: 1\r\nOutput: a\r\nOutput: b\r\nValue: x: y")
    assert msg == {"Response": "Success", "ActionID": "1", "Output": "a\nb", "Value": "x: y"}


@pytest.mark.parametrize("rc, log, known", [
    (-6, "ERROR[1] pjproject: ../src/pjsip/sip_endpo Assert failed: endpt && rdata\n", True),
    (-6, "NOTICE[1] asterisk.c: Asterisk cleanly ending (0).\n", False),      # no signature
    (-11, "Assert failed: endpt && rdata\n", False),                          # SIGSEGV: not it
    (0, "Assert failed: endpt && rdata\n", False),                            # no crash at all
])
def test_only_the_res_pjsip_unload_race_signature_counts_as_the_known_asterisk_bug(tmp_path, rc, log, known):
    binary = tmp_path / "prefix" / "sbin" / "asterisk"      # never run: only its path is checked
    binary.parent.mkdir(parents=True)
    binary.write_text("")
    binary.chmod(0o755)
    inst = AsteriskInstance(tmp_path / "prefix", "127.0.0.1")
    inst.log_path.parent.mkdir(parents=True, exist_ok=True)
    inst.log_path.write_text(log)
    inst.returncode = rc
    assert inst.crashed_by_known_asterisk_bug is known
    inst.cleanup()
