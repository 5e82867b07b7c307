"""Declaring a Python dialplan switch: names, extensions, precedence, errors, the packed table."""
import pytest

import pbx_python as px
from pbx_python import registry, switches


@pytest.fixture
def reg():
    target = registry.Registry()
    previous = registry.collect_into(target)
    yield target
    registry.collect_into(previous)


def test_a_switch_is_declared_in_the_registry_of_the_load(reg):
    sw = px.switch("office")
    assert reg.switches == {"office": sw}
    assert sw.module == __name__


def test_an_extension_records_its_handler_and_where_it_is(reg):
    sw = px.switch("office")

    @sw.extension("_2XXX")
    def internal(chan, exten):
        return 0
    spec = sw.lookup("2345")
    assert spec.handler is internal
    assert spec.key == "office/_2XXX"
    assert spec.handler_name == f"{__name__}.test_an_extension_records_its_handler_and_where_it_is.<locals>.internal"
    assert spec.where.startswith(__file__)


def test_the_decorator_returns_the_function_unchanged(reg):
    sw = px.switch("office")

    def fn(chan, exten):
        return 7
    assert sw.extension("100")(fn) is fn


def test_exact_extension_beats_patterns_and_specific_patterns_come_first(reg):
    sw = px.switch("office")
    for pattern in ("_X.", "_2XXX", "2000", "_20XX", "_2!"):
        sw.extension(pattern)(lambda chan, exten: 0)
    assert [s.pattern for s in sw.in_match_order()] == ["2000", "_20XX", "_2XXX", "_2!", "_X."]
    assert sw.lookup("2000").pattern == "2000"
    assert sw.lookup("2001").pattern == "_20XX"
    assert sw.lookup("2100").pattern == "_2XXX"
    assert sw.lookup("21").pattern == "_2!"
    assert sw.lookup("31").pattern == "_X."
    assert sw.lookup("3") is None


def test_the_same_switch_name_twice_is_refused(reg):
    px.switch("office")
    with pytest.raises(ValueError, match="switch office is declared twice"):
        px.switch("office")


@pytest.mark.parametrize("name", ["", "a/b", "two words", "x" * 65, "é"])
def test_a_bad_switch_name_is_refused(reg, name):
    with pytest.raises(ValueError, match="invalid switch name"):
        px.switch(name)


def test_a_switch_name_must_be_a_str(reg):
    with pytest.raises(TypeError):
        px.switch(3)


@pytest.mark.parametrize("pattern, why", [
    ("_2[", "'[' without ']'"),
    ("_9.1", "'.' may only end a pattern"),
    ("_", "a pattern needs something after '_'"),
    ("", "empty"),
    ("1 2", "is invalid"),
])
def test_an_invalid_pattern_is_refused_naming_the_switch_and_the_place(reg, pattern, why):
    sw = px.switch("office")
    with pytest.raises(ValueError) as info:
        @sw.extension(pattern)
        def bad(chan, exten):
            pass
    assert why in str(info.value)
    assert str(info.value).startswith(f"switch office, extension declared at {__file__}:")


def test_one_extension_declared_twice_is_refused_with_both_places(reg):
    sw = px.switch("office")
    sw.extension("_2XXX")(lambda chan, exten: 0)
    with pytest.raises(ValueError, match=r"extension '_2xxx' .* is declared twice: also as '_2XXX'"):
        sw.extension("_2xxx")(lambda chan, exten: 0)


def test_two_spellings_of_one_exact_extension_are_refused(reg):
    sw = px.switch("office")
    sw.extension("555-1234")(lambda chan, exten: 0)
    with pytest.raises(ValueError, match="declared twice"):
        sw.extension("5551234")(lambda chan, exten: 0)


def test_the_packed_table_lists_each_switch_and_its_patterns(reg):
    a = px.switch("a")
    a.extension("100")(lambda chan, exten: 0)
    a.extension("_2XXX")(lambda chan, exten: 0)
    px.switch("b")
    assert switches.pack(reg.switches) == b"a\x00" b"100\x00" b"_2XXX\x00\x00" b"b\x00\x00"


# ---- the entry C calls to run a body (pure Python: these bodies do not call into Asterisk) ----

def body(handler):
    sw = switches.Switch("office", __name__)
    sw.extension("_2XXX")(handler)
    return sw.extensions["_2XXX"]


def test_a_body_gets_the_dialled_number_and_its_none_means_continue():
    from pbx_python import _runtime
    seen = []
    assert _runtime._switch_entry(body(lambda chan, exten: seen.append(exten)))(1, 2, "2345", "office") == 0
    assert seen == ["2345"]


def test_a_body_exception_hangs_up_with_python_error_set(capfd):
    from pbx_python import _runtime

    def handler(chan, exten):
        raise RuntimeError("boom")
    spec = body(handler)
    res, batch = _runtime._switch_entry(spec)(1, 2, "2345", "office")
    assert res == -1
    assert batch == b"PYTHON_ERROR\0RuntimeError: boom\0"
    err = capfd.readouterr().err
    assert "switch extension office/_2XXX (2345@office)" in err and "Traceback" in err
    assert (spec.stats.calls, spec.stats.errors) == (1, 1)


def test_a_body_returning_something_else_than_an_int_is_an_error(capfd):
    from pbx_python import _runtime
    res, batch = _runtime._switch_entry(body(lambda chan, exten: "yes"))(1, 2, "2345", "office")
    assert res == -1
    assert batch.startswith(b"PYTHON_ERROR\0TypeError: switch extension office/_2XXX returned 'yes'")
