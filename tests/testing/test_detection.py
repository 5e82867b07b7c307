"""The pytest plugin fails a test whose Asterisk went wrong, on the plain and on the ASan build.

Each case runs a small test file in a separate pytest process (the plugin loaded as users load
it) against a real Asterisk with pbx_python.so, whose Python code does the bad thing through
ctypes, and reads that run's JUnit report.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pbx_python.testing.health import links_asan
from tests.conftest import MODULE_SO

pytestmark = pytest.mark.integration

BREAKAGE = '''\
"""Deliberate misuse of Asterisk from Python, to prove the test plugin notices it."""
import ctypes

import pbx_python as px

_asterisk = ctypes.CDLL(None)        # the asterisk binary's exported symbols


@px.function("PXFRACK")
def frack(chan, *args):
    """ao2_ref() on memory that is no ao2 object: Asterisk logs a FRACK (bad magic number) and
    refuses it without writing anything."""
    buf = ctypes.create_string_buffer(b"\\x5a" * 256, 256)
    ao2_ref = getattr(_asterisk, "__ao2_ref")
    ao2_ref.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_int, ctypes.c_char_p]
    ao2_ref(ctypes.addressof(buf) + 128, 1, None, b"px_breakage.py", 1, b"frack")
    return "refused"


@px.function("PXSEGV")
def segv(chan, *args):
    """Read address 1: SIGSEGV in the process."""
    return ctypes.string_at(1, 1).decode()


@px.function("PXOVERFLOW")
def overflow(chan, *args):
    """Asterisk's own ast_base64encode() told that an 8-byte heap buffer holds 64: it writes
    past the end (AddressSanitizer: heap-buffer-overflow in Asterisk's instrumented code)."""
    _asterisk.malloc.restype = ctypes.c_void_p
    dst = _asterisk.malloc(8)
    src = b"y" * 30
    _asterisk.ast_base64encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                           ctypes.c_int]
    _asterisk.ast_base64encode(dst, src, len(src), 64)
    return "written"
'''

INNER = '''\
import os
import signal
import sys
from pathlib import Path

import pytest

from pbx_python.testing import AsteriskError

HERE = Path(__file__).resolve().parent
CONF = f"[general]\\npython = {sys.executable}\\npath = {HERE}\\nmodules = px_breakage\\n"
DIALPLAN = ("[general]\\n[default]\\n[marks]\\n"
            "exten => s,1,Verbose(0,Assert failed: endpt && rdata)\\n same => n,Hangup()\\n")


@pytest.fixture
def ast(asterisk_factory):
    return asterisk_factory(modules=[os.environ["PBX_PYTHON_MODULE"]], start=True,
                            configs={"pbx_python.conf": CONF, "extensions.conf": DIALPLAN})


def died(ast):
    ast.proc.wait(timeout=60)
    return ast.proc.returncode


def test_clean(ast):
    assert ast.eval_function("LEN(abc)") == "3"


def test_frack(ast):
    assert ast.eval_function("PXFRACK()") == "refused"
    ast.wait_for_log("FRACK!")
    assert ast.running


def test_segv(ast):
    with pytest.raises(AsteriskError):
        ast.eval_function("PXSEGV()")
    assert died(ast) < 0


def test_abort_with_the_unload_race_text_but_no_graceful_stop(ast):
    since = ast.log_offset()
    ast.cli("channel originate Local/s@marks application Wait 1")
    ast.wait_for_log("Assert failed: endpt && rdata", since=since)
    os.kill(ast.pid, signal.SIGABRT)
    assert died(ast) == -signal.SIGABRT


def test_overflow(ast):
    with pytest.raises(AsteriskError):
        ast.eval_function("PXOVERFLOW()")
    assert died(ast) < 0
