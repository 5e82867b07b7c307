"""AsteriskInstance against the real Asterisk: lifecycle, CLI, logs, eval, originate, AMI, binds."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pbx_python.testing import (AddressInUseError, AsteriskError, AsteriskInstance, cli_quote, configs,
                                free_loopback_host)

pytestmark = pytest.mark.integration

DIALPLAN = """\
[general]
[default]
[test]
exten => s,1,Answer()
 same => n,Verbose(1,PXMARK ${CHANNEL(name)} ${ARG})
 same => n,UserEvent(PxTest,Chan: ${CHANNEL(name)})
 same => n,Wait(0.2)
 same => n,Hangup()
"""


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _sockets_of(pid: int) -> list[tuple[str, str, int]]:
    """(proto, address, port) of every listening/unconnected socket of ``pid`` (ss -lunpt)."""
    out = subprocess.run(["ss", "-H", "-lunpt"], capture_output=True, text=True, check=True).stdout
    socks = []
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        fields = line.split()
        addr, _, port = fields[4].rpartition(":")
        socks.append((fields[0], addr.strip("[]"), int(port)))
    return socks


def test_start_stop_leaves_no_process(asterisk_factory) -> None:
    ast = asterisk_factory()
    ast.start()
    pid = ast.pid
    assert pid and _alive(pid) and ast.running
    assert ast.start() is ast  # double start is a no-op while running
    assert (ast.base / "run" / "asterisk.ctl").exists()
    assert ast.stop() == 0
    assert not _alive(pid) and not ast.running
    assert ast.stop() == 0  # second stop is harmless
    with pytest.raises(AsteriskError):
        ast.cli("core show version")


def test_version_and_cli(asterisk_factory) -> None:
    ast = asterisk_factory(start=True)
    assert "Asterisk 22" in ast.cli("core show version")
    lines = ast.cli_lines("module show like chan_pjsip")
    assert any("chan_pjsip.so" in ln and "Running" in ln for ln in lines), lines
    assert ast.rss_kb() > 1000


def test_wait_for_log(asterisk_factory) -> None:
    ast = asterisk_factory(start=True)
    since = ast.log_offset()
    assert "reloaded successfully" in ast.cli("module reload pbx_config")
    m = ast.wait_for_log(r"Reloading module '(\S+)'", since=since)
    assert m.group(1) == "pbx_config.so"
    with pytest.raises(AssertionError, match="not found"):
        ast.wait_for_log("this never appears", timeout=0.3, since=since)
    assert ast.log_text(since).count("Reloading module") == 1
    assert ast.log_path.name == "full"


def test_eval_function(asterisk_factory) -> None:
    ast = asterisk_factory(start=True)
    assert ast.eval_function("LEN(hello world)") == "11"
    assert ast.eval_function('TOUPPER(say "hi")') == 'SAY "HI"'
    assert ast.eval_function("LEN()") == "0"
    assert ast.eval_function("NO_SUCH_FUNCTION(x)") is None
    ast.cli(f"dialplan set global PXG {cli_quote('some value')}")
    assert ast.eval_function("GLOBAL(PXG)") == "some value"


def test_originate_local_runs_dialplan(asterisk_factory) -> None:
    ast = asterisk_factory(configs={"extensions.conf": DIALPLAN}, start=True)
    ami = ast.ami()
    since = ast.log_offset()
    ast.originate_local("s", "test", app="Wait", data="1")
    m = ast.wait_for_log(r"PXMARK (Local/s@test-\S+;2)", since=since)
    ev = ami.wait_event("UserEvent", timeout=5)
    assert ev["UserEvent"] == "PxTest" and ev["Chan"] == m.group(1)
    with pytest.raises(ValueError):
        ast.originate_local("s", "test")


def test_instances_play_the_installed_prompts_in_their_language(asterisk_factory) -> None:
    from pbx_python.testing.instance import SYSTEM_SOUNDS
    if not (SYSTEM_SOUNDS / "fr" / "vm-login.gsm").is_file():
        pytest.fail(f"{SYSTEM_SOUNDS}/fr is missing: install asterisk-core-sounds-fr-gsm (make deps)")
    dialplan = DIALPLAN + "exten => fr,1,Set(CHANNEL(language)=fr)\n same => n,Playback(vm-login)\n"
    ast = asterisk_factory(configs={"extensions.conf": dialplan}, start=True)
    assert (ast.datadir / "sounds").resolve() == SYSTEM_SOUNDS.resolve()
    since = ast.log_offset()
    ast.originate_local("fr", "test", app="Wait", data="1")
    ast.wait_for_log(r"Playing 'vm-login\.gsm' \(language 'fr'\)$", since=since)
    assert "does not exist" not in ast.log_text(since)


def test_ami_actions(asterisk_factory) -> None:
    ast = asterisk_factory(start=True)
    ami = ast.ami()
    assert "Asterisk Call Manager" in ami.banner
    assert ami.action("Ping")["Ping"] == "Pong"
    assert ami.action("Setvar", Variable="PXAMI", Value="42")["Response"] == "Success"
    assert ami.action("Getvar", Variable="PXAMI")["Value"] == "42"
    assert ami.action("Getvar", Variable="GLOBAL(PXAMI)")["Value"] == "42"
    ami.action("UserEvent", UserEvent="Mine", Foo="bar")
    ev = ami.wait_event(lambda e: e.get("UserEvent") == "Mine")
    assert ev["Foo"] == "bar"
    assert "Asterisk 22" in ami.action("Command", Command="core show version")["Output"]
    assert ami.action_list("CoreShowChannels") == []


def test_binds_only_on_host(asterisk_factory) -> None:
    ast = asterisk_factory(host="127.0.0.7", start=True)
    socks = _sockets_of(ast.pid)
    on_host = {(p, port) for p, addr, port in socks if addr == "127.0.0.7"}
    assert ("tcp", 5038) in on_host and ("udp", 5060) in on_host, socks
    others = [s for s in socks if s[1] != "127.0.0.7"]
    # pjsip's DNS resolver keeps one unconnected IPv4 and one IPv6 UDP socket on the wildcard
    # address with an ephemeral port; nothing else may bind outside the host address.
    assert all(p == "udp" and addr in ("0.0.0.0", "::", "*") and port >= 1024 for p, addr, port in others), socks
    assert len(others) <= 2, socks


def test_iax2_configs_make_chan_iax2_listen_on_the_instance_address_only(asterisk_factory) -> None:
    host = free_loopback_host(udp_ports=(5060, configs.IAX2_PORT), shuffle=True)
    ast = asterisk_factory(host=host, configs=configs.iax2_configs(host), start=True)
    assert "chan_iax2.so" in ast.cli("module show like chan_iax2")
    iax = [s for s in _sockets_of(ast.pid) if s[2] == configs.IAX2_PORT]
    assert iax == [("udp", host, configs.IAX2_PORT)]



def test_an_iax2_port_taken_on_the_instance_address_fails_the_start(asterisk_factory) -> None:
    host = free_loopback_host(udp_ports=(5060, configs.IAX2_PORT), shuffle=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((host, configs.IAX2_PORT))
        ast = asterisk_factory(host=host, configs=configs.iax2_configs(host))
        with pytest.raises(AddressInUseError, match=rf"Unable to bind to {re.escape(host)}:4569"):
            ast.start()
    assert not ast.running

def test_stop_kills_exactly_its_own_pid(asterisk_factory) -> None:
    a = asterisk_factory(host="127.0.0.5", start=True)
    b = asterisk_factory(host="127.0.0.6", start=True)
    os.kill(a.pid, signal.SIGSTOP)  # a hung Asterisk: the CLI cannot stop it
    t0 = time.monotonic()
    assert a.stop(timeout=3) == -signal.SIGKILL
    assert time.monotonic() - t0 < 15
    assert not _alive(a.pid) and not a.crashed
    assert b.running and "Asterisk 22" in b.cli("core show version")


def test_failed_start_raises_with_log(asterisk_factory) -> None:
    bad = configs.modules_conf() + "require => res_pbxpy_missing.so\n"
    ast = asterisk_factory(configs={"modules.conf": bad})
    with pytest.raises(AsteriskError) as info:
        ast.start(timeout=30)
    msg = str(info.value)
    assert "exited during startup" in msg and "res_pbxpy_missing.so" in msg
    assert not ast.running and ast.returncode not in (None, 0)
    ast.stop()  # safe after a failed start


def test_context_manager_and_configs(asterisk_prefix) -> None:
    inst = AsteriskInstance(asterisk_prefix, host="127.0.0.8", name="cm", verbose=5, cdr=True,
                            configs={"extensions.conf": DIALPLAN})
    try:
        inst.write_config("pxextra.conf", "[x]\n")
        text = (inst.base / "etc" / "asterisk.conf").read_text()
        assert re.search(r"^\[directories\]$", text, re.MULTILINE) and "verbose = 5" in text
        assert "enable = yes" in (inst.base / "etc" / "cdr.conf").read_text()
        assert "enable = no" in (inst.base / "etc" / "cel.conf").read_text()
        with inst as ast:
            assert ast.running
            assert "PXMARK" in ast.cli("dialplan show s@test")
        assert not inst.running and inst.returncode == 0
    finally:
        inst.cleanup()
    assert not inst.base.exists()
