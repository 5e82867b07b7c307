"""What a call carries in, whatever channel it arrived on (service.inbound): only a PJSIP call a
cluster SOP sent to this node can carry CallService routing data. A call over another technology
(IAX2, Local...) or a channel this node dialled (an AMI Originate to a SOP's trunk) carries none
and is no call *from* that SOP, and no SIP header is read for it.

Runs outside Asterisk with a stand-in channel that answers what inbound() asks of a channel."""
from __future__ import annotations

import importlib
import sys

import pytest

from pbx_python.config import Config
from pbx_python.registry import Registry, collect_into

NAME = "dialplan_funcs.callservice.service"


@pytest.fixture
def service():
    """A fresh generation of the service module, configured as sopA of sopA, sopB."""
    sys.modules.pop(NAME, None)
    previous = collect_into(Registry())
    try:
        module = importlib.import_module(NAME)
    finally:
        collect_into(previous)
    module.configure(Config(sections={"callservice": [
        ("local_sop", "sopA"), ("sops", "sopA, sopB"), ("service_context", "callservice-in")]}))
    yield module
    sys.modules.pop(NAME, None)


class StandIn:
    """A channel as inbound() sees it: identity, no CALLSERVICE_IN* variables yet, and SIP
    headers (a read of one is recorded)."""

    def __init__(self, name: str, tech: str, outgoing: bool = False, headers: dict | None = None):
        self.name, self.tech, self.outgoing = name, tech, outgoing
        self.headers = headers or {}
        self.header_reads: list[str] = []
        self.variables: dict[str, str] = {}

    def eval_each(self, *templates: str) -> list[str]:
        return [self.variables.get(t[2:-1], "") for t in templates]

    def func_read_each(self, *exprs: str, maxlen: int = 0) -> list:
        self.header_reads += exprs
        return [self.headers.get(e.split(",", 1)[1][:-1]) for e in exprs]

    def set_vars(self, values: dict[str, str]) -> None:
        self.variables.update(values)


def test_an_incoming_pjsip_call_from_a_sop_trunk_came_from_that_sop(service):
    chan = StandIn("PJSIP/sopB-0000002a", "PJSIP")
    found = service.inbound(chan, routing_only=True)
    assert (found.state, found.came_from) == ("none", "sopB")
    assert chan.header_reads == ["PJSIP_HEADER(read,X-CallService)"]


def test_a_channel_this_node_dialled_to_a_sop_trunk_did_not_come_from_that_sop(service):
    chan = StandIn("PJSIP/sopB-0000002b", "PJSIP", outgoing=True,
                   headers={"X-CallService": "v=1;o=sopB;path=sopB;h=1;e=2000;p1=YQ"})
    found = service.inbound(chan, routing_only=True)
    assert (found.state, found.came_from, found.meta, found.params) == \
        ("none", None, None, ("", "", "", ""))
    assert chan.header_reads == []


@pytest.mark.parametrize("name, tech", [("IAX2/127.0.0.5:4569-4331", "IAX2"),
                                        ("Local/remote@phones-00000001;2", "Local")])
def test_a_call_over_another_technology_carries_no_routing_data(service, name, tech):
    chan = StandIn(name, tech)
    found = service.inbound(chan)
    assert (found.state, found.came_from, found.meta, found.params) == \
        ("none", None, None, ("", "", "", ""))
    assert chan.header_reads == []
