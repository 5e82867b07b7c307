"""CallService works in an identical way whether the service is on a remote SOP or on the local
SOP (the seed, release 1.01): for each way a service can end, the call is routed once to the
service on a remote SOP (sopB, over its PJSIP trunk) and once to the same service on the local
SOP (sopA, through a Local channel), and both give the same CALLSERVICE_STATUS and the same
outcome label in CALLSERVICE_TRIED, the documented one.

No second SOP is given, so a node-level failure ends UNAVAILABLE instead of trying another."""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from pbx_python.testing.cluster import ClusterSpec, start_cluster, wait_qualified
from tests.conftest import MODULE_SO
from tests.integration.test_callservice import pick_hosts

pytestmark = pytest.mark.integration

RESULT = ("Verbose(0,RESULT STATUS=${CALLSERVICE_STATUS} SOP=${CALLSERVICE_SOP} "
          "TRIED=${CALLSERVICE_TRIED})")


@dataclass(frozen=True)
class Case:
    service: str          # the service's dialplan after "exten => <exten>,1," ("" = no service)
    status: str           # the documented CALLSERVICE_STATUS
    label: str            # the documented outcome label in CALLSERVICE_TRIED
    options: str = ""     # CallService options
    cancel: bool = False  # the caller hangs up while the service rings


CASES = {
    "answer": Case("Answer()\n same => n,Wait(0.2)\n same => n,Hangup()", "ANSWER", "ANSWER"),
    "Busy()": Case("Busy(2)", "BUSY", "BUSY"),
    "Congestion()": Case("Congestion(2)", "UNAVAILABLE", "SIP503"),
    "Hangup() after Ringing()": Case("Ringing()\n same => n,Wait(0.3)\n same => n,Hangup()",
                                     "BUSY", "DECLINED"),
    "Hangup() at once": Case("Hangup()", "BUSY", "DECLINED"),
    "Hangup(21)": Case("Hangup(21)", "UNAVAILABLE", "SIP403"),
    "Hangup(17)": Case("Hangup(17)", "BUSY", "BUSY"),
    "Hangup(19) after ringing": Case("Ringing()\n same => n,Wait(0.3)\n same => n,Hangup(19)",
                                     "NOANSWER", "NOANSWER"),
    "Hangup(19) at once": Case("Hangup(19)", "UNAVAILABLE", "SIP480"),
    "no answer until T()": Case("Ringing()\n same => n,Wait(10)", "NOANSWER", "NOANSWER",
                                options="T(1)"),
    "extension missing": Case("", "UNAVAILABLE", "SIP404"),
    "caller hangs up while it rings": Case("Ringing()\n same => n,Wait(10)", "CANCEL", "CANCEL",
                                           cancel=True),
}
EXTEN = {name: str(3001 + i) for i, name in enumerate(CASES)}


def extensions(node: str) -> str:
    phones = services = ""
    for name, case in CASES.items():
        exten = EXTEN[name]
        for where, sop in (("remote", "sopB"), ("local", "sopA")):
            phones += (f"exten => {where}-{exten},1,CallService({exten},{sop},,,,,,{case.options})\n"
                       f" same => n,{RESULT}\n")
        if case.service:
            services += f"exten => {exten},1,{case.service}\n"
    return (f"[general]\nstatic = yes\n\n[phones]\n{phones}"
            "exten => h,1,Verbose(0,HANGUP-RESULT STATUS=${CALLSERVICE_STATUS} "
            "SOP=${CALLSERVICE_SOP} TRIED=${CALLSERVICE_TRIED})\n\n"
            f"[callservice-in]\n{services}")


FAILING = str(3001 + len(CASES))   # the service on the remote SOP for the failover case


def failover_extensions(node: str) -> str:
    """Both SOPs serve FAILING: sopB rejects it with Hangup(21), sopA rings until T(1)."""
    service = "Hangup(21)" if node == "sopB" else "Ringing()\n same => n,Wait(10)"
    return extensions(node).replace(
        "[callservice-in]\n", f"exten => failover,1,CallService({FAILING},sopB,sopA,,,,,T(1))\n"
        f" same => n,{RESULT}\n\n[callservice-in]\nexten => {FAILING},1,{service}\n")


@pytest.fixture
def nodes(asterisk_factory):
    spec = ClusterSpec(sops=pick_hosts(("sopA", "sopB")))
    started = start_cluster(spec, failover_extensions, MODULE_SO, asterisk_factory)
    wait_qualified(started)
    return started


def result(nodes, where: str, name: str) -> tuple[str, str, str]:
    """(status, sop, label of the one tried entry) of the call routed to ``where``."""
    a, exten = nodes["sopA"], f"{where}-{EXTEN[name]}"
    if CASES[name].cancel:
        serving = nodes["sopB" if where == "remote" else "sopA"]
        since, s_since = a.log_offset(), serving.log_offset()
        a.cli(f"channel originate Local/{exten}@phones application Wait 5")
        serving.wait_for_log(rf"Executing \[{EXTEN[name]}@callservice-in:2\] Wait",
                             since=s_since)
        caller = a.wait_for_log(rf"CallService\(\"(Local/{exten}@phones-\w+;2)\"",
                                since=since).group(1)
        a.cli(f"channel request hangup {caller}")
        line = a.wait_for_log(r"app_verbose\.c: HANGUP-(RESULT .*)$", since=since).group(1)
    else:
        line = a.run_local(exten, context="phones", app="Wait 5", timeout=15)
    m = re.fullmatch(r"RESULT STATUS=(\w*) SOP=(\w*) TRIED=(\w+):(\w+)", line)
    assert m, line
    return m.group(1), m.group(2), m.group(4)


@pytest.mark.parametrize("name", CASES)
def test_a_service_ends_the_same_way_on_a_remote_and_on_the_local_sop(nodes, name):
    case = CASES[name]
    remote, local = result(nodes, "remote", name), result(nodes, "local", name)
    assert (local[0], local[2]) == (remote[0], remote[2])
    assert (remote[0], remote[2]) == (case.status, case.label)
    final = case.status not in ("UNAVAILABLE",)
    assert (remote[1], local[1]) == (("sopB", "sopA") if final else ("", ""))


def test_a_cause_left_by_a_failed_remote_leg_does_not_decide_the_local_delivery(nodes):
    # sopB's 403 leaves cause 21 on the caller; the local service then rings until T(1): Dial
    # ends the Local leg itself, so the leg has no cause of its own and the result is NOANSWER.
    assert nodes["sopA"].run_local("failover", context="phones", app="Wait 5", timeout=15) == \
        "RESULT STATUS=NOANSWER SOP=sopA TRIED=sopB:SIP403,sopA:NOANSWER"
