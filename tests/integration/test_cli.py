"""The pbx-python command against a real Asterisk: `doctor` asking a running one over its control
socket, and `new` giving a project whose own test passes."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pbx_python.doctor import check_running
from pbx_python.testing import health
from tests.conftest import MODULE_SO, PYMODS

pytestmark = pytest.mark.integration


def doctor(ast) -> subprocess.CompletedProcess[str]:
    """pbx-python doctor on the instance's Asterisk. On an ASan build its `asterisk -V`/`-rx`
    run with the instance's ASAN_OPTIONS (suppressions; reports into its log dir, which the
    fixture checks), as the helpers' own CLI clients do."""
    env = dict(os.environ)
    if ast.asan:
        env["ASAN_OPTIONS"] = health.asan_options(ast.logdir, os.environ)
    return subprocess.run([sys.executable, "-m", "pbx_python.cli", "doctor",
                           "--asterisk-prefix", str(ast.prefix), "--asterisk-conf", str(ast.conf)],
                          capture_output=True, text=True, timeout=120, env=env)


def test_doctor_passes_on_a_running_asterisk_and_shows_its_view(python_asterisk):
    ast = python_asterisk(modules=["px_demo"])
    out = doctor(ast)
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stdout
    assert lines[-1] == "all checks passed"
    assert any(line.startswith("ok    Asterisk: Asterisk 22.") for line in lines)
    assert f"ok    Asterisk headers: {ast.prefix}/include" in lines
    assert any(line.startswith(f"ok    module installed: {ast.moddir}/pbx_python.so (links libpython3.")
               for line in lines)
    assert any(line.startswith(f"ok    pbx_python.conf: {ast.etc}/pbx_python.conf (modules: px_demo;")
               for line in lines)
    assert any(line.startswith(f"ok    embedded Python: python = {sys.executable}: ") for line in lines)
    [demo] = [line for line in lines if line.startswith("ok    module px_demo: ")]
    assert "PyHello, " in demo and "PYUPPER" in demo.split("; functions ")[1]
    assert f"ok    running Asterisk: {ast.base}/run/asterisk.ctl: pbx_python.so loaded " \
        "('python show status' below)" in lines
    assert any(line.split() == ["px_demo", "ok"] for line in lines)     # the running module's view


def test_doctor_fails_on_a_module_that_does_not_import_here_and_in_asterisk(python_asterisk, tmp_path):
    (tmp_path / "pxd_broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    ast = python_asterisk(modules=["px_demo", "pxd_broken"],
                          paths=[str(tmp_path), str(PYMODS)])
    out = doctor(ast)
    lines = out.stdout.splitlines()
    assert out.returncode == 1, out.stdout
    assert "FAIL  module pxd_broken: import failed: RuntimeError: broken on purpose" in lines
    [running] = [line for line in lines if line.startswith("FAIL  running Asterisk: ")]
    assert "pbx_python.so loaded, with failures: " in running
    assert "pxd_broken FAILED: RuntimeError: broken on purpose" in running
    assert lines[-1] == "2 check(s) failed"


def test_doctor_says_when_pbx_python_is_not_loaded(asterisk_factory):
    ast = asterisk_factory(start=True)            # an Asterisk without pbx_python.so
    out = doctor(ast)
    assert out.returncode == 1
    assert f"FAIL  running Asterisk: {ast.base}/run/asterisk.ctl: pbx_python.so is not loaded " \
        "(module load pbx_python.so; see its log)" in out.stdout.splitlines()


def test_a_control_socket_nobody_answers_on_fails(asterisk_prefix, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "asterisk.ctl").write_text("")       # left behind by a dead Asterisk
    conf = tmp_path / "asterisk.conf"
    conf.write_text(f"[directories]\nastrundir => {tmp_path / 'run'}\n")
    check = check_running(asterisk_prefix, conf, tmp_path / "run")
    assert check.lines() == [f"FAIL  running Asterisk: {tmp_path}/run/asterisk.ctl: it does not answer"]


def test_new_gives_a_module_whose_generated_test_passes_against_asterisk(asterisk_prefix, tmp_path):
    if not MODULE_SO.is_file():
        pytest.fail(f"{MODULE_SO} is missing: run 'make module' first")
    new = subprocess.run([sys.executable, "-m", "pbx_python.cli", "new", "greetings",
                          "--dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert new.returncode == 0, new.stderr
    env = dict(os.environ, ASTERISK_PREFIX=str(asterisk_prefix), PBX_PYTHON_MODULE=str(MODULE_SO))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout.splitlines()[-1]
