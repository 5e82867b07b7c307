"""The source document's voicemail flow, end to end, on three real Asterisk nodes.

A SIPp phone on sopA dials *98, keys in the language (1 English, 2 French) and the mailbox as
DTMF (SIP INFO). sopA finds the mailbox's SOPs with GETEXTENSIONINFO in the cluster directory
(contrib/cluster/cluster_directory.conf) and CallService sends the call to the 8500 service
there, which opens the mailbox with app_voicemail's VoiceMailMain in that language. The dialplan,
the directory and voicemail.conf are the contrib/cluster files users copy; only the trunks and
pbx_python.conf are the test cluster's (UDP, qualified every second).

What proves where and how the mailbox was opened: the prompts app_voicemail played (Asterisk logs
each one with its language) on the channel from sopA, on the node that took the call, and the
number of messages it announced: mailbox 5001 holds two messages (on sopB and sopC, which stand
for shared storage), every other mailbox none.
"""
from __future__ import annotations

import random
import re
import time

import pytest

from pbx_python.testing import free_loopback_host
from pbx_python.testing.cluster import ClusterSpec, start_cluster, wait_qualified
from pbx_python.testing.sipp import DTMF_UAC, dtmf_args
from pbx_python.testing.voicemail import prompts, seed_messages
from tests.conftest import MODULE_SO, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.asterisk_modules("app_voicemail")]

CLUSTER_DIR = ROOT / "contrib" / "cluster"
SOPS = ("sopA", "sopB", "sopC")
PHONE = "127.0.0.204"                 # inside the test cluster's phones range 127.0.0.200/29
MAILBOX = "5001"                      # cluster_directory.conf: _5XXX on sopB, then sopC
MESSAGES = 2
ENGLISH, FRENCH = "1", "2"
DIRECTORY = "\n[directory]\nsource = file\nfile = cluster_directory.conf\n"
# A callflow with a mistake: it passes a mailbox that is not a number to the 8500 service.
BAD_CALLFLOW = """
[test]
exten => badmailbox,1,CallService(8500,sopB,,4a11,fr)
 same => n,Verbose(0,RESULT STATUS=${CALLSERVICE_STATUS} TRIED=${CALLSERVICE_TRIED})
"""
REPORT_RE = r"app_verbose\.c: (voicemail: mailbox \[[^\]]*\] .*)$"


def pick_hosts() -> dict[str, str]:
    """Free 127.0.0.N addresses outside the phones range, in random order (see test_callservice)."""
    hosts: dict[str, str] = {}
    for name in SOPS:
        hosts[name] = free_loopback_host(udp_ports=(5060,), tcp_ports=(5038,),
                                         candidates=random.sample(range(11, 190), 179),
                                         exclude=hosts.values())
    return hosts


@pytest.fixture
def cluster(asterisk_factory):
    if not MODULE_SO.is_file():
        pytest.fail(f"{MODULE_SO} is missing: run 'make module' first")
    files = {name: (CLUSTER_DIR / name).read_text()
             for name in ("voicemail.conf", "cluster_directory.conf")}
    spec = ClusterSpec(sops=pick_hosts(), modules=["dialplan_funcs.directory"],
                       python_path=[str(ROOT)], extra_callservice=DIRECTORY, extra_configs=files)
    extensions = (CLUSTER_DIR / "extensions.conf").read_text() + BAD_CALLFLOW
    nodes = start_cluster(spec, lambda node: extensions, MODULE_SO, asterisk_factory)
    wait_qualified(nodes)
    for node in ("sopB", "sopC"):
        seed_messages(nodes[node], MAILBOX, MESSAGES)
    return nodes


def dial_voicemail(nodes, sipp, digits: str) -> dict[str, str]:
    """The phone calls *98 on sopA and keys in ``digits``; each node's log of the call."""
    since = {n: inst.log_offset() for n, inst in nodes.items() if inst.running}
    result = sipp.run_uac(nodes["sopA"].host, local_host=PHONE, service="*98",
                          scenario=DTMF_UAC, extra_args=dtmf_args(digits), duration_ms=4000,
                          timeout=30)
    assert result.final_status == 200, result
    nodes["sopA"].wait_for_log(REPORT_RE, since=since["sopA"])
    time.sleep(0.2)               # the other nodes' last lines of the call
    return {n: nodes[n].log_text(offset) for n, offset in since.items()}


def report(logs: dict[str, str]) -> str:
    """The caller's SOP's line about the call (its hangup handler, [voicemail-report])."""
    return re.search(REPORT_RE, logs["sopA"], re.M).group(1)


def voicemail_prompts(logs: dict[str, str], node: str) -> list[tuple[str, str]]:
    """(file, language) of the prompts played on ``node`` to the call that came from sopA."""
    return [(p.file, p.language) for p in prompts(logs[node]) if p.channel.startswith("PJSIP/sopA-")]


