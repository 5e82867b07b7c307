"""The per-name entries the C trampolines call: results, deferred assignments, error mapping.

Pure Python: an entry only reaches C when the handler calls into Asterisk, which these do not.
"""
from __future__ import annotations

import pytest

from pbx_python import _runtime
from pbx_python.registry import AppSpec, FuncSpec, Registry


def app(handler) -> AppSpec:
    return AppSpec("PyThing", handler, "tests")


def func(reader, writer=None) -> FuncSpec:
    return FuncSpec("PYTHING", reader, "tests", writer=writer)


def test_app_entry_returns_zero_for_none_and_passes_the_arguments():
    seen = []
    entry = _runtime._app_entry(app(lambda chan, *args: seen.append(args)))
    assert entry(1, 2, "a", "b") == 0
    assert seen == [("a", "b")]


def test_app_entry_hands_back_deferred_assignments_as_one_batch():
    def handler(chan, value):
        chan.set_var("A", value)
        chan.set_var("B", "é")
    assert _runtime._app_entry(app(handler))(1, 2, "x") == (0, b"A\0x\0B\0\xc3\xa9\0")


def test_app_entry_maps_an_exception_to_hangup_and_python_error(capfd):
    def handler(chan):
        raise RuntimeError("boom")
    res, batch = _runtime._app_entry(app(handler))(1, 2)
    assert res == -1
    assert batch == b"PYTHON_ERROR\0RuntimeError: boom\0"
    assert "Traceback" in capfd.readouterr().err


def test_app_entry_refuses_a_non_integer_result(capfd):
    res, batch = _runtime._app_entry(app(lambda chan: "yes"))(1, 2)
    assert res == -1
    assert batch.startswith(b"PYTHON_ERROR\0TypeError: application PyThing returned 'yes'")


def test_app_entry_counts_calls_and_errors():
    spec = app(lambda chan, fail="": 1 / 0 if fail else None)
    entry = _runtime._app_entry(spec)
    entry(1, 2)
    entry(1, 2, "fail")
    assert (spec.stats.calls, spec.stats.errors) == (2, 1)


@pytest.mark.parametrize("value, data", [("abc", b"abc"), (None, b""), (42, b"42"),
                                         (b"raw", b"raw"), ("\udcff", b"\xff")])
def test_func_read_entry_returns_the_value_as_bytes(value, data):
    assert _runtime._func_read_entry(func(lambda chan: value))(1, 2) == data


def test_func_read_entry_without_a_channel_gives_none_as_chan():
    assert _runtime._func_read_entry(func(lambda chan: repr(chan)))(1, None) == b"None"


def test_func_read_entry_fails_on_a_nul_character(capfd):
    data, batch = _runtime._func_read_entry(func(lambda chan: "a\0b"))(1, 2)
    assert data is None
    assert batch.startswith(b"PYTHON_ERROR\0ValueError: function PYTHING returned a value with a "
                            b"NUL character")
    assert "NUL character" in capfd.readouterr().err


def test_func_write_entry_passes_value_then_arguments():
    seen = []
    spec = func(lambda chan: "", writer=lambda chan, value, *args: seen.append((value, args)))
    assert _runtime._func_write_entry(spec)(1, 2, "v", "a1") == 0
    assert seen == [("v", ("a1",))]


def test_reload_points_removed_names_at_error_entries(monkeypatch, capfd):
    for table in ("APP_ENTRIES", "FUNC_READ_ENTRIES", "FUNC_WRITE_ENTRIES"):
        monkeypatch.setattr(_runtime, table, {})
    first = Registry()
    first.add_app(app(lambda chan: None))
    first.add_function(func(lambda chan: "v"))
    _runtime._update_entries(first)
    assert set(_runtime.APP_ENTRIES) == {"pything"}
    assert _runtime.FUNC_READ_ENTRIES["PYTHING"](1, 2) == b"v"
    assert _runtime.FUNC_WRITE_ENTRIES["PYTHING"](1, 2, "v") == -1      # read-only
    _runtime._update_entries(Registry())
    assert _runtime.FUNC_READ_ENTRIES["PYTHING"](1, 2) is None
    assert "no longer provided" in capfd.readouterr().err
