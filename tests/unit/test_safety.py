"""The safety contract of the entries, without Asterisk: channel lifetime and threads, every
exception mapped to its documented result, values converted by the documented table, names and
log levels checked. Outside Asterisk any C call raises NotInAsterisk, so a ChannelGone or
ChannelThreadError here shows the refusal came before any C call."""
from __future__ import annotations

import logging
import threading

import pytest

import pbx_python as px
from pbx_python import _runtime, registry
from pbx_python import asterisk as ast
from pbx_python.channel import CallChannel, Channel, ChannelGone, ChannelRef, ChannelThreadError
from pbx_python.registry import AppSpec, FuncSpec


def app(handler) -> AppSpec:
    return AppSpec("PyThing", handler, "tests")


def func(reader, writer=None) -> FuncSpec:
    return FuncSpec("PYTHING", reader, "tests", writer=writer)


def uses(chan: Channel) -> dict:
    """Every way to use a Channel."""
    return {
        "name": lambda: chan.name, "uniqueid": lambda: chan.uniqueid,
        "priority": lambda: chan.priority, "caller_name": lambda: chan.caller_name,
        "outgoing": lambda: chan.outgoing,
        "app_data": lambda: chan.app_data, "get_var": lambda: chan.get_var("X"),
        "set_var": lambda: chan.set_var("X", "1"), "unset": lambda: chan.set_var("X", None),
        "set_vars": lambda: chan.set_vars({"X": "1"}), "eval": lambda: chan.eval("${X}"),
        "func_read": lambda: chan.func_read("F()"), "func_write": lambda: chan.func_write("F()", "1"),
        "exec_app": lambda: chan.exec_app("NoOp"), "is_hungup": chan.is_hungup, "ref": chan.ref,
    }


def error_of(batch: bytes) -> str:
    names_values = batch.split(b"\0")
    return names_values[names_values.index(b"PYTHON_ERROR") + 1].decode()


# ---- channel lifetime ----

@pytest.mark.parametrize("use", list(uses(CallChannel(1))))
def test_a_channel_kept_after_its_entry_returned_raises_channel_gone(use):
    kept = []
    _runtime._app_entry(app(lambda chan: kept.append(chan)))(1, 2)
    with pytest.raises(ChannelGone, match="call this Channel was given for has ended"):
        uses(kept[0])[use]()


def test_a_channel_is_ended_even_when_the_handler_raised_a_base_exception():
    kept = []

    def handler(chan):
        kept.append(chan)
        raise KeyboardInterrupt
    _runtime._app_entry(app(handler))(1, 2)
    with pytest.raises(ChannelGone):
        kept[0].get_var("X")


@pytest.mark.parametrize("make_entry", [
    lambda kept: _runtime._func_read_entry(func(lambda chan, *args: kept.append(chan))),
    lambda kept: _runtime._func_write_entry(func(str, lambda chan, v: kept.append(chan))),
])
def test_function_entries_end_their_channel_too(make_entry):
    kept: list = []
    entry = make_entry(kept)
    entry(1, 2, "v")
    with pytest.raises(ChannelGone):
        kept[0].set_var("X", "1")


@pytest.mark.parametrize("use", list(uses(CallChannel(1))))
def test_a_channel_used_from_another_thread_during_its_call_is_refused(use):
    seen = []

    def handler(chan):
        def work():
            try:
                uses(chan)[use]()
            except BaseException as exc:  # noqa: BLE001
                seen.append(exc)
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    _runtime._app_entry(app(handler))(1, 2)
    assert len(seen) == 1 and isinstance(seen[0], ChannelThreadError)
    assert "use chan.ref()" in str(seen[0])


def test_repr_of_a_gone_channel_says_so_without_raising():
    kept = []
    _runtime._app_entry(app(lambda chan: kept.append(chan)))(1, 2)
    assert repr(kept[0]) == "<Channel (gone: its call ended)>"


def test_a_channel_ref_needs_a_non_empty_name():
    with pytest.raises(ValueError, match="cannot be empty"):
        ChannelRef("")
    with pytest.raises(TypeError):
        ChannelRef(None)  # type: ignore[arg-type]
    assert repr(ChannelRef("1700000000.1")) == "<ChannelRef 1700000000.1>"


# ---- every exception maps to the documented result ----

class CustomBase(BaseException):
    pass


class BadStr(Exception):
    def __str__(self):
        raise SystemExit("__str__ raises SystemExit")


