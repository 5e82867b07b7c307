"""Importing the configured modules: fresh imports, all-or-nothing reloads."""
import sys
import threading
import time
import textwrap

import pytest

from pbx_python.config import Config
from pbx_python import loader
from pbx_python.loader import load_modules


@pytest.fixture
def moddir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("pxu_")]:
        del sys.modules[name]


def write(moddir, name, app, extra=""):
    (moddir / f"{name}.py").write_text(textwrap.dedent(f"""\
        import pbx_python as px

        @px.application("{app}")
        def handler(chan):
            return 0
        """) + extra)


def test_declarations_of_each_module_are_collected(moddir):
    write(moddir, "pxu_one", "AppOne")
    result = load_modules(Config(modules=["pxu_one"]), all_or_nothing=False)
    assert result.ok and list(result.registry.apps) == ["appone"]
    assert result.registry.apps["appone"].module == "pxu_one"


def test_a_reload_imports_the_changed_source(moddir):
    write(moddir, "pxu_two", "AppTwo")
    load_modules(Config(modules=["pxu_two"]), all_or_nothing=True)
    write(moddir, "pxu_two", "AppTwoRenamed")
    result = load_modules(Config(modules=["pxu_two"]), all_or_nothing=True)
    assert list(result.registry.apps) == ["apptworenamed"]


def test_failed_module_is_reported_and_others_kept_at_startup(moddir):
    write(moddir, "pxu_ok", "AppOk")
    (moddir / "pxu_bad.py").write_text("raise RuntimeError('broken on purpose')\n")
    result = load_modules(Config(modules=["pxu_ok", "pxu_bad"]), all_or_nothing=False)
    assert not result.ok
    assert [f.name for f in result.failures()] == ["pxu_bad"]
    assert "RuntimeError: broken on purpose" in result.failures()[0].error
    assert list(result.registry.apps) == ["appok"]


def test_failed_reload_restores_the_previous_modules(moddir):
    write(moddir, "pxu_keep", "AppKeep")
    load_modules(Config(modules=["pxu_keep"]), all_or_nothing=True)
    before = sys.modules["pxu_keep"]
    (moddir / "pxu_keep.py").write_text("def broken(:\n")
    result = load_modules(Config(modules=["pxu_keep"]), all_or_nothing=True)
    assert not result.ok and "SyntaxError" in result.failures()[0].error
    assert result.registry.apps == {}
    assert sys.modules["pxu_keep"] is before


def test_on_load_hook_failure_fails_the_module(moddir):
    write(moddir, "pxu_hook", "AppHook", extra=textwrap.dedent("""
        @px.on_load
        def check(config):
            raise ValueError("bad [pxu] section")
        """))
    result = load_modules(Config(modules=["pxu_hook"]), all_or_nothing=False)
    assert "ValueError: bad [pxu] section" in result.failures()[0].error
    assert result.registry.apps == {}


def test_the_same_application_declared_twice_fails_the_second_module(moddir):
    write(moddir, "pxu_a", "Twice")
    write(moddir, "pxu_b", "Twice")
    result = load_modules(Config(modules=["pxu_a", "pxu_b"]), all_or_nothing=False)
    assert "declared twice" in result.failures()[0].error
    assert result.registry.apps["twice"].module == "pxu_a"


UNLOADED: list[tuple[str, str]] = []


def write_with_unload(moddir, name, app, body=""):
    write(moddir, name, app, extra=textwrap.dedent(f"""
        import {__name__} as _t

        @px.on_unload
        def stop(reason):
            _t.UNLOADED.append(("{name}", reason))
        """) + body)


@pytest.fixture
def unloaded():
    UNLOADED.clear()
    yield UNLOADED
    UNLOADED.clear()


def test_a_rolled_back_reload_unloads_the_modules_that_did_import(moddir, unloaded):
    write_with_unload(moddir, "pxu_good", "AppGood")
    (moddir / "pxu_broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    result = load_modules(Config(modules=["pxu_good", "pxu_broken"]), all_or_nothing=True)
    assert not result.ok
    assert unloaded == [("pxu_good", "rollback")]


def test_a_module_that_fails_to_load_is_unloaded_with_reason_failed(moddir, unloaded):
    write_with_unload(moddir, "pxu_half", "AppHalf", body=textwrap.dedent("""
        @px.on_load
        def start(config):
            raise ValueError("cannot start")
        """))
    result = load_modules(Config(modules=["pxu_half"]), all_or_nothing=False)
    assert not result.ok
    assert unloaded == [("pxu_half", "failed")]
    assert result.registry.unload_hooks == []


def test_an_unload_hook_that_raises_is_reported_and_the_others_still_run(moddir, unloaded):
    write_with_unload(moddir, "pxu_first", "AppFirst", body=textwrap.dedent("""
        @px.on_unload
        def explode(reason):
            raise SystemExit("hook bug")
        """))
    (moddir / "pxu_fails.py").write_text("raise RuntimeError('broken on purpose')\n")
    result = load_modules(Config(modules=["pxu_first", "pxu_fails"]), all_or_nothing=True)
    assert unloaded == [("pxu_first", "rollback")]
    assert len(result.unload_errors) == 1 and "SystemExit: hook bug" in result.unload_errors[0]


def test_a_successful_load_calls_no_unload_hook(moddir, unloaded):
    write_with_unload(moddir, "pxu_fine", "AppFine")
    result = load_modules(Config(modules=["pxu_fine"]), all_or_nothing=True)
    assert result.ok and unloaded == []
    assert [m for m, _ in result.registry.unload_hooks] == ["pxu_fine"]


def test_a_base_exception_at_import_fails_only_that_module(moddir):
    write(moddir, "pxu_alive", "AppAlive")
    (moddir / "pxu_interrupt.py").write_text("raise KeyboardInterrupt('from a module')\n")
    result = load_modules(Config(modules=["pxu_alive", "pxu_interrupt"]), all_or_nothing=False)
    assert [f.name for f in result.failures()] == ["pxu_interrupt"]
    assert list(result.registry.apps) == ["appalive"]


def test_unload_hooks_still_running_at_the_timeout_are_left_behind_with_an_error_line():
    release = threading.Event()
    started = time.monotonic()
    errors = loader.run_unload_hooks([("px_stuck", lambda reason: release.wait())], "reload",
                                     timeout=0.2)
    release.set()
    assert time.monotonic() - started < 2
    assert errors == ["pbx_python: on_unload hooks (reload) still running after 0.2 s; going on "
                      "without them (an on_unload hook must not block)"]
