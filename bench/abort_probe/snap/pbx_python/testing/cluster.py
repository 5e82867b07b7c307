"""A CallService cluster of real Asterisk nodes ("SOPs") on loopback addresses.

Each SOP is an Asterisk process on its own 127.0.0.N:5060 with a PJSIP trunk to every other SOP
(endpoint and AOR named after the SOP, qualify on, identified by IP) whose context is the service
context, pbx_python.so loaded with dialplan_funcs.callservice, and a `phones` endpoint for SIPp
callers (identified by the 127.0.0.200/29 range).
"""
from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .configs import pjsip_endpoint
from .instance import AsteriskInstance
from .net import require_loopback

SERVICE_CONTEXT = "callservice-in"
PHONES_CONTEXT = "phones"
PHONE_NET = "127.0.0.200/29"           # SIPp callers bind here (127.0.0.200-207)


@dataclass
class ClusterSpec:
    sops: Mapping[str, str]                          # SOP name -> 127.0.0.N
    qualify_frequency: float = 1
    qualify_timeout: float = 0.5
    progress_timeout: float = 2.0
    max_hops: Optional[int] = None
    secret: Optional[str] = None
    python: str = sys.executable
    extra_callservice: str = ""
    trunk_hosts: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> {sop: host}
    unqualified: frozenset[str] = frozenset()   # SOPs whose trunks are not qualified (e.g. SIPp)

    def __post_init__(self) -> None:
        for host in self.sops.values():
            require_loopback(host)

    def pjsip_conf(self, node: str) -> str:
        host = self.sops[node]
        parts = [textwrap.dedent(f"""\
            [global]
            type = global
            endpoint_identifier_order = ip,username

            [transport-udp]
            type = transport
            protocol = udp
            bind = {host}:5060

            [phones]
            type = endpoint
            transport = transport-udp
            context = {PHONES_CONTEXT}
            disallow = all
            allow = ulaw
            direct_media = no
            rtp_symmetric = yes

            [phones]
            type = identify
            endpoint = phones
            match = {PHONE_NET}
            """)]
        overrides = self.trunk_hosts.get(node, {})
        for sop, peer in self.sops.items():
            if sop == node:
                continue
            text = pjsip_endpoint(sop, overrides.get(sop, peer), context=SERVICE_CONTEXT,
                                  codecs="ulaw")
            if sop not in self.unqualified:
                text = text.replace("type = aor\n", "type = aor\n"
                                    f"qualify_frequency = {self.qualify_frequency:g}\n"
                                    f"qualify_timeout = {self.qualify_timeout:g}\n")
            parts.append(text)
        return "\n".join(parts)

    def pbx_python_conf(self, node: str) -> str:
        lines = ["[general]", f"python = {self.python}", "modules = dialplan_funcs.callservice",
                 "", "[callservice]", f"local_sop = {node}", f"sops = {', '.join(self.sops)}",
                 f"service_context = {SERVICE_CONTEXT}",
                 f"progress_timeout = {self.progress_timeout:g}"]
        if self.max_hops is not None:
            lines.append(f"max_hops = {self.max_hops}")
        if self.secret:
            lines.append(f"secret = {self.secret}")
        return "\n".join(lines) + "\n" + self.extra_callservice

    def configs(self, node: str, extensions: str) -> dict[str, str]:
        return {"pjsip.conf": self.pjsip_conf(node),
                "pbx_python.conf": self.pbx_python_conf(node),
                "extensions.conf": extensions}


def start_cluster(spec: ClusterSpec, extensions: Callable[[str], str], module_so: Path,
                  make: Callable[..., AsteriskInstance]) -> dict[str, AsteriskInstance]:
    """Start one Asterisk per SOP; `extensions(node)` gives each node's extensions.conf.

    `make` builds an instance (e.g. the pytest asterisk_factory, or AsteriskInstance itself).
    """
    nodes: dict[str, AsteriskInstance] = {}
    for node, host in spec.sops.items():
        inst = make(host=host, name=node, modules=[module_so],
                    configs=spec.configs(node, extensions(node)))
        if not inst.running:
            inst.start()
        nodes[node] = inst
    return nodes


def wait_qualified(nodes: Mapping[str, AsteriskInstance], timeout: float = 10) -> None:
    """Wait until every running node sees every other running node's trunk as Reachable."""
    import time
    running = {n for n, inst in nodes.items() if inst.running}
    deadline = time.monotonic() + timeout
    while True:
        pending = []
        for node in running:
            out = nodes[node].cli("pjsip show contacts")
            for other in running - {node}:
                if not any(other in line and "Avail" in line for line in out.splitlines()):
                    pending.append(f"{node}->{other}")
        if not pending:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"trunks not qualified after {timeout}s: {', '.join(pending)}")
        time.sleep(0.2)