class BadStrAndRepr(Exception):
    def __str__(self):
        raise RuntimeError("no str")

    def __repr__(self):
        raise RuntimeError("no repr")


@pytest.mark.parametrize("exc, summary", [
    (SystemExit(3), "SystemExit: 3"),
    (KeyboardInterrupt("stop"), "KeyboardInterrupt: stop"),
    (GeneratorExit(), "GeneratorExit"),
    (CustomBase("x"), "test_safety.CustomBase: x"),
    (ValueError("a\0b"), "ValueError: a\\0b"),
    (ValueError("\ud800 \udbff \udc00 \udcff \udfff"),
     "ValueError: \\ud800 \\udbff \\udc00 \\udcff \\udfff"),
    (BadStr(), "test_safety.BadStr: <exception str() failed>"),
    (BadStrAndRepr(), "test_safety.BadStrAndRepr: <exception str() failed>"),
])
def test_any_exception_in_an_application_sets_python_error_and_hangs_up(exc, summary, capfd):
    def handler(chan):
        chan.set_var("BEFORE", "1")
        raise exc
    res, batch = _runtime._app_entry(app(handler))(1, 2)
    assert res == -1
    assert batch == b"BEFORE\x001\x00PYTHON_ERROR\x00" + summary.encode() + b"\x00"
    err = capfd.readouterr().err
    assert "Python application PyThing raised an exception" in err
    assert "Traceback (most recent call last)" in err


def test_on_exception_continue_applies_to_base_exceptions(monkeypatch):
    monkeypatch.setattr(_runtime.state.config, "on_exception", "continue")
    res, batch = _runtime._app_entry(app(lambda chan: exec("raise SystemExit(1)")))(1, 2)
    assert res == 0 and error_of(batch) == "SystemExit: 1"


def test_python_error_is_cut_at_1024_characters_with_a_marker():
    res, batch = _runtime._app_entry(app(lambda chan: exec("raise ValueError('é' * 5000)")))(1, 2)
    error = error_of(batch)
    assert len(error) == _runtime.PYTHON_ERROR_MAX == 1024
    assert error.startswith("ValueError: éé") and error.endswith("é [...]")


def test_the_logged_traceback_of_a_huge_message_keeps_its_beginning_and_end(capfd):
    _runtime._app_entry(app(lambda chan: exec("raise ValueError('x' * 10**6 + 'END')")))(1, 2)
    err = capfd.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().endswith("xEND")
    assert "bytes of this traceback left out" in err
    assert len(err.encode()) < 8192


@pytest.mark.parametrize("exc", [SystemExit(2), KeyboardInterrupt(), CustomBase("x")])
def test_any_exception_in_a_function_read_or_write_fails_it(exc):
    def raise_it(*args):
        raise exc
    assert _runtime._func_read_entry(func(raise_it))(1, 2)[0] is None
    assert _runtime._func_write_entry(func(str, raise_it))(1, 2, "v")[0] == -1
    assert _runtime._func_read_entry(func(raise_it))(1, None) is None      # no channel


def test_a_dialplan_error_with_a_nul_and_a_surrogate_is_a_warning_with_its_message(capfd):
    def handler(chan):
        raise px.DialplanError("bad \0 input \ud800")
    res, batch = _runtime._app_entry(app(handler))(1, 2)
    assert error_of(batch) == "DialplanError: bad \\0 input \\ud800"
    assert "Traceback" not in capfd.readouterr().err


def test_a_cli_handler_raising_system_exit_fails_the_command(monkeypatch):
    class Out:
        text = None
    monkeypatch.setattr(_runtime, "_ffi", FakeFfi())
    spec = registry.CliSpec("x y", lambda argv: exec("raise SystemExit(1)"), "tests")
    monkeypatch.setattr(_runtime.state, "builtin", registry.Registry(clis={"x y": spec}))
    out = Out()
    assert _runtime.on_cli(b"x y", 0, [], out) == 2
    assert out.text == b"Error: the command failed; see the Asterisk log\n\0"


class FakeFfi:
    """Just enough of cffi for on_cli: strings are bytes already."""
    def string(self, data):
        return data

    def from_buffer(self, data):
        return data


# ---- bad values raise at the call ----

