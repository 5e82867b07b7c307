"""contrib/cluster/: the configuration users copy, loaded on three real Asterisk nodes.

The files (pbx_python.conf, pjsip.conf, extensions.conf, cluster_directory.conf, voicemail.conf)
are used as they are, with only the per-node changes contrib/cluster/README.md lists:
local_sop, the transports' bind address, and deleting the node's own trunk block. The example
addresses (127.0.0.51-53) are the nodes' addresses here.
"""
from __future__ import annotations

import re
import time

import pytest

from pbx_python.testing.cluster import wait_qualified
from pbx_python.testing.sipp import DTMF_UAC, dtmf_args
from pbx_python.testing.voicemail import prompts
from tests.conftest import MODULE_SO, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.asterisk_modules("app_voicemail")]

CLUSTER_DIR = ROOT / "contrib" / "cluster"
HOSTS = {"sopA": "127.0.0.51", "sopB": "127.0.0.52", "sopC": "127.0.0.53"}
PHONE = "127.0.0.203"         # inside the example phones range 127.0.0.200/29


def node_files(node: str) -> dict[str, str]:
    """The files for `node`, changed exactly as README.md says and nothing more."""
    pbx = (CLUSTER_DIR / "pbx_python.conf").read_text()
    pbx, count = re.subn(r"^local_sop = sopA$", f"local_sop = {node}", pbx, flags=re.M)
    assert count == 1, "pbx_python.conf: expected one 'local_sop = sopA' line"

    pjsip = (CLUSTER_DIR / "pjsip.conf").read_text()
    for sop, host in HOSTS.items():   # the files' example addresses are the ones used here
        assert f"contact = sip:{host}:5060\\;transport=tcp" in pjsip
        assert f"match = {host}\n" in pjsip
    pjsip, count = re.subn(r"^bind = 127\.0\.0\.51:5060", f"bind = {HOSTS[node]}:5060", pjsip,
                           flags=re.M)
    assert count == 2, "pjsip.conf: expected two transports bound to sopA's example address"
    pjsip, count = re.subn(rf"^; >>> trunk to {node}:.*?^; <<< end of the trunk to {node}\n", "",
                           pjsip, flags=re.M | re.S)
    assert count == 1, f"pjsip.conf: expected one trunk block for {node}"
    assert f"[{node}]" not in pjsip

    same = ("extensions.conf", "cluster_directory.conf", "voicemail.conf")
    return {"pbx_python.conf": pbx, "pjsip.conf": pjsip,
            **{name: (CLUSTER_DIR / name).read_text() for name in same}}


@pytest.fixture
def contrib_cluster(asterisk_factory):
    if not MODULE_SO.is_file():
        pytest.fail(f"{MODULE_SO} is missing: run 'make module' first")
    nodes = {}
    for node, host in HOSTS.items():
        nodes[node] = asterisk_factory(host=host, name=node, modules=[MODULE_SO],
                                       configs=node_files(node), start=True)
    wait_qualified(nodes, timeout=20)     # qualify_frequency = 5 in the contrib pjsip.conf
    return nodes


def log_line(node, pattern: str, since: int, timeout: float = 10) -> str:
    return node.wait_for_log(rf"app_verbose\.c: ({pattern}.*)$", timeout=timeout, since=since).group(1)


