"""CallService whatever the call arrived on: the channel that runs CallService comes over IAX2
from another Asterisk, over PJSIP from a SIPp phone, from an AMI Originate (a PJSIP channel to a
SIPp phone that answers, then runs the dialplan), or is a Local channel; each is routed once to
the service on a remote SOP (sopB) and once to the service on the local SOP (sopA), and the
service reads the four parameters byte for byte. The delivery leg between SOPs is PJSIP
whatever the origin: the parameters travel in X-CallService headers."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Optional

import pytest

from pbx_python.testing import AsteriskInstance, Sipp, free_loopback_host, free_port
from pbx_python.testing.cluster import PHONE_NET, ClusterSpec, start_cluster, wait_qualified
from pbx_python.testing.configs import IAX2_PORT, iax2_configs, iax_peer, iax_user
from pbx_python.testing.net import release_host
from tests.conftest import MODULE_SO
from tests.integration.test_callservice import b64, decoded, pick_hosts, service_line

pytestmark = pytest.mark.integration

#: Parameter1 is a CallService argument (inner blanks, a '|', UTF-8); the others are set in
#: CALLSERVICE_PARAM2..4, the documented way for commas, quotes, backslashes and line breaks.
PARAM1 = "un | deux caf\u00e9 \u4e2d\u6587"
PARAMS = (PARAM1,
          'commas, "quotes", semi;colons and a back\\slash',
          "a|b|c \u00fcber \u65e5\u672c \U0001f4de",
          "line one\r\nX-Evil: injected")
RESULT = ("Verbose(0,RESULT TECH=${CHANNEL(channeltype)} STATUS=${CALLSERVICE_STATUS} "
          "SOP=${CALLSERVICE_SOP} TRIED=${CALLSERVICE_TRIED})")
#: The SOP each destination routes to, seen from sopA (where every call arrives).
DESTINATIONS = {"remote-sop": "sopB", "local-sop": "sopA"}
#: Someone reached through sopB's trunk (answers, then waits): an Originate from sopA calls them.
REACHED_ON_SOPB = "5000"


def extensions(node: str) -> str:
    variables = "".join(f" same => n,Set(CALLSERVICE_PARAM{i}=${{BASE64_DECODE({b64(p)})}})\n"
                        for i, p in enumerate(PARAMS[1:], start=2))
    phones = "".join(f"exten => {where},1,NoOp()\n{variables}"
                     f" same => n,CallService(2000,{sop},,{PARAM1})\n"
                     f" same => n,{RESULT}\n same => n,Hangup()\n"
                     for where, sop in DESTINATIONS.items())
    service = ("exten => 2000,1,Answer()\n"
               f" same => n,Verbose(0,SERVICE 2000 NODE={node} ORIGIN=[${{INITSERVICE(origin)}}] "
               + " ".join(f"P{i}=[${{BASE64_ENCODE(${{INITSERVICE(Parameter{i})}})}}]"
                          for i in range(1, 5))
               + ")\n same => n,Wait(0.2)\n same => n,Hangup()\n"
               f"exten => {REACHED_ON_SOPB},1,Answer()\n same => n,Wait(10)\n")
    return f"[general]\nstatic = yes\n\n[phones]\n{phones}\n[callservice-in]\n{service}"


@dataclass
class Cluster:
    """sopA and sopB; sopA also takes IAX2 calls from the user ``caller`` at ``caller_host``."""
    nodes: dict[str, AsteriskInstance]
    caller_host: str
    phone_host: str
    make: Callable[..., AsteriskInstance]
    sipp: Sipp
    caller: Optional[AsteriskInstance] = None     # the IAX2 caller, started by over_iax2

    @property
    def a(self) -> AsteriskInstance:
        return self.nodes["sopA"]


@pytest.fixture
def cluster(asterisk_factory, sipp) -> Iterator[Cluster]:
    hosts = pick_hosts(("sopA", "sopB", "caller"), more_udp_ports=(IAX2_PORT,))
    caller_host = hosts.pop("caller")
    phone_host = free_loopback_host(udp_ports=(), tcp_ports=(), network=PHONE_NET, shuffle=True)

    def node_files(node: str) -> dict[str, str]:
        if node != "sopA":
            return {}
        return iax2_configs(hosts["sopA"], [iax_user("caller", caller_host, context="phones")])

    spec = ClusterSpec(sops=hosts, extra_configs=node_files)
    nodes = start_cluster(spec, extensions, MODULE_SO, asterisk_factory)
    wait_qualified(nodes)
    made = Cluster(nodes, caller_host, phone_host, asterisk_factory, sipp)
    yield made
    release_host(phone_host)
    if made.caller is None:
        release_host(caller_host)     # else asterisk_factory releases it with its instance


# ---------------------------------------------------------------------------- the origins
# Each places a call into sopA's [phones] context at ``exten`` and returns sopA's RESULT line.

def result_line(c: Cluster, since: int) -> str:
    return c.a.wait_for_log(r"app_verbose\.c: (RESULT .*)$", timeout=20, since=since).group(1)


def over_iax2(c: Cluster, exten: str) -> str:
    """Another Asterisk (no pbx_python) calls sopA over IAX2 as the IAX2 user ``caller``."""
    c.caller = c.make(host=c.caller_host, name="caller", start=True,
                      configs=iax2_configs(c.caller_host,
                                           [iax_peer("sopA", c.a.host, username="caller")]))
    since = c.a.log_offset()
    c.caller.cli(f"channel originate IAX2/sopA/{exten} application Wait 5")
    return result_line(c, since)


def from_a_phone(c: Cluster, exten: str) -> str:
    """A SIPp phone calls sopA over PJSIP (the ``phones`` endpoint, identified by address)."""
    since = c.a.log_offset()
    call = c.sipp.run_uac(c.a.host, local_host=c.phone_host, service=exten, duration_ms=5000)
    assert call.successful == 1, call
    return result_line(c, since)


def from_ami_originate(c: Cluster, exten: str) -> str:
    """AMI Originate calls a SIPp phone from sopA; once it answers, that channel runs
    [phones]<exten> (click-to-call)."""
    port = free_port(c.phone_host)
    with c.sipp.uas(c.phone_host, port) as phone:
        since = c.a.log_offset()
        response = c.a.ami().action("Originate", Channel=f"PJSIP/phones/sip:phone@{c.phone_host}:{port}",
                                    Context="phones", Exten=exten, Priority="1", Async="true")
        assert response["Response"] == "Success", response
        line = result_line(c, since)
        assert len(phone.received_invites()) == 1
    return line


def on_a_local_channel(c: Cluster, exten: str) -> str:
    """A Local channel originated on sopA (its ;2 half runs [phones]<exten>)."""
    since = c.a.log_offset()
    c.a.cli(f"channel originate Local/{exten}@phones application Wait 5")
    return result_line(c, since)


#: origin -> (how the call is placed, CHANNEL(channeltype) of the channel running CallService)
ORIGINS = {
    "iax2": (over_iax2, "IAX2"),
    "pjsip-phone": (from_a_phone, "PJSIP"),
    "ami-originate": (from_ami_originate, "PJSIP"),
    "local-channel": (on_a_local_channel, "Local"),
}


@pytest.mark.parametrize("destination", DESTINATIONS)
@pytest.mark.parametrize("origin", ORIGINS)
def test_the_service_reads_the_parameters_intact_whatever_the_call_arrived_on(cluster, origin,
                                                                              destination):
    place, tech = ORIGINS[origin]
    sop = DESTINATIONS[destination]
    serving = cluster.nodes[sop]
    since = {name: node.log_offset() for name, node in cluster.nodes.items()}
    assert place(cluster, destination) == \
        f"RESULT TECH={tech} STATUS=ANSWER SOP={sop} TRIED={sop}:ANSWER"
    fields = service_line(serving, since[sop])
    assert (fields["NODE"], fields["ORIGIN"]) == (sop, "sopA")
    assert tuple(decoded(fields, f"P{i}") for i in range(1, 5)) == PARAMS
    assert [line for name, node in cluster.nodes.items()
            for line in node.log_text(since[name]).splitlines()
            if re.search(r"\] (WARNING|ERROR)\[", line)] == []


def test_a_remote_delivery_from_an_iax2_call_goes_over_the_pjsip_trunk(cluster):
    b = cluster.nodes["sopB"]
    since = b.log_offset()
    over_iax2(cluster, "remote-sop")
    assert re.search(r"Executing \[2000@callservice-in:1\] Answer\(\"PJSIP/sopA-[0-9a-f]{8}\"",
                     b.log_text(since))


def test_an_originate_to_a_sop_trunk_can_route_the_call_to_that_sop(cluster):
    # The originated channel is a PJSIP channel of sopB's trunk that sopA dialled: it did not
    # come from sopB, so sopB is no loop (CAME_FROM) and takes the call.
    since = cluster.a.log_offset()
    response = cluster.a.ami().action("Originate", Channel=f"PJSIP/{REACHED_ON_SOPB}@sopB",
                                      Context="phones", Exten="remote-sop", Priority="1",
                                      Async="true")
    assert response["Response"] == "Success", response
    assert result_line(cluster, since) == \
        "RESULT TECH=PJSIP STATUS=ANSWER SOP=sopB TRIED=sopB:ANSWER"
