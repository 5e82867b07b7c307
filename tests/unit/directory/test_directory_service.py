"""The live directory across generations of the service module (what 'module reload' does), and
GETEXTENSIONINFO's fields. Runs outside Asterisk: a reload is simulated by importing the service
module again, as pbx_python's loader does."""
from __future__ import annotations

import gc
import importlib
import sys
import weakref

import pytest

from dialplan_funcs.directory.table import Entry
from pbx_python.config import Config
from pbx_python.registry import Registry, collect_into

NAME = "dialplan_funcs.directory.service"
GOOD = "4711 sopA sopB name=Marie\n_5XXX sopB -\n"


def generation():
    """A fresh generation of the service module (the holder of the table in service is kept)."""
    sys.modules.pop(NAME, None)
    previous = collect_into(Registry())      # each generation declares into its own registry
    try:
        return importlib.import_module(NAME)
    finally:
        collect_into(previous)


@pytest.fixture(autouse=True)
def fresh_holder():
    holder = sys.modules.pop("_pbx_python_directory_live", None)
    yield
    sys.modules.pop("_pbx_python_directory_live", None)
    if holder is not None:
        sys.modules["_pbx_python_directory_live"] = holder


def load(module, path) -> None:
    module.start(Config(sections={"directory": [("file", str(path))]}))


@pytest.fixture
def serving(tmp_path):
    """(path, generation): a directory file holding GOOD, loaded by a first generation."""
    path = tmp_path / "d.conf"
    path.write_text(GOOD)
    one = generation()
    load(one, path)
    return path, one


def test_first_load_serves_the_file(serving):
    path, one = serving
    assert one.lookup("4711").primary == "sopA" and one.status().entries == 2


def test_bad_file_at_reload_keeps_the_table_of_the_old_generation(serving):
    path, one = serving
    path.write_text("4711 sopC -\n4712\n")
    two = generation()
    load(two, path)
    one.stop("reload")
    assert two.lookup("4711").primary == "sopA"
    st = two.status()
    assert (st.entries, st.loaded_at is not None) == (2, True)
    assert st.last_error.startswith("line 2:")


def test_the_old_generation_reads_the_new_table_while_both_run(serving):
    path, one = serving
    path.write_text("4711 sopC -\n")
    two = generation()
    load(two, path)
    assert one.lookup("4711").primary == "sopC"


def test_a_replaced_source_can_no_longer_publish(serving):
    path, one = serving
    old_source = one._source
    two = generation()
    load(two, path)
    published = []
    old_source.start(published.append)      # an old source's late publish
    assert two.lookup("4711").primary == "sopA"
    assert two.status().entries == 2


def test_rolled_back_reload_gives_the_directory_back_to_the_generation_in_service(serving):
    path, one = serving
    path.write_text("4711 sopC -\n")
    two = generation()
    load(two, path)
    two.stop("rollback")
    assert one.lookup("4711").primary == "sopA"
    assert one.status().entries == 2


def test_after_a_reload_the_replaced_table_is_not_kept_in_memory(tmp_path):
    # a 100 000-entry table is ~70 MB: the new generation must not keep the old one for ever
    path = tmp_path / "d.conf"
    path.write_text(GOOD)
    one = generation()
    load(one, path)
    old_table = weakref.ref(sys.modules["_pbx_python_directory_live"].current[0])
    path.write_text("4711 sopC -\n")
    two = generation()
    load(two, path)
    one.stop("reload")                      # what pbx_python does once the reload succeeded
    gc.collect()
    assert old_table() is None and two.lookup("4711").primary == "sopC"


def test_reload_without_the_directory_module_leaves_no_directory(serving):
    path, one = serving
    one.stop("reload")          # no new generation took over
    assert one.status() is None and one.lookup("4711") is None


ENTRY = Entry("4711", "sopA", "", {"name": "Marie", "vm_context": "default"})


@pytest.mark.parametrize("field, value", [
    ("", "sopA,"), ("primary", "sopA"), ("secondary", ""), ("found", "1"), ("pattern", "4711"),
    ("Primary", "sopA"), ("name", "Marie"), ("vm_context", "default"), ("nosuch", ""),
])
def test_field_values_of_an_entry(field, value):
    assert generation().field_value(ENTRY, field) == value


@pytest.mark.parametrize("field, value", [("", ""), ("found", "0"), ("primary", ""),
                                          ("name", "")])
def test_field_values_of_an_extension_not_in_the_directory(field, value):
    assert generation().field_value(None, field) == value


def test_cli_shows_control_characters_of_a_value_as_escapes_not_raw(tmp_path):
    # an ESC sequence in a value must not reach the operator's terminal (clear screen, colours)
    path = tmp_path / "d.conf"
    path.write_text('4711 sopA - name="\x1b[2J\x1b[31mfake\x07" note="a\tb"\n')
    one = generation()
    load(one, path)
    shown = one.show_directory(["callservice", "show", "directory", "4711"])
    assert "  name = \\x1b[2J\\x1b[31mfake\\x07" in shown and "  note = a\\x09b" in shown
    assert not any(ord(c) < 32 and c != "\n" for c in shown)
    assert one.lookup("4711").attrs["name"] == "\x1b[2J\x1b[31mfake\x07"   # the value itself


def test_cli_shows_control_characters_of_the_last_error_as_escapes(tmp_path):
    path = tmp_path / "d.conf"
    path.write_text("4711 sopA -\n")
    one = generation()
    load(one, path)
    one._source._error, one._source._error_at = "bad\x1b]0;owned\x07", 1.0
    shown = one.show_directory(["callservice", "show", "directory"])
    assert "bad\\x1b]0;owned\\x07" in shown and "\x1b" not in shown


def test_a_bad_field_is_reported_with_control_characters_as_escapes(tmp_path):
    # the extension often comes from the caller (${EXTEN}): its ESC bytes must not reach the log
    one = generation()
    with pytest.raises(Exception) as err:
        one.get_extension_info(None, "47\x1b[2J11", "na\x1bme")
    assert "GETEXTENSIONINFO(47\\x1b[2J11,na\\x1bme)" in str(err.value)