def test_mailbox_opens_on_its_primary_in_french(cluster, sipp):
    logs = dial_voicemail(cluster, sipp, FRENCH + MAILBOX)

    assert report(logs) == (f"voicemail: mailbox [{MAILBOX}] language [fr] directory [sopB,sopC] "
                            "status=ANSWER sop=sopB tried=sopB:ANSWER")
    assert f"voicemail service: mailbox [{MAILBOX}] language [fr] context [default] from [sopA]" \
        in logs["sopB"]
    played = voicemail_prompts(logs, "sopB")
    # "Vous avez" "2" "nouveaux" "messages": the mailbox's two messages, in French.
    assert played[:4] == [("vm-youhave", "fr"), ("digits/2", "fr"), ("vm-INBOX", "fr"),
                          ("vm-messages", "fr")], played
    assert "voicemail service" not in logs["sopC"]


def test_mailbox_opens_on_its_primary_in_english(cluster, sipp):
    logs = dial_voicemail(cluster, sipp, ENGLISH + MAILBOX)

    assert report(logs) == (f"voicemail: mailbox [{MAILBOX}] language [en] directory [sopB,sopC] "
                            "status=ANSWER sop=sopB tried=sopB:ANSWER")
    played = voicemail_prompts(logs, "sopB")
    assert played[:4] == [("vm-youhave", "en"), ("digits/2", "en"), ("vm-INBOX", "en"),
                          ("vm-messages", "en")], played


def test_the_caller_is_asked_for_the_mailbox_in_the_language_chosen(cluster, sipp):
    logs = dial_voicemail(cluster, sipp, FRENCH + MAILBOX)

    caller_prompts = [(p.file, p.language) for p in prompts(logs["sopA"])
                      if p.channel.startswith("PJSIP/phones-")]
    assert caller_prompts[:1] == [("vm-login", "fr")]


def stop_and_wait_down(nodes, sop: str) -> None:
    """Stop ``sop``'s Asterisk and wait until sopA's qualify sees its trunk UNAVAILABLE."""
    nodes[sop].stop()
    deadline = time.monotonic() + 10
    while nodes["sopA"].eval_function(f"DEVICE_STATE(PJSIP/{sop})") != "UNAVAILABLE":
        assert time.monotonic() < deadline, f"sopA's qualify did not notice that {sop} is down"
        time.sleep(0.1)


def test_primary_down_the_mailbox_opens_on_the_secondary(cluster, sipp):
    stop_and_wait_down(cluster, "sopB")

    logs = dial_voicemail(cluster, sipp, FRENCH + MAILBOX)

    assert report(logs) == (f"voicemail: mailbox [{MAILBOX}] language [fr] directory [sopB,sopC] "
                            "status=ANSWER sop=sopC tried=sopB:KNOWN_DOWN,sopC:ANSWER")
    played = voicemail_prompts(logs, "sopC")
    assert played[:2] == [("vm-youhave", "fr"), ("digits/2", "fr")], played


def test_a_mailbox_without_messages_is_announced_empty(cluster, sipp):
    logs = dial_voicemail(cluster, sipp, ENGLISH + "6001")   # _6XXX: sopC, then sopA

    assert report(logs) == ("voicemail: mailbox [6001] language [en] directory [sopC,sopA] "
                            "status=ANSWER sop=sopC tried=sopC:ANSWER")
    played = voicemail_prompts(logs, "sopC")
    assert played[:3] == [("vm-youhave", "en"), ("vm-no", "en"), ("vm-messages", "en")], played


def test_a_mailbox_not_in_the_directory_places_no_call(cluster, sipp):
    logs = dial_voicemail(cluster, sipp, ENGLISH + "7777")

    assert "voicemail: mailbox [7777] is not in the cluster directory" in logs["sopA"]
    assert report(logs) == ("voicemail: mailbox [7777] language [en] directory [] "
                            "status= sop= tried=")
    assert not any("voicemail service" in text for text in logs.values())
    assert [(p.file, p.language) for p in prompts(logs["sopA"])][-1] == ("pbx-invalid", "en")


def test_both_sops_of_the_mailbox_down_takes_the_unavailable_branch(cluster, sipp):
    stop_and_wait_down(cluster, "sopB")
    stop_and_wait_down(cluster, "sopC")

    logs = dial_voicemail(cluster, sipp, ENGLISH + MAILBOX)

    assert report(logs) == (f"voicemail: mailbox [{MAILBOX}] language [en] directory [sopB,sopC] "
                            "status=UNAVAILABLE sop= tried=sopB:KNOWN_DOWN,sopC:KNOWN_DOWN")
    assert re.search(rf"WARNING\[.*voicemail: no SOP can open mailbox {MAILBOX} "
                     r"\(sopB:KNOWN_DOWN,sopC:KNOWN_DOWN\)", logs["sopA"])
    assert [(p.file, p.language) for p in prompts(logs["sopA"])][-1] == ("vm-nobodyavail", "en")


def test_the_service_refuses_a_mailbox_that_is_not_a_number_from_another_sop(cluster):
    b_since = cluster["sopB"].log_offset()

    result = cluster["sopA"].run_local("badmailbox", "test")

    assert result == "RESULT STATUS=BUSY TRIED=sopB:DECLINED"
    cluster["sopB"].wait_for_log(r"WARNING\[.*voicemail service: no valid mailbox in Parameter1 "
                                 r"\(from sopA\): call refused", since=b_since)
    assert "voicemail service: mailbox" not in cluster["sopB"].log_text(b_since)
    assert not prompts(cluster["sopB"].log_text(b_since))


