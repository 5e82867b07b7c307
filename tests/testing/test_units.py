"""Unit tests of pbx_python.testing that need neither Asterisk nor SIPp."""
from __future__ import annotations

import pytest

from pathlib import Path

from pbx_python.testing import (
    AsteriskInstance,
    cli_quote,
    configs,
    health,
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


def _rtp_range(text: str) -> tuple[int, int]:
    values = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)
    return int(values["rtpstart"]), int(values["rtpend"])


@pytest.mark.parametrize("host", ["127.0.0.2", "127.0.0.200", "127.0.0.254", "127.3.7.9"])
def test_generated_rtp_conf_carries_several_hundred_bridged_calls(host: str) -> None:
    start, end = _rtp_range(configs.rtp_conf(host))
    # a call bridged through a node has two legs, each an RTP port and its RTCP port
    assert (end - start + 1) // 4 >= 400
    assert 1024 < start < end < 32768          # below Linux's ephemeral ports
    assert "icesupport = no" in configs.rtp_conf(host)


def test_rtp_port_count_is_a_parameter() -> None:
    assert _rtp_range(configs.rtp_conf("127.0.0.2", ports=100)) == configs.rtp_port_range("127.0.0.2", 100)
    lo, hi = configs.rtp_port_range("127.0.0.2", 100)
    assert hi - lo + 1 == 100
    lo, hi = configs.rtp_port_range("127.0.0.4", 50000)
    assert hi - lo + 1 == 50000 and hi <= 65535
    with pytest.raises(ValueError):
        configs.rtp_port_range("127.0.0.2", 1)


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


def test_metrics_configs_serve_prometheus_on_the_instance_address_only() -> None:
    files = configs.metrics_configs("127.0.0.9", 18088)
    assert "enabled = yes" in files["http.conf"]
    assert "bindaddr = 127.0.0.9" in files["http.conf"] and "bindport = 18088" in files["http.conf"]
    assert "enabled = yes" in files["prometheus.conf"] and "uri = metrics" in files["prometheus.conf"]
    assert "res_prometheus" not in files["modules.conf"]
    assert "noload => chan_alsa.so" in files["modules.conf"]
    assert "enabled = no" in configs.http_conf()        # the default: no HTTP server
    with pytest.raises(ValueError):
        configs.metrics_configs("0.0.0.0")
    with pytest.raises(ValueError):
        configs.scrape("10.0.0.1")


def test_iax2_configs_bind_the_instance_address_and_admit_only_the_peer_address() -> None:
    files = configs.iax2_configs("127.0.0.9", [
        configs.iax_peer("sopA", "127.0.0.5", username="caller"),
        configs.iax_user("caller", "127.0.0.5", context="phones")])
    conf = files["iax.conf"]
    assert conf.startswith("[general]\nbindaddr = 127.0.0.9:4569\n")
    assert "\n[sopA]\ntype = peer\nhost = 127.0.0.5\nport = 4569\nusername = caller\n" in conf
    user = conf.split("[caller]\n", 1)[1]
    assert "context = phones\n" in user
    assert "deny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.5/255.255.255.255\n" in user
    assert "noload => chan_iax2.so" not in files["modules.conf"]
    assert "noload => chan_alsa.so" in files["modules.conf"]     # the other exclusions stay


@pytest.mark.parametrize("make", [
    lambda: configs.iax_conf("0.0.0.0"),
    lambda: configs.iax_peer("p", "10.0.0.1"),
    lambda: configs.iax_user("u", "192.168.1.2", context="x"),
])
def test_iax2_configs_refuse_addresses_outside_loopback(make) -> None:
    with pytest.raises(ValueError, match="127.0.0.0/8"):
        make()


def test_modules_conf_loading_refuses_a_module_the_defaults_load_anyway() -> None:
    assert "noload => res_prometheus.so" not in configs.modules_conf_loading(configs.PROMETHEUS)
    with pytest.raises(ValueError, match="chan_pjsip.so"):
        configs.modules_conf_loading("chan_pjsip.so")


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


