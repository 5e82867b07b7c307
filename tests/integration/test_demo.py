"""contrib/demo.py, the PostgreSQL part (``--directory=postgresql``): it runs its scenarios on a
real cluster and a private PostgreSQL, and stops everything it started, also on SIGTERM.

The demo runs as a subprocess, as ``make demo`` runs it. It picks free loopback addresses when
its usual ones (127.0.0.31-33) are taken by this test run's instances. The file part is not run
here: tests/integration/test_voicemail_flow.py and test_contrib_cluster.py cover its flows.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pbx_python.testing.health import links_asan
from tests.conftest import MODULE_SO

pytestmark = [pytest.mark.integration, pytest.mark.asterisk_modules("app_voicemail")]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "contrib" / "demo.py"
PG_PID_RE = r"private PostgreSQL .*: pid (\d+), listening on 127\.\S+ only.*\(data: (\S+)\)"
AST_PID_RE = r"^  (sop[ABC]): Asterisk pid (\d+) on (127\.[0-9.]+):5060"


@pytest.fixture
def demo_env(asterisk_prefix: Path) -> dict[str, str]:
    if not MODULE_SO.is_file():
        pytest.fail(f"{MODULE_SO} is missing: run 'make module' first")
    if links_asan(MODULE_SO):
        pytest.skip("the demo runs the plain module, not the ASan build (make test-asan)")
    return {**os.environ, "ASTERISK_PREFIX": str(asterisk_prefix), "PYTHONUNBUFFERED": "1"}


def gone(pid: int, grace: float = 5.0) -> bool:
    """True once ``pid`` has ended (a zombie waiting for init counts as ended)."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1][:1] == "Z":
                    return True
        except (OSError, IndexError):
            return True
        time.sleep(0.05)
    return False


def test_the_postgresql_part_of_the_demo_moves_a_mailbox_and_the_next_call_follows(demo_env):
    proc = subprocess.run([sys.executable, str(DEMO), "--directory=postgresql"], cwd=ROOT,
                          env=demo_env, capture_output=True, text=True, timeout=180)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "3/3 scenarios as expected" in out
    assert "psql> UPDATE cluster_directory SET primary_sop = 'sopC', secondary_sop = 'sopA' " \
           "WHERE extension = '4711';" in out
    assert "UPDATE 1 " in out
    delays = re.findall(r"^    (sop[ABC]), after (\d+) ms:$", out, re.M)
    assert sorted(node for node, _ in delays) == ["sopA", "sopB", "sopC"]
    assert all(int(ms) <= 2000 for _, ms in delays)
    assert "=> mailbox 4711 (2 messages) was opened on sopA in French" in out
    assert "=> mailbox 4711 (2 messages) was opened on sopC in English" in out
    assert "'module reload' run on the nodes meanwhile: 0" in out
    assert "WARNING" not in out                    # no crash, nothing left running
    pg_pid, data = re.search(PG_PID_RE, out).groups()
    assert gone(int(pg_pid)) and not Path(data).exists()


def test_sigterm_during_the_demo_stops_its_postgresql_and_asterisks(demo_env):
    proc = subprocess.Popen([sys.executable, str(DEMO), "--directory=postgresql"], cwd=ROOT,
                            env=demo_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    watchdog = threading.Timer(120, proc.kill)     # never hang the test run on readline()
    watchdog.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:                    # until the cluster is up and a call starts
            lines.append(line)
            if line.startswith("── 1."):
                break
        time.sleep(1)                               # inside the first call
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines) + rest
    assert proc.returncode == 130, out
    assert "interrupted (SIGTERM): stopping everything the demo started" in out
    pg_pid, data = re.search(PG_PID_RE, out).groups()
    nodes = re.findall(AST_PID_RE, out, re.M)
    assert [node for node, _, _ in nodes] == ["sopA", "sopB", "sopC"]
    assert gone(int(pg_pid)), f"PostgreSQL pid {pg_pid} still runs"
    assert not Path(data).exists()
    for node, pid, _ in nodes:
        assert gone(int(pid)), f"{node}'s Asterisk pid {pid} still runs"
    assert "still running" not in out and "WARNING" not in out
