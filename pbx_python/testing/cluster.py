"""A CallService cluster of real Asterisk nodes ("SOPs") on loopback addresses.

Each SOP is an Asterisk process on its own loopback address (port 5060) with a PJSIP trunk to every
other SOP (endpoint and AOR named after the SOP, qualify on, identified by IP) whose context is the
service context, pbx_python.so loaded with dialplan_funcs.callservice (plus any ``modules``), and a
`phones` endpoint for SIPp callers identified by ``phone_net`` (default 127.0.0.200/29).
"""
from __future__ import annotations

import ipaddress
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .configs import pjsip_endpoint
from .instance import AsteriskInstance
from .net import loopback_network, require_loopback

SERVICE_CONTEXT = "callservice-in"
PHONES_CONTEXT = "phones"
PHONE_NET = "127.0.0.200/29"           # default phones range: SIPp callers bind here (127.0.0.200-207)

#: Extra files of a node: the same mapping for every node, or a function of the node's name.
ExtraConfigs = Union[Mapping[str, str], Callable[[str], Mapping[str, str]]]


@dataclass
class ClusterSpec:
    """What :func:`start_cluster` builds. Beyond the SOPs and CallService settings:

    * ``phone_net``: loopback range (inside 127.0.0.0/8) the ``phones`` endpoint accepts calls
      from; keep the SOP addresses out of it (a SOP inside it would be taken for a phone).
    * ``modules``: more Python modules each node loads after ``dialplan_funcs.callservice``;
      ``python_path``: directories prepended to their search path (``path =``).
    * ``extra_configs``: more configuration files per node ({file name: text}, or a function
      node -> {file name: text}); a file named like a generated one (pjsip.conf,
      pbx_python.conf, extensions.conf) replaces it.
    """

    sops: Mapping[str, str]                          # SOP name -> loopback address
    qualify_frequency: float = 1
    qualify_timeout: float = 0.5
    progress_timeout: float = 2.0
    max_hops: Optional[int] = None
    secret: Optional[str] = None
    python: str = sys.executable
    extra_callservice: str = ""
    trunk_hosts: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> {sop: host}
    unqualified: frozenset[str] = frozenset()   # SOPs whose trunks are not qualified (e.g. SIPp)
    phone_net: str = PHONE_NET
    modules: Sequence[str] = ()
    python_path: Sequence[str] = ()
    extra_configs: ExtraConfigs = field(default_factory=dict)

    def __post_init__(self) -> None:
        phones = loopback_network(self.phone_net)
        self.phone_net = str(phones)
        for sop, host in self.sops.items():
            if ipaddress.ip_address(require_loopback(host)) in phones:
                raise ValueError(f"SOP {sop} at {host} is inside phone_net {phones}: it would be identified as a phone")
        if isinstance(self.modules, str):
            raise TypeError("modules must be a sequence of module names, not one string")
        for name in self.modules:
            if not name or any(c in name for c in ", \t\n"):
                raise ValueError(f"bad Python module name {name!r}")

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
            match = {self.phone_net}
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
        modules = ", ".join(["dialplan_funcs.callservice", *self.modules])
        lines = ["[general]", f"python = {self.python}", f"modules = {modules}"]
        if self.python_path:
            lines.append(f"path = {', '.join(str(p) for p in self.python_path)}")
        lines += ["", "[callservice]", f"local_sop = {node}", f"sops = {', '.join(self.sops)}",
                 f"service_context = {SERVICE_CONTEXT}",
                 f"progress_timeout = {self.progress_timeout:g}"]
        if self.max_hops is not None:
            lines.append(f"max_hops = {self.max_hops}")
        if self.secret:
            lines.append(f"secret = {self.secret}")
        return "\n".join(lines) + "\n" + self.extra_callservice

    def configs(self, node: str, extensions: str) -> dict[str, str]:
        """Every configuration file of ``node`` this spec defines: {file name: text}."""
        files = {"pjsip.conf": self.pjsip_conf(node),
                 "pbx_python.conf": self.pbx_python_conf(node),
                 "extensions.conf": extensions}
        extra = self.extra_configs(node) if callable(self.extra_configs) else self.extra_configs
        files.update(extra)
        return files


def start_cluster(spec: ClusterSpec, extensions: Callable[[str], str], module_so: Path,
                  make: Callable[..., AsteriskInstance], **instance_kwargs: Any) -> dict[str, AsteriskInstance]:
    """Start one Asterisk per SOP; `extensions(node)` gives each node's extensions.conf.

    `make` builds an instance (e.g. the pytest asterisk_factory, or AsteriskInstance itself);
    ``instance_kwargs`` (verbose, env, ...) are passed on to it.
    """
    nodes: dict[str, AsteriskInstance] = {}
    for node, host in spec.sops.items():
        inst = make(host=host, name=node, modules=[module_so],
                    configs=spec.configs(node, extensions(node)), **instance_kwargs)
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