ASSERT_LINE = "ERROR[1] pjproject: ../src/pjsip/sip_endpo Assert failed: endpt && rdata\n"
ASAN_REPORT = """=================================================================
==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010 at pc 0x1 bp 0x2 sp 0x3
READ of size 4 at 0x602000000010 thread T12
    #0 0x55 in pyast_getvar csrc/pbx_python.c:300
    #1 0x56 in _cffi_f_pyast_getvar build/_pbx_python_shim.c:900

0x602000000010 is located 0 bytes inside of 16-byte region [0x602000000010,0x602000000020)
freed by thread T11 here:
    #0 0x57 in __interceptor_free ../../../../src/libsanitizer/asan/asan_malloc_linux.cpp:52
    #1 0x58 in ast_channel_destructor main/channel.c:2300

SUMMARY: AddressSanitizer: heap-use-after-free csrc/pbx_python.c:300 in pyast_getvar
Shadow bytes around the buggy address:
  0x0c047fff8000: fa fa 00 00 fa fa
"""


@pytest.mark.parametrize("rc, after_graceful_stop, other, known", [
    (-6, ASSERT_LINE, [], True),
    (-6, None, [], False),                                            # no graceful stop asked for
    (-6, "NOTICE[1] asterisk.c: Asterisk cleanly ending (0).\n", [], False),   # no signature
    (-11, ASSERT_LINE, [], False),                                    # SIGSEGV: not it
    (0, ASSERT_LINE, [], False),                                      # no crash at all
    (-6, ASSERT_LINE, [health.Problem("sanitizer", "asan.1", "ERROR: AddressSanitizer")], False),
    (-6, ASSERT_LINE, [health.Problem("assertion", "full", "FRACK!, Failed assertion")], False),
])
def test_only_the_res_pjsip_unload_race_alone_counts_as_the_known_asterisk_bug(rc, after_graceful_stop, other, known):
    assert health.is_known_unload_race(rc, after_graceful_stop, other) is known


def _fake_prefix(tmp_path):
    binary = tmp_path / "prefix" / "sbin" / "asterisk"      # never run: only its path is checked
    binary.parent.mkdir(parents=True)
    binary.write_text("")
    binary.chmod(0o755)
    return tmp_path / "prefix"


def test_an_abort_with_the_race_text_is_a_crash_unless_a_graceful_stop_preceded_it(tmp_path):
    inst = AsteriskInstance(_fake_prefix(tmp_path), "127.0.0.1")
    inst.log_path.write_text(ASSERT_LINE)
    inst.returncode = -6
    assert not inst.crashed_by_known_asterisk_bug
    assert [p.kind for p in inst.problems()] == ["crash"]
    inst.cleanup()


def test_problems_lists_sanitizer_reports_assertions_and_crashes(tmp_path):
    inst = AsteriskInstance(_fake_prefix(tmp_path), "127.0.0.1")
    (inst.logdir / "asan.4242").write_text(ASAN_REPORT)
    inst.log_path.write_text("[x] ERROR[7] astobj2.c: FRACK!, Failed assertion bad magic number 0x0 for object 0x1 (0)\n")
    inst.returncode = -11
    problems = inst.problems()
    assert [p.kind for p in problems] == ["assertion", "sanitizer", "crash"]
    report = problems[1].text
    assert report.splitlines()[0].startswith("==4242==ERROR: AddressSanitizer: heap-use-after-free")
    assert "#0 0x55 in pyast_getvar csrc/pbx_python.c:300" in report
    assert "freed by thread T11 here:" in report and "ast_channel_destructor" in report
    assert report.splitlines()[-1].startswith("SUMMARY: AddressSanitizer: heap-use-after-free")
    assert "Shadow bytes" not in report
    assert "SIGSEGV" in problems[2].text
    inst.cleanup()


@pytest.mark.parametrize("rc", [0, 1, -9, None])
def test_a_clean_exit_a_failed_start_and_the_helpers_sigkill_are_no_problem(tmp_path, rc):
    inst = AsteriskInstance(_fake_prefix(tmp_path), "127.0.0.1")
    inst.log_path.write_text("NOTICE[1] asterisk.c: Asterisk cleanly ending (0).\n")
    inst.returncode = rc
    assert inst.problems() == []
    inst.cleanup()


