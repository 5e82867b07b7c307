"""pbx_python.conf interpretation (the C side hands over Asterisk-parsed triples)."""
import pytest

from pbx_python.config import ConfigError, parse


def test_modules_and_paths_accept_comma_lists_and_repeated_lines():
    cfg = parse([("general", "modules", "a, b.c"), ("general", "module", "d"),
                 ("general", "path", "/x,/y")])
    assert cfg.modules == ["a", "b.c", "d"]
    assert cfg.paths == ["/x", "/y"]


def test_on_exception_defaults_to_hangup_and_accepts_continue():
    assert parse([]).on_exception == "hangup"
    assert parse([("general", "on_exception", "Continue")]).on_exception == "continue"


def test_bad_on_exception_value_is_an_error_naming_the_choices():
    with pytest.raises(ConfigError, match="hangup, continue"):
        parse([("general", "on_exception", "explode")])


def test_unknown_general_setting_is_an_error_not_ignored():
    with pytest.raises(ConfigError, match="unknown setting 'modlues'"):
        parse([("general", "modlues", "a")])


def test_module_names_must_be_python_module_names():
    with pytest.raises(ConfigError, match="not a Python module name"):
        parse([("general", "modules", "my-module")])


def test_a_module_listed_twice_is_an_error():
    with pytest.raises(ConfigError, match="more than once: a"):
        parse([("general", "modules", "a, a")])


def test_other_sections_are_kept_in_file_order_for_the_modules():
    cfg = parse([("CallService", "local_sop", "A"), ("callservice", "sops", "A,B")])
    assert cfg.section("callservice") == [("local_sop", "A"), ("sops", "A,B")]
    assert cfg.section("absent") == []


def test_gil_spin_defaults_to_20_microseconds():
    assert parse([]).gil_spin == 20


def test_gil_spin_accepts_zero_to_turn_spinning_off():
    assert parse([("general", "gil_spin", "0")]).gil_spin == 0
    assert parse([("general", "gil_spin", " 1000 ")]).gil_spin == 1000


@pytest.mark.parametrize("value", ["-1", "1001", "20us", "2.5", "", "٣"])
def test_bad_gil_spin_is_an_error_naming_the_range(value):
    with pytest.raises(ConfigError, match="gil_spin.*0 to 1000"):
        parse([("general", "gil_spin", value)])
