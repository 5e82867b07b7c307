"""The README's small office, both ways, on real calls: contrib/switch/office.py served by
`switch => Python/office`, and its twin contrib/switch/extensions.conf used as is (an Asterisk
without pbx_python). Every test runs once each way and must see the same thing.

The office as a new user would set it up: PJSIP endpoints named after the extensions, the desk
phone 2002 (a SIPp UAC on its own loopback address) calls, phone 2001 (a SIPp UAS on another)
answers, is busy or stays silent, 2003 is an endpoint that never registered, and the "trunk"
endpoint leads to a SIPp UAS standing for the provider. What the caller heard is read from the
prompts app_voicemail played on the caller's channel (pbx_python.testing.voicemail.prompts).

Where the two ways first differed: office.py's bodies returned 0 after a failed Dial, so the
call ran off the end of the extension and Asterisk's auto fallthrough played busy/congestion
(a caller who had left a message heard 10 s of busy; a provider's 404 reached the caller as
503), while extensions.conf hangs up. The bodies now end with Hangup() like their twins.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable

import pytest

from pbx_python.testing import AsteriskInstance, Sipp, SippResult, SippUas, free_loopback_host
from pbx_python.testing.configs import pjsip_conf, pjsip_endpoint
from pbx_python.testing.net import release_host
from pbx_python.testing.sipp import DTMF_UAC, dtmf_args
from pbx_python.testing.voicemail import mailbox_dir, prompts, seed_messages
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.asterisk_modules("app_voicemail")]

SWITCH_DIR = ROOT / "contrib" / "switch"
#: The two ways of writing [office]: the Python switch, and contrib/switch/extensions.conf.
WAYS = ("python-switch", "extensions-conf")

PASSWORD = "4321"              # mailbox 2002@office (the caller's own)
VOICEMAIL_CONF = f"""\
[general]
format = gsm
attach = no
minsecs = 0
review = no
operator = no

[office]
2001 => 1234,Alice Martin
2002 => {PASSWORD},Bob Durand
2003 => 5678,Carla Silva
"""

#: An office phone that is switched off: its endpoint exists, no contact ever registered.
NOT_REGISTERED = """
[2003]
type = endpoint
transport = transport-udp
context = office
disallow = all
allow = ulaw,alaw
aors = 2003