@pytest.mark.parametrize("use, error", [
    (lambda chan: chan.set_var("", "x"), ValueError),
    (lambda chan: chan.set_var("A\0", "x"), ValueError),
    (lambda chan: chan.set_var("A", "x\0"), ValueError),
    (lambda chan: chan.set_var("A", "\ud800"), ValueError),
    (lambda chan: chan.set_var("A\udfff", "x"), ValueError),
    (lambda chan: chan.set_var(5, "x"), TypeError),
    (lambda chan: chan.set_var("A", object()), TypeError),
    (lambda chan: chan.set_var("A", [1]), TypeError),
    (lambda chan: chan.set_var("A", b"x\0"), ValueError),
    (lambda chan: chan.set_vars({"A": "ok", "B": "\udbff"}), ValueError),
    (lambda chan: chan.func_write("F()", object()), TypeError),
    (lambda chan: chan.func_write("", "x"), ValueError),
    (lambda chan: chan.get_var(""), ValueError),
    (lambda chan: chan.eval(None), TypeError),
    (lambda chan: chan.exec_app("", "x"), ValueError),
    # longer than the dialplan can pass (8191 bytes): Asterisk copies these onto its stack
    (lambda chan: chan.exec_app("Set", "X=" + "a" * 8190), ValueError),
    (lambda chan: chan.set_var("CALLERID(all)", "a" * 8192), ValueError),
    (lambda chan: chan.set_var("CALLERID(all)", b"a" * 8192), ValueError),
    (lambda chan: chan.set_var("V" * 8192, "x"), ValueError),
    (lambda chan: chan.func_write("CALLERID(all)", "é" * 4096), ValueError),
    (lambda chan: chan.func_read("LEN(" + "a" * 8188 + ")"), ValueError),
    (lambda chan: chan.eval("${LEN(" + "a" * 8186 + ")}"), ValueError),
    (lambda chan: px.Channel(64), TypeError),
])
def test_a_bad_name_or_value_raises_in_the_users_frame_and_nothing_is_recorded(use, error):
    seen = []

    def handler(chan):
        chan.set_var("GOOD", "kept")
        try:
            use(chan)
        except error as exc:
            seen.append(exc)
    assert _runtime._app_entry(app(handler))(1, 2) == (0, b"GOOD\0kept\0")
    assert len(seen) == 1


@pytest.mark.parametrize("value, data", [
    ("é\udcff", b"\xc3\xa9\xff"), (b"raw\xff", b"raw\xff"), (bytearray(b"ba"), b"ba"),
    (True, b"1"), (False, b"0"), (42, b"42"), (-7, b"-7"), (1.5, b"1.5"), (float("inf"), b"inf"),
    (logging.WARNING, b"30"),
])
def test_set_var_converts_values_by_the_documented_table(value, data):
    assert _runtime._app_entry(app(lambda chan: chan.set_var("V", value)))(1, 2) == \
        (0, b"V\0" + data + b"\0")


def test_a_plain_variable_value_has_no_length_limit():
    big = "a" * 100_000
    assert _runtime._app_entry(app(lambda chan: chan.set_var("V", big)))(1, 2) == \
        (0, b"V\0" + big.encode() + b"\0")


def test_a_str_subclass_is_set_as_the_plain_string_it_holds():
    class Sneaky(str):
        def __contains__(self, item):
            return False

        def encode(self, *args, **kwargs):
            return b"x\0INJECTED"
    assert _runtime._app_entry(app(lambda chan: chan.set_var("V", Sneaky("plain"))))(1, 2) == \
        (0, b"V\0plain\0")


@pytest.mark.parametrize("headers", [{"A": "x\r\nInjected: 1"}, {"A\r\nInjected": "1"},
                                     {"A": "x\n"}])
def test_manager_event_refuses_cr_or_lf_in_any_header_name_or_value(headers):
    with pytest.raises(ValueError, match="cannot hold CR or LF"):
        px.manager_event("Ev", headers)


# ---- values: results ----

@pytest.mark.parametrize("value, data", [
    ("abc", b"abc"), (None, b""), (True, b"1"), (False, b"0"), (42, b"42"), (2**70, b"%d" % 2**70),
    (0.25, b"0.25"), (b"raw\xff", b"raw\xff"),
])
def test_function_results_follow_the_documented_table(value, data):
    assert _runtime._func_read_entry(func(lambda chan: value))(1, None) == data


@pytest.mark.parametrize("value", [["a"], {"a": 1}, object(), 1j])
def test_a_function_returning_another_type_fails_the_read_with_a_type_error(value, capfd):
    assert _runtime._func_read_entry(func(lambda chan: value))(1, None) is None
    assert "TypeError: function PYTHING returned" in capfd.readouterr().err


