"""The helpers' parameters as a user finds them: address ranges, a cluster node's extra Python
modules and configuration files, exact function values, RTP capacity."""
from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from pbx_python.testing import configs, free_loopback_host, pjsip_endpoint, run_uac
from pbx_python.testing.cluster import PHONE_NET, ClusterSpec, start_cluster, wait_qualified
from pbx_python.testing.net import release_host
from tests.conftest import MODULE_SO

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")


# -- free_loopback_host ------------------------------------------------------------------------

def test_free_loopback_host_searches_a_range_outside_127_0_0() -> None:
    host = free_loopback_host(network="127.42.0.0/16")
    assert host.startswith("127.42.") and host == "127.42.0.1"


def test_free_loopback_host_skips_busy_addresses_in_the_range() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.77.1", 5060))
        assert free_loopback_host(network="127.0.77.0/24") == "127.0.77.2"
        assert free_loopback_host(network="127.0.77.0/24", exclude=["127.0.77.2"]) == "127.0.77.3"


def test_free_loopback_host_takes_candidate_addresses_anywhere_in_127_8() -> None:
    assert free_loopback_host(candidates=["127.200.1.9", 5]) == "127.200.1.9"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:   # an int is still 127.0.0.N
        probe.bind(("127.200.1.10", 5060))
        assert free_loopback_host(candidates=["127.200.1.10", 250, 251, 252, 253, 254]).startswith("127.0.0.")


def test_free_loopback_host_refuses_ranges_beyond_loopback() -> None:
    for bad in ("10.0.0.0/24", "0.0.0.0/0", "126.0.0.0/7", "::1/128"):
        with pytest.raises(ValueError, match="127.0.0.0/8"):
            free_loopback_host(network=bad)
    with pytest.raises(ValueError):
        free_loopback_host(candidates=["10.0.0.1"])
    with pytest.raises(ValueError, match="not both"):
        free_loopback_host(network="127.0.9.0/24", candidates=[3])


def test_free_loopback_host_says_which_range_was_full() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.78.5", 5060))
        with pytest.raises(RuntimeError, match=r"127\.0\.78\.5/32"):
            free_loopback_host(network="127.0.78.5/32")


# -- ClusterSpec -------------------------------------------------------------------------------

SOPS = {"sopA": "127.0.0.51", "sopB": "127.0.0.52"}


def test_phone_range_is_a_parameter() -> None:
    assert f"match = {PHONE_NET}" in ClusterSpec(sops=SOPS).pjsip_conf("sopA")
    spec = ClusterSpec(sops=SOPS, phone_net="127.9.0.0/16")
    assert "match = 127.9.0.0/16" in spec.pjsip_conf("sopA")
    assert PHONE_NET not in spec.pjsip_conf("sopA")


def test_phone_range_must_be_loopback_and_exclude_the_sops() -> None:
    with pytest.raises(ValueError, match="127.0.0.0/8"):
        ClusterSpec(sops=SOPS, phone_net="192.168.0.0/24")
    with pytest.raises(ValueError, match="sopA at 127.0.0.51 is inside phone_net"):
        ClusterSpec(sops=SOPS, phone_net="127.0.0.48/29")


def test_extra_python_modules_and_path_are_parameters() -> None:
    text = ClusterSpec(sops=SOPS, modules=["my_mod", "pkg.other"], python_path=["/opt/px"]).pbx_python_conf("sopA")
    assert "modules = dialplan_funcs.callservice, my_mod, pkg.other\n" in text
    assert "path = /opt/px\n" in text
    assert "\npath" not in ClusterSpec(sops=SOPS).pbx_python_conf("sopA")
    with pytest.raises(TypeError):
        ClusterSpec(sops=SOPS, modules="my_mod")
    with pytest.raises(ValueError):
        ClusterSpec(sops=SOPS, modules=["a, b"])


def test_extra_config_files_are_parameters_per_node_or_for_all() -> None:
    same = ClusterSpec(sops=SOPS, extra_configs={"musiconhold.conf": "[general]\n"})
    assert same.configs("sopA", "[x]\n")["musiconhold.conf"] == "[general]\n"
    per_node = ClusterSpec(sops=SOPS, extra_configs=lambda node: {"px_node.conf": f"node={node}\n"})
    assert per_node.configs("sopB", "[x]\n")["px_node.conf"] == "node=sopB\n"
    files = per_node.configs("sopB", "[x]\n")
    assert set(files) == {"pjsip.conf", "pbx_python.conf", "extensions.conf", "px_node.conf"}


# -- on real Asterisk --------------------------------------------------------------------------

EXTRA_MODULE = '''\
"""An extra Python module of a cluster node."""
import pbx_python as px


@px.function("PXEXTRA")
def extra(chan, word=""):
    return f"extra-module-{word}"
'''


def cluster_extensions(node: str) -> str:
    return textwrap.dedent("""\
        [general]
        [phones]
        exten => 100,1,CallService(2000,sopB)
         same => n,Verbose(0,RESULT ${CALLSERVICE_STATUS})
         same => n,Hangup()
        #include px_service.conf
        """)