def test_asan_options_defaults_environment_and_log_path(tmp_path):
    opts = dict(o.split("=", 1) for o in health.asan_options(tmp_path, {}).split(":"))
    assert opts["detect_leaks"] == "0" and opts["abort_on_error"] == "1"
    assert opts["log_path"] == str(tmp_path / "asan")
    assert Path(opts["suppressions"]).is_file()
    env = {"ASAN_OPTIONS": "detect_leaks=1:verbosity=1 log_path=/elsewhere"}
    opts = dict(o.split("=", 1) for o in health.asan_options(tmp_path, env).split(":"))
    assert opts["detect_leaks"] == "1" and opts["verbosity"] == "1"   # the environment wins
    assert opts["log_path"] == str(tmp_path / "asan")                 # except where reports go


def test_links_asan_reads_the_elf_needed_name(tmp_path):
    plain, asan = tmp_path / "plain.so", tmp_path / "asan.so"
    plain.write_bytes(b"\x7fELF libc.so.6\x00")
    asan.write_bytes(b"\x7fELF libasan.so.8\x00libc.so.6\x00")
    assert not health.links_asan(plain) and health.links_asan(asan)


def test_scan_file_keeps_the_first_report_and_counts_further_assertions(tmp_path):
    log = tmp_path / "full"
    frack = "ERROR[9] astobj2.c: FRACK!, Failed assertion bad magic number 0x0 for object 0x{} (0)\n"
    log.write_text("NOTICE boot\n" * 1000 + "".join(frack.format(i) for i in range(5)) + ASAN_REPORT
                   + ASAN_REPORT.replace("heap-use-after-free", "double-free"))
    found = health.scan_file(log)
    assert [p.kind for p in found] == ["sanitizer", "assertion", "assertion", "assertion", "assertion"]
    assert "heap-use-after-free" in found[0].text and "double-free" not in found[0].text
    assert found[1].text.endswith("0x0 (0)") and found[4].text == "... and 2 more"


def test_dtmf_args_set_the_scenario_parameters() -> None:
    from pbx_python.testing.sipp import DTMF_UAC, dtmf_args
    assert DTMF_UAC.is_file()
    assert dtmf_args("24711") == ["-set", "digits", "24711", "-set", "dtmf_wait", "300"]
    assert dtmf_args("*9#", wait_ms=150)[-1] == "150"


@pytest.mark.parametrize("digits", ["", "12x", "4 7", "1,2"])
def test_dtmf_args_refuse_what_is_not_a_dtmf_digit(digits: str) -> None:
    from pbx_python.testing.sipp import dtmf_args
    with pytest.raises(ValueError, match="DTMF"):
        dtmf_args(digits)


def test_prompts_lists_each_prompt_with_its_language_and_call() -> None:
    from pbx_python.testing.voicemail import Prompt, prompts
    log = (
        "[2026-12-01 02:36:46.819] VERBOSE[17492][C-00000003] file.c: <PJSIP/sopA-00000002> "
        "Playing 'vm-youhave.gsm' (language 'fr')\n"
        "[2026-12-01 02:36:46.900] VERBOSE[17492][C-00000003] app_verbose.c: Playing 'x.gsm' "
        "(language 'en')\n"
        "[2026-12-01 02:36:47.740] VERBOSE[17493][C-00000004] file.c: <PJSIP/sopA-00000003> "
        "Playing 'digits/2.gsm' (language 'en')\n")
    assert prompts(log) == [Prompt("C-00000003", "PJSIP/sopA-00000002", "vm-youhave", "fr"),
                            Prompt("C-00000004", "PJSIP/sopA-00000003", "digits/2", "en")]
    assert [p.file for p in prompts(log, call="C-00000004")] == ["digits/2"]


def test_seed_messages_writes_what_app_voicemail_counts(tmp_path) -> None:
    from types import SimpleNamespace

    from pbx_python.testing.voicemail import seed_messages
    folder = seed_messages(SimpleNamespace(spooldir=tmp_path), "5001", 2)  # type: ignore[arg-type]
    assert folder == tmp_path / "voicemail" / "default" / "5001" / "INBOX"
    assert sorted(p.name for p in folder.iterdir()) == [
        "msg0000.gsm", "msg0000.txt", "msg0001.gsm", "msg0001.txt"]
    assert "origmailbox=5001" in (folder / "msg0001.txt").read_text()