'''


def run_inner(tmp_path: Path, prefix: Path, *selected: str) -> dict[str, tuple[str, str]]:
    """Run the inner tests; {name: (outcome, message)}, outcome "passed", "failed" or "error"."""
    (tmp_path / "px_breakage.py").write_text(BREAKAGE)
    (tmp_path / "test_inner.py").write_text(INNER)
    xml = tmp_path / "report.xml"
    env = dict(os.environ, ASTERISK_PREFIX=str(prefix), PBX_PYTHON_MODULE=str(MODULE_SO),
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("PBX_PYTHON_KEEP", None)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
            "test_inner.py", "-k", " or ".join(selected)]
    out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                         check=False)
    assert xml.is_file(), out.stdout[-3000:] + out.stderr[-3000:]
    results: dict[str, tuple[str, str]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error"):
            for el in case.findall(tag):
                outcome = "failed" if tag == "failure" else "error"
                message += (el.get("message") or "") + "\n" + (el.text or "")
        results[case.get("name", "")] = (outcome, message)
    return results


@pytest.fixture
def inner(tmp_path, asterisk_prefix):
    if not MODULE_SO.is_file():
        pytest.fail(f"{MODULE_SO} is missing: run 'make module' first")
    return lambda *names: run_inner(tmp_path, asterisk_prefix, *names)


def test_a_clean_run_passes_and_a_failed_assertion_fails_the_test(inner):
    res = inner("test_clean", "test_frack")
    assert res["test_clean"] == ("passed", ""), res["test_clean"]
    outcome, message = res["test_frack"]
    assert outcome == "error", res["test_frack"]
    assert re.search(r"FRACK!, Failed assertion bad magic number 0x5a5a5a5a? for object", message)
    assert "assertion:" in message and "kept at" in message


def test_an_asterisk_killed_by_sigsegv_fails_the_test(inner, asterisk_prefix):
    outcome, message = inner("test_segv")["test_segv"]
    assert outcome == "error"
    if links_asan(asterisk_prefix / "sbin" / "asterisk"):
        # ASan's SEGV handler reports, then abort_on_error ends the process with SIGABRT
        assert "ERROR: AddressSanitizer: SEGV on unknown address" in message
        assert "Asterisk died by SIGABRT" in message
    else:
        assert "crash: exit status: Asterisk died by SIGSEGV (rc=-11)" in message


def test_sigabrt_with_the_unload_race_assert_text_but_no_graceful_stop_still_fails(inner):
    # The known Asterisk abort is only excused when a graceful stop (module unloading) was asked
    # for before pjproject's assertion appeared.
    outcome, message = inner("test_abort_with")["test_abort_with_the_unload_race_text_but_no_graceful_stop"]
    assert outcome == "error"
    assert "Asterisk died by SIGABRT" in message


def test_an_addresssanitizer_report_fails_the_test(inner, asterisk_prefix):
    if not links_asan(asterisk_prefix / "sbin" / "asterisk"):
        pytest.skip("needs the ASan Asterisk (make test-asan)")
    outcome, message = inner("test_overflow")["test_overflow"]
    assert outcome == "error"
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in message
    assert "in ast_base64encode" in message          # the frame in Asterisk's instrumented code
    assert "SUMMARY: AddressSanitizer: heap-buffer-overflow" in message


def test_the_asan_run_uses_an_instrumented_module(asterisk_prefix):
    if not links_asan(asterisk_prefix / "sbin" / "asterisk"):
        pytest.skip("needs the ASan Asterisk (make test-asan)")
    assert links_asan(MODULE_SO), f"{MODULE_SO} is not built with -fsanitize=address"
    symbols = subprocess.run(["nm", "-D", str(MODULE_SO)], capture_output=True, text=True,
                             check=True).stdout
    assert "__asan_report_load" in symbols


def test_a_plain_module_is_refused_by_name_in_the_asan_check(tmp_path, asterisk_prefix):
    # An ASan-built module cannot load into a plain Asterisk (libasan must come first): the
    # helpers say so before starting anything.
    if links_asan(asterisk_prefix / "sbin" / "asterisk"):
        pytest.skip("needs the plain Asterisk")
    fake = tmp_path / "pbx_asan_fake.so"
    fake.write_bytes(b"\x7fELF....libasan.so.8\x00")
    from pbx_python.testing import AsteriskError, AsteriskInstance
    with pytest.raises(AsteriskError, match="built with -fsanitize=address"):
        AsteriskInstance(asterisk_prefix, "127.0.0.9", modules=[fake])



HANGING = '''\
import time
from pathlib import Path


def test_hangs(asterisk_factory):
    ast = asterisk_factory(start=True)
    Path("asterisk.pid").write_text(str(ast.pid))
    time.sleep(120)
'''


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_a_run_ended_by_sigterm_stops_its_asterisk(tmp_path, asterisk_prefix):
    (tmp_path / "test_hanging.py").write_text(HANGING)
    env = dict(os.environ, ASTERISK_PREFIX=str(asterisk_prefix))
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_hanging.py"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pidfile = tmp_path / "asterisk.pid"
    try:
        deadline = time.monotonic() + 60
        while not pidfile.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        pid = int(pidfile.read_text())
        assert _alive(pid)
        proc.terminate()                                    # SIGTERM, as `timeout` or CI sends
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"Asterisk {pid} outlived the interrupted pytest run:\n{out[-2000:]}"
