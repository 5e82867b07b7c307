"""pbx-python doctor: each check says ok or FAIL on one clear line; any FAIL makes the exit code 1.

These checks need no Asterisk; tests/integration/test_cli.py runs doctor against a real one.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pbx_python import doctor
from pbx_python.cli import main
from pbx_python.doctor import Check


def fake_asterisk(prefix: Path, version_line: str) -> Path:
    """A prefix whose sbin/asterisk only answers -V (an old or odd Asterisk)."""
    binary = prefix / "sbin" / "asterisk"
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    binary.chmod(0o755)
    return prefix


def write_conf(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_a_check_prints_as_one_line_status_what_and_detail():
    assert Check(True, "Asterisk", "Asterisk 22.10.1").lines() == ["ok    Asterisk: Asterisk 22.10.1"]
    assert Check(False, "module x", "import failed", ["frame"]).lines() == \
        ["FAIL  module x: import failed", "      frame"]


def test_report_exits_1_when_any_check_failed_and_0_when_none():
    out = io.StringIO()
    assert doctor.report([Check(True, "a", "fine"), Check(False, "b", "broken")], out) == 1
    assert out.getvalue().splitlines() == ["ok    a: fine", "FAIL  b: broken", "1 check(s) failed"]
    out = io.StringIO()
    assert doctor.report([Check(True, "a", "fine")], out) == 0
    assert out.getvalue().splitlines()[-1] == "all checks passed"


def test_a_prefix_without_asterisk_fails_naming_the_missing_binary(tmp_path):
    check = doctor.check_asterisk(tmp_path)
    assert not check.ok and f"no {tmp_path}/sbin/asterisk" in check.detail


def test_an_asterisk_older_than_22_fails(tmp_path):
    check = doctor.check_asterisk(fake_asterisk(tmp_path, "Asterisk 20.5.2"))
    assert not check.ok
    assert check.detail == f"Asterisk 20.5.2 at {tmp_path}: pbx_python needs Asterisk 22 or later"


def test_an_asterisk_22_is_reported_with_its_version(tmp_path):
    check = doctor.check_asterisk(fake_asterisk(tmp_path, "Asterisk 22.10.1"))
    assert check.ok and check.detail.startswith("Asterisk 22.10.1 (")


def test_missing_headers_fail_saying_how_to_get_them(tmp_path):
    check = doctor.check_headers(tmp_path)
    assert not check.ok
    assert f"no {tmp_path}/include/asterisk.h" in check.detail and "asterisk-dev" in check.detail


def test_a_python_without_shared_libpython_fails(monkeypatch):
    monkeypatch.setattr(doctor.sysconfig, "get_config_var",
                        lambda name: 0 if name == "Py_ENABLE_SHARED" else None)
    check = doctor.check_libpython()
    assert not check.ok and "without --enable-shared" in check.detail


def test_the_running_python_has_a_shared_libpython():
    check = doctor.check_libpython()     # the test suite runs under an embeddable Python
    assert check.ok and "libpython" in check.detail


def test_a_module_not_installed_fails_saying_how_to_install(tmp_path):
    check = doctor.check_installed(tmp_path)
    assert not check.ok and "run 'pbx-python install'" in check.detail


def test_the_installed_module_is_reported_with_the_libpython_it_links(tmp_path):
    (tmp_path / "pbx_python.so").write_bytes(b"\x7fELF\0libc.so.6\0libpython3.11.so.1.0\0")
    check = doctor.check_installed(tmp_path)
    assert check.ok and check.detail == f"{tmp_path}/pbx_python.so (links libpython3.11)"


def test_an_embedded_python_of_another_version_than_the_module_links_fails():
    config = doctor.parse([("general", "python", sys.executable)])
    check = doctor.check_venv(config, linked="3.99")
    mine = "%d.%d" % sys.version_info[:2] + sys.abiflags
    assert not check.ok
    assert check.detail == (f"python = {sys.executable}: Python {mine}, but the installed "
                            "pbx_python.so links libpython3.99: rebuild it with that Python "
                            f"({Path(sys.executable).parent}/pbx-python install)")
    assert doctor.check_venv(config, linked=mine).ok


def test_a_missing_pbx_python_conf_fails_naming_the_sample(tmp_path):
    check, config = doctor.check_config(tmp_path / "pbx_python.conf")
    assert not check.ok and config is None
    assert "pbx_python.conf.sample" in check.detail


def test_a_bad_setting_in_pbx_python_conf_fails_with_the_parser_s_reason(tmp_path):
    conf = write_conf(tmp_path / "pbx_python.conf", "[general]\non_exception = explode\n")
    check, config = doctor.check_config(conf)
    assert not check.ok and config is None
    assert "on_exception = 'explode'" in check.detail


def test_pbx_python_conf_is_read_as_asterisk_reads_it(tmp_path):
    write_conf(tmp_path / "more.conf", "modules = b ; the second\n")
    conf = write_conf(tmp_path / "pbx_python.conf", """\
        ;-- a block
        comment --;
        [base](!)
        on_exception = continue
        [general](base)
        path => /opt/x\\;y
        modules = a
        #include more.conf
        [mine]
        key = value
        """)
    check, config = doctor.check_config(conf)
    assert check.ok, check.detail
    assert config.modules == ["a", "b"] and config.paths == ["/opt/x;y"]
    assert config.on_exception == "continue" and config.section("mine") == [("key", "value")]
    assert "base" not in config.sections             # a template is not a category


def test_an_embedded_python_that_is_not_executable_fails(tmp_path):
    config = doctor.parse([("general", "python", str(tmp_path / "nopython"))])
    check = doctor.check_venv(config)
    assert not check.ok and "not an executable" in check.detail


def test_an_embedded_python_without_pbx_python_fails_saying_what_to_install(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True)
    python = tmp_path / "venv" / "bin" / "python"
    check = doctor.check_venv(doctor.parse([("general", "python", str(python))]))
    assert not check.ok
    assert "cannot import pbx_python (ModuleNotFoundError" in check.detail
    assert f"{python} -m pip install" in check.detail


def test_the_embedded_python_is_reported_with_its_venv_and_pbx_python():
    check = doctor.check_venv(doctor.parse([("general", "python", sys.executable)]))
    assert check.ok, check.detail
    assert check.detail.startswith(f"python = {sys.executable}: ")
    assert "pbx_python 0.1.0" in check.detail


def module_conf(tmp_path: Path, *modules: str) -> doctor.Config:
    return doctor.parse([("general", "python", sys.executable), ("general", "path", str(tmp_path)),
                         ("general", "modules", ", ".join(modules))])


def test_each_module_is_imported_in_a_dry_run_listing_what_it_declares(tmp_path):
    (tmp_path / "pxd_good.py").write_text(textwrap.dedent("""\
        import pbx_python as px

        @px.application("PxdHello")
        def hello(chan):
            pass

        @px.function("PXD_UPPER")
        def upper(chan, text=""):
            return text.upper()

        @px.cli_command("pxd show things", summary="things")
        def things(argv):
            return "none"

        @px.on_load
        def never_in_a_dry_run(config):
            raise RuntimeError("on_load ran")
        """))
    [check] = doctor.check_modules(module_conf(tmp_path, "pxd_good"))
    assert check.lines() == ["ok    module pxd_good: applications PxdHello; functions PXD_UPPER; "
                             "CLI commands pxd show things"]


def test_the_dry_run_lists_the_dialplan_switches_a_module_declares(tmp_path):
    (tmp_path / "pxd_switch.py").write_text(textwrap.dedent("""\
        import pbx_python as px

        office = px.switch("pxdoffice")

        @office.extension("_2XXX")
        def internal(chan, exten):
            return 0

        @office.extension("100")
        def reception(chan, exten):
            return 0
        """))
    [check] = doctor.check_modules(module_conf(tmp_path, "pxd_switch"))
    assert check.lines() == ["ok    module pxd_switch: applications (none); functions (none); "
                             "CLI commands (none); switches Python/pxdoffice (2 extensions)"]


def test_a_bad_switch_pattern_fails_the_module_in_the_dry_run(tmp_path):
    (tmp_path / "pxd_badswitch.py").write_text(textwrap.dedent("""\
        import pbx_python as px

        @px.switch("pxdbad").extension("_2[X")
        def broken(chan, exten):
            return 0
        """))
    [check] = doctor.check_modules(module_conf(tmp_path, "pxd_badswitch"))
    assert not check.ok and check.detail.startswith("import failed:")
    assert "_2[X" in check.detail


def test_a_module_that_fails_to_import_fails_with_the_exception(tmp_path):
    (tmp_path / "pxd_bad.py").write_text("print('noise on stdout')\nraise RuntimeError('broken')\n")
    (tmp_path / "pxd_empty.py").write_text("")
    bad, empty = doctor.check_modules(module_conf(tmp_path, "pxd_bad", "pxd_empty"))
    assert not bad.ok and bad.what == "module pxd_bad"
    assert bad.detail == "import failed: RuntimeError: broken"
    assert empty.ok and empty.detail == "applications (none); functions (none); CLI commands (none)"


def test_a_module_imported_by_another_still_shows_its_own_declarations(tmp_path):
    (tmp_path / "pxd_lib.py").write_text("import pbx_python as px\n\n"
                                         "@px.function('PXD_LIB')\ndef lib(chan):\n    return ''\n")
    (tmp_path / "pxd_main.py").write_text("import pxd_lib\nimport pbx_python as px\n\n"
                                          "@px.application('PxdMain')\ndef main(chan):\n    pass\n")
    main_check, lib_check = doctor.check_modules(module_conf(tmp_path, "pxd_main", "pxd_lib"))
    assert main_check.detail == "applications PxdMain; functions (none); CLI commands (none)"
    assert lib_check.detail == "applications (none); functions PXD_LIB; CLI commands (none)"


def test_the_same_name_declared_by_two_modules_fails_the_second(tmp_path):
    for name in ("pxd_one", "pxd_two"):
        (tmp_path / f"{name}.py").write_text("import pbx_python as px\n\n"
                                             "@px.application('PxdSame')\ndef app(chan):\n    pass\n")
    one, two = doctor.check_modules(module_conf(tmp_path, "pxd_one", "pxd_two"))
    assert one.ok
    assert not two.ok and two.detail == ("import failed: ValueError: application PxdSame is "
                                         "declared twice (pxd_one and pxd_two)")


def test_no_control_socket_means_no_running_asterisk_and_is_not_a_failure(tmp_path):
    check = doctor.check_running(tmp_path, tmp_path / "asterisk.conf", tmp_path / "run")
    assert check.ok and check.detail.startswith(f"none (no control socket {tmp_path}/run/asterisk.ctl)")


def test_doctor_command_prints_every_check_and_exits_1_on_failure(tmp_path, capsys):
    conf = write_conf(tmp_path / "pbx_python.conf", "[general]\n")
    assert main(["doctor", "--asterisk-prefix", str(tmp_path / "none"), "--config", str(conf)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"FAIL  Asterisk: no {tmp_path}/none/sbin/asterisk: is {tmp_path}/none an Asterisk " \
        "prefix? (--asterisk-prefix or ASTERISK_PREFIX)" in lines
    assert f"ok    pbx_python.conf: {conf} (modules: none; on_exception = hangup)" in lines
    assert "ok    modules: none listed in [general] modules" in lines
    assert all(line.startswith(("ok    ", "FAIL  ", "      ")) for line in lines[:-1])
    assert lines[-1].endswith("check(s) failed")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_pbx_python_conf_fails(tmp_path):
    conf = write_conf(tmp_path / "pbx_python.conf", "[general]\n")
    conf.chmod(0)
    check, _ = doctor.check_config(conf)
    assert not check.ok and "Permission denied" in check.detail