def test_files_load_and_a_phone_reaches_the_hello_service_on_sopB(contrib_cluster, sipp):
    nodes = contrib_cluster
    for node, inst in nodes.items():
        out = inst.cli("callservice show sops")
        assert re.search(rf"^{node}\s+local\b", out, re.M), out
        contacts = inst.cli("pjsip show contacts")
        others = [sop for sop in HOSTS if sop != node]
        for sop in others:     # the trunks to the other SOPs run over TCP and are qualified
            assert re.search(rf"{sop}/sip:{HOSTS[sop]}:5060;transport=tcp\s+\S+\s+Avail", contacts), \
                contacts
        problems = [line for line in inst.log_text().splitlines()
                    if re.search(r"\] (ERROR|WARNING)\[", line) and re.search(
                        r"pjsip\.conf|extensions\.conf|pbx_python\.conf|python:|callservice", line)]
        assert not problems, "\n".join(problems)
        endpoints = inst.cli("pjsip show endpoints")
        for sop in others:
            assert re.search(rf"Endpoint:\s+{sop}\b", endpoints), endpoints
        assert not re.search(rf"Endpoint:\s+{node}\b", endpoints), endpoints
        dialplan = inst.cli("dialplan show callservice-in")
        assert "'2000' =>" in dialplan and "'8500' =>" in dialplan, dialplan
        directory = inst.cli("callservice show directory 4711")
        assert re.search(r"^Primary:\s+sopA$", directory, re.M), directory
        assert re.search(r"^Secondary:\s+sopB$", directory, re.M), directory
        assert "4711" in inst.cli("voicemail show users for default")

    a_since, b_since = nodes["sopA"].log_offset(), nodes["sopB"].log_offset()
    result = sipp.run_uac(HOSTS["sopA"], local_host=PHONE, service="2000", duration_ms=5000)
    assert result.successful == 1, result
    assert log_line(nodes["sopB"], "hello service: ", b_since) == (
        "hello service: origin=[sopA] Parameter1=[sipp] Parameter2=[en] Parameter3=[sipp] "
        "Parameter4=[Dupont, Marie; desk 3]")
    assert log_line(nodes["sopA"], "CallService 2000: ", a_since) == \
        "CallService 2000: status=ANSWER sop=sopB tried=sopB:ANSWER"


def test_voicemail_example_opens_the_mailbox_on_its_sop_in_the_language_keyed_in(
        contrib_cluster, sipp):
    nodes = contrib_cluster
    a_since, c_since = nodes["sopA"].log_offset(), nodes["sopC"].log_offset()
    # A phone on sopC dials *98, keys 2 (French) and mailbox 4711, which lives on sopA
    # (cluster_directory.conf: 4711 on sopA, then sopB).
    result = sipp.run_uac(HOSTS["sopC"], local_host=PHONE, service="*98", scenario=DTMF_UAC,
                          extra_args=dtmf_args("24711"), duration_ms=3000, timeout=30)
    assert result.final_status == 200, result
    assert log_line(nodes["sopA"], "voicemail service: ", a_since) == \
        "voicemail service: mailbox [4711] language [fr] context [default] from [sopC]"
    assert log_line(nodes["sopC"], "voicemail: mailbox ", c_since) == (
        "voicemail: mailbox [4711] language [fr] directory [sopA,sopB] status=ANSWER sop=sopA "
        "tried=sopA:ANSWER")
    played = [(p.file, p.language) for p in prompts(nodes["sopA"].log_text(a_since))
              if p.channel.startswith("PJSIP/sopC-")]
    assert played[:1] == [("vm-youhave", "fr")], played


def test_primary_down_the_secondary_takes_the_call(contrib_cluster, sipp):
    nodes = contrib_cluster
    nodes["sopB"].stop()
    deadline = time.monotonic() + 15        # qualify_frequency 5 s + qualify_timeout 1 s
    while nodes["sopA"].eval_function("DEVICE_STATE(PJSIP/sopB)") != "UNAVAILABLE":
        assert time.monotonic() < deadline, "sopA's qualify did not notice that sopB is down"
        time.sleep(0.2)
    a_since, c_since = nodes["sopA"].log_offset(), nodes["sopC"].log_offset()
    result = sipp.run_uac(HOSTS["sopA"], local_host=PHONE, service="2000", duration_ms=5000)
    assert result.successful == 1, result
    assert log_line(nodes["sopC"], "hello service: ", c_since).startswith(
        "hello service: origin=[sopA] Parameter1=[sipp]")
    assert log_line(nodes["sopA"], "CallService 2000: ", a_since) == \
        "CallService 2000: status=ANSWER sop=sopC tried=sopB:KNOWN_DOWN,sopC:ANSWER"
