"""Declaring applications, functions and CLI commands."""
import pytest

from pbx_python import registry


@pytest.fixture
def reg():
    target = registry.Registry()
    previous = registry.collect_into(target)
    yield target
    registry.collect_into(previous)


def test_application_records_its_docs_and_module(reg):
    @registry.application("MyApp", synopsis="s", syntax="MyApp(x)", description="d")
    def my_app(chan, x=""):
        return 0
    spec = reg.apps["myapp"]
    assert (spec.name, spec.synopsis, spec.syntax, spec.description) == ("MyApp", "s", "MyApp(x)", "d")
    assert spec.module == __name__ and spec.handler is my_app


def test_function_is_read_only_until_a_setter_is_declared(reg):
    @registry.function("MYFUNC")
    def my_func(chan, *args):
        return "v"
    assert reg.functions["MYFUNC"].writer is None

    @my_func.setter
    def write(chan, value, *args):
        pass
    assert reg.functions["MYFUNC"].writer is write
    assert my_func(None) == "v"   # the reader stays callable


def test_application_names_are_case_insensitive_duplicates(reg):
    registry.application("Dup")(lambda chan: 0)
    with pytest.raises(ValueError, match="declared twice"):
        registry.application("DUP")(lambda chan: 0)


def test_invalid_names_are_refused():
    with pytest.raises(ValueError, match="invalid dialplan name"):
        registry.application("bad name")