def service_conf(node: str) -> dict[str, str]:
    """The extra file each node gets: its own service context."""
    return {"px_service.conf": textwrap.dedent(f"""\
        [callservice-in]
        exten => 2000,1,Answer()
         same => n,Verbose(0,SERVICE ON {node} FROM ${{INITSERVICE(origin)}} ${{PXEXTRA(ok)}})
         same => n,Wait(0.2)
         same => n,Hangup()
        """)}


@pytest.mark.integration
@needs_sipp
def test_cluster_with_its_own_phone_range_extra_module_and_extra_config_files(asterisk_factory, tmp_path):
    phones = "127.0.91.0/24"
    phone = free_loopback_host(network=phones)
    sops = {"sopA": free_loopback_host(network="127.0.90.0/24")}
    sops["sopB"] = free_loopback_host(network="127.0.90.0/24", exclude=sops.values())
    (tmp_path / "px_extra_mod.py").write_text(EXTRA_MODULE)
    spec = ClusterSpec(sops=sops, phone_net=phones, modules=["px_extra_mod"],
                       python_path=[str(tmp_path)], extra_configs=service_conf)
    nodes = start_cluster(spec, cluster_extensions, MODULE_SO, asterisk_factory)
    wait_qualified(nodes)
    since = nodes["sopB"].log_offset()

    result = run_uac(nodes["sopA"].host, local_host=phone, service="100", duration_ms=1500,
                     timeout=20)

    assert result.successful == 1, result
    line = nodes["sopB"].wait_for_log(r"app_verbose\.c: (SERVICE ON .*)$", since=since).group(1)
    assert line == "SERVICE ON sopB FROM sopA extra-module-ok"


@pytest.mark.integration
def test_eval_function_returns_values_with_newlines_and_blanks_intact(asterisk_factory):
    ast = asterisk_factory(start=True)
    for value in ["two\nlines", "ends with newline\n", "\n\nleading newlines", "cr\r\nlf",
                  "  blanks around  ", "Result: fake\nReturn Value: Failure (-1)", "tab\t", "a\n\n"]:
        encoded = base64.b64encode(value.encode()).decode()
        assert ast.eval_function(f"BASE64_DECODE({encoded})") == value
    assert ast.eval_function("BASE64_DECODE(/w==)").encode("utf-8", "surrogateescape") == b"\xff"
    assert ast.eval_function("NO_SUCH_FUNCTION(x)") is None


RTP_DIALPLAN = """\
[general]
[media]
exten => 100,1,Answer()
 same => n,Wait(30)
 same => n,Hangup()
"""


@pytest.mark.integration
@needs_sipp
def test_generated_rtp_conf_lets_an_instance_hold_several_hundred_media_streams(asterisk_factory):
    calls = 250           # 250 answered calls = 500 RTP+RTCP ports (the old range had 150)
    host = free_loopback_host(network="127.0.92.0/24")
    phone = free_loopback_host(network="127.0.93.0/24")
    ast = asterisk_factory(host, configs={
        "extensions.conf": RTP_DIALPLAN,
        "pjsip.conf": configs.pjsip_conf(host) + pjsip_endpoint("phone", phone, context="media"),
    }, start=True)
    start, end = configs.rtp_port_range(host)
    assert f"Port start:      {start}" in ast.cli("rtp show settings")
    since = ast.log_offset()

    result = run_uac(host, local_host=phone, service="100", calls=calls, rate=100,
                     concurrent=calls, duration_ms=8000, timeout=90)

    log = ast.log_text(since)
    assert "couldn't allocate a port" not in log.lower() and "Unable to create RTP" not in log
    assert result.successful == calls, f"{result.successful} of {calls} answered; {result.errors[-2000:]}"


def test_addresses_claimed_by_another_test_run_are_skipped(tmp_path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""\
        import sys, time
        from pbx_python.testing.net import claim_host
        assert claim_host("127.0.96.1")
        print("held", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert free_loopback_host(network="127.0.96.0/29", claim=False) == "127.0.96.1"  # ports are free
        host = free_loopback_host(network="127.0.96.0/29")
        assert host == "127.0.96.2"
        assert free_loopback_host(network="127.0.96.0/29", exclude=[host]) == "127.0.96.3"
    finally:
        holder.kill()
        holder.wait()
        release_host("127.0.96.2")
        release_host("127.0.96.3")
    assert free_loopback_host(network="127.0.96.0/29", claim=True) == "127.0.96.1"  # released at exit
    release_host("127.0.96.1")


def test_shuffled_search_stays_in_the_range_and_spreads() -> None:
    picks = {free_loopback_host(network="127.0.97.0/24", shuffle=True) for _ in range(30)}
    assert all(p.startswith("127.0.97.") for p in picks) and len(picks) > 5
    listed = ["127.0.98.1", "127.0.98.2", "127.0.98.3"]
    picks = {free_loopback_host(candidates=listed, shuffle=True) for _ in range(30)}
    assert picks == set(listed)