[2003]
type = aor
max_contacts = 1
"""

#: What app_voicemail says before the beep when the mailbox has no recorded greeting:
#: "The person at extension 2-0-0-1 is on the phone" ('b') / "... is unavailable" ('u').
GREETING_HEAD = ["vm-theperson", "digits/2", "digits/0", "digits/0", "digits/1"]
#: The caller stays this long after VoiceMail answers: the greeting above takes about 6 s.
GREETING_MS = 8000


@dataclass
class Office:
    ast: AsteriskInstance
    sipp: Sipp
    desk: str                  # 2002, the caller
    phone: str                 # 2001's address
    trunk: str                 # the provider's address
    since: int = 0             # the log offset when the last call was placed

    def phone_2001(self, behaviour: str) -> SippUas:
        """Phone 2001, answering as ``behaviour`` ("answer", "busy", "silent")."""
        return self.sipp.uas(self.phone, 5060, scenario=behaviour)

    def provider(self, behaviour: str = "answer") -> SippUas:
        """The provider behind the trunk, answering every call as ``behaviour``."""
        return self.sipp.uas(self.trunk, 5060, scenario=behaviour)

    def dial(self, number: str, hold_ms: int = 1000, digits: str = "", dtmf_wait_ms: int = 500,
             timeout: float = 20) -> SippResult:
        """The desk phone 2002 dials ``number``, keys in ``digits`` once answered (if any),
        and hangs up ``hold_ms`` later."""
        self.since = self.ast.log_offset()
        extra = ({"scenario": DTMF_UAC, "extra_args": dtmf_args(digits, wait_ms=dtmf_wait_ms)}
                 if digits else {})
        return self.sipp.run_uac(self.ast.host, local_host=self.desk, service=number,
                                 duration_ms=hold_ms, timeout=timeout, **extra)

    def heard(self) -> list[str]:
        """The prompts played to the caller during the last call."""
        return [p.file for p in prompts(self.ast.log_text(self.since))
                if p.channel.startswith("PJSIP/2002-")]


def start_office(way: str, make: Callable[..., AsteriskInstance], python_asterisk,
                 host: str, files: dict[str, str]) -> AsteriskInstance:
    if way == "python-switch":
        return python_asterisk("[office]\nswitch => Python/office\n", modules=("office",),
                               paths=(str(SWITCH_DIR),), host=host, configs=files)
    files = {**files, "extensions.conf": (SWITCH_DIR / "extensions.conf").read_text()}
    return make(host=host, configs=files, start=True)


@pytest.fixture(params=WAYS)
def office(request, asterisk_factory, python_asterisk, sipp) -> Iterator[Office]:
    # Asterisk (SIP and AMI), then the desk phone, phone 2001 and the provider, each on its own
    # address with SIP's port free
    hosts = [free_loopback_host(shuffle=True)]
    for _ in range(3):
        hosts.append(free_loopback_host(tcp_ports=(), exclude=hosts, shuffle=True))
    host, desk, phone, trunk = hosts
    pjsip = "\n".join([pjsip_conf(host),
                       pjsip_endpoint("2001", phone, context="office"),
                       pjsip_endpoint("2002", desk, context="office",
                                      extra={"callerid": '"Bob Durand" <2002>'}),
                       NOT_REGISTERED,
                       pjsip_endpoint("trunk", trunk)])
    files = {"pjsip.conf": pjsip, "voicemail.conf": VOICEMAIL_CONF}
    try:
        ast = start_office(request.param, asterisk_factory, python_asterisk, host, files)
        yield Office(ast, sipp, desk, phone, trunk)
    finally:
        for h in (desk, phone, trunk):
            release_host(h)        # asterisk_factory releases the Asterisk's address


def test_a_call_to_a_phone_that_answers_reaches_the_phone(office):
    with office.phone_2001("answer") as phone:
        call = office.dial("2001")
        assert len(phone.received_invites()) == 1
    assert call.final_status == 200, call
    assert re.search(r"PJSIP/2001-\w+ answered PJSIP/2002-\w+", office.ast.log_text(office.since))
    assert office.heard() == []                    # no voicemail


def test_a_busy_phone_sends_the_caller_to_the_busy_greeting(office):
    with office.phone_2001("busy") as phone:
        call = office.dial("2001", hold_ms=GREETING_MS)
        assert len(phone.received_invites()) == 1
    assert call.final_status == 200, call          # VoiceMail answered
    assert office.heard()[:6] == GREETING_HEAD + ["vm-isonphone"]


def test_a_caller_who_leaves_a_message_is_thanked_and_hung_up_on(office):
    # '#' skips the greeting, the second '#' ends the message
    with office.phone_2001("busy"):
        call = office.dial("2001", digits="##", dtmf_wait_ms=2500, hold_ms=6000, timeout=30)
    assert len(list(mailbox_dir(office.ast, "2001", "office").glob("msg*.txt"))) == 1
    assert office.heard()[-1] == "auth-thankyou"
    # a BYE from the office within 6 s, not 10 s of busy tone (Asterisk's auto fallthrough)
    assert any(m.startswith("BYE ") for m in call.received()), call


def test_a_phone_that_rings_without_answering_sends_the_caller_to_the_unavailable_greeting(office):
    # the office rings a phone 20 s, then takes the caller to voicemail
    with office.phone_2001("silent") as phone:
        call = office.dial("2001", hold_ms=GREETING_MS, timeout=45)
        assert len(phone.received_invites()) == 1
    assert call.final_status == 200, call
    assert office.heard()[:6] == GREETING_HEAD + ["vm-isunavail"]


def test_a_phone_that_is_not_registered_sends_the_caller_to_the_unavailable_greeting(office):
    call = office.dial("2003", hold_ms=GREETING_MS)
    assert call.final_status == 200, call
    assert office.heard()[:6] == GREETING_HEAD[:-1] + ["digits/3", "vm-isunavail"]


def test_nine_dials_the_number_over_the_trunk_without_the_nine(office):
    with office.provider() as provider:
        call = office.dial("9015550123")
        invites = provider.received_invites()
    assert call.final_status == 200, call
    assert len(invites) == 1
    assert invites[0].startswith(f"INVITE sip:015550123@{office.trunk}:5060 SIP/2.0"), invites[0]


@pytest.mark.parametrize(("provider_answer", "caller_gets"), [("busy", 486), ("notfound", 404)])
def test_an_outside_number_the_provider_refuses_gives_the_caller_the_providers_answer(
        office, provider_answer, caller_gets):
    with office.provider(provider_answer):
        call = office.dial("9015550123")
    assert call.final_status == caller_gets, call


def test_8000_opens_the_callers_own_mailbox_asking_only_for_the_password(office):
    seed_messages(office.ast, "2002", 2, context="office")
    call = office.dial("8000", digits=PASSWORD + "#", hold_ms=4000)
    assert call.final_status == 200, call
    # not vm-login (which asks for a mailbox number): the mailbox is the caller's, 2002, whose
    # two messages are announced after the password
    assert office.heard()[:5] == ["vm-password", "vm-youhave", "digits/2", "vm-INBOX",
                                  "vm-messages"]