@pytest.mark.parametrize("value, res", [(None, 0), (0, 0), (-1, -1), (1, 1), (2**31 - 1, 2**31 - 1),
                                        (-2**31, -2**31)])
def test_application_results_in_the_c_int_range_are_passed_on(value, res):
    assert _runtime._app_entry(app(lambda chan: value))(1, 2) == res


@pytest.mark.parametrize("value, error", [
    (2**31, "ValueError: application PyThing returned 2147483648, outside the range of a C int"),
    (2**32, "ValueError: application PyThing returned 4294967296, outside the range of a C int"),
    (-2**40, "ValueError: application PyThing returned -1099511627776, outside the range"),
    (True, "TypeError: application PyThing returned True; expected None or 0 (continue)"),
    (1.0, "TypeError: application PyThing returned 1.0"),
    ("0", "TypeError: application PyThing returned '0'"),
])
def test_other_application_results_are_logged_errors_with_the_exception_result(value, error):
    res, batch = _runtime._app_entry(app(lambda chan: value))(1, 2)
    assert res == -1
    assert error_of(batch).startswith(error)


# ---- names and levels ----

@pytest.mark.parametrize("name", ["Café", "Ｐｙ", "ı", "a b", "", "x.y", "a\0"])
def test_application_and_function_names_must_be_ascii_letters_digits_underscore_dash(name):
    with pytest.raises(ValueError, match="use ASCII letters, digits"):
        registry.application(name)
    with pytest.raises(ValueError, match="use ASCII letters, digits"):
        registry.function(name)


def test_a_name_that_is_not_a_str_is_a_type_error():
    with pytest.raises(TypeError):
        registry.application(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("level, expected", [
    (logging.DEBUG, ast.LOG_DEBUG), (logging.INFO, ast.LOG_NOTICE),
    (logging.WARNING, ast.LOG_WARNING), (logging.ERROR, ast.LOG_ERROR),
    (logging.CRITICAL, ast.LOG_ERROR), (px.LOG_DEBUG, 0), (px.LOG_NOTICE, 2),
    (px.LOG_WARNING, 3), (px.LOG_ERROR, 4),
])
def test_px_log_maps_logging_and_asterisk_levels(level, expected, monkeypatch):
    seen = []

    class Lib:
        def pyast_log(self, lvl, *args):
            seen.append((lvl, args[-1]))
    monkeypatch.setattr(ast, "_lib", Lib())
    px.log(level, "msg \0 \ud800")
    assert seen == [(expected, b"msg \\0 \\ud800")]


@pytest.mark.parametrize("level", [1, 5, 6, 7, 31, 32, 99, -1, 2**40, 25, True, False, None, "30",
                                   30.0])
def test_px_log_refuses_any_other_level(level, monkeypatch):
    monkeypatch.setattr(ast, "_lib", object())     # any C call would fail
    with pytest.raises(ValueError, match="invalid log level"):
        px.log(level, "x")


@pytest.mark.parametrize("name, key", [
    ("PJSIP/short-00000001", "PJSIP/short-00000001"),
    ("PJSIP/" + "p" * 79 + "-0000000a", ("PJSIP/" + "p" * 79)[:79]),
    ("Local/" + "é" * 40 + "@x", ("Local/" + "é" * 36) + "\udcc3"),   # cut inside a character
])
def test_hangupcause_key_is_the_name_cut_to_79_bytes_as_asterisk_files_it(name, key):
    assert px.hangupcause_key(name) == key
    assert len(px.hangupcause_key(name).encode("utf-8", "surrogateescape")) <= 79


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_a_channel_cannot_be_copied_out_of_its_call(how):
    import copy
    import pickle
    seen = []

    def handler(chan):
        try:
            {"copy": copy.copy, "deepcopy": copy.deepcopy, "pickle": pickle.dumps}[how](chan)
        except TypeError as exc:
            seen.append(exc)
    _runtime._app_entry(app(handler))(1, 2)
    assert len(seen) == 1 and "cannot be copied" in str(seen[0])


@pytest.mark.parametrize("level", [-1, True, "3", None])
def test_px_verbose_refuses_a_level_that_is_not_an_int_from_0(level, monkeypatch):
    monkeypatch.setattr(ast, "_lib", object())
    with pytest.raises(ValueError, match="invalid verbose level"):
        px.verbose("x", level)
