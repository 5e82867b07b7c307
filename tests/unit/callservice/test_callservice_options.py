"""CallService options argument: r, t(<sec>), T(<sec>)."""

import pytest

from dialplan_funcs.callservice.options import CallOptions, OptionsError, parse_options


@pytest.mark.parametrize("text", [None, "", "  "])
def test_no_options_give_the_defaults(text):
    assert parse_options(text) == CallOptions()


def test_r_redirects_local_targets():
    assert parse_options("r").redirect_local is True


def test_t_sets_the_progress_timeout():
    assert parse_options("t(1.5)").progress_timeout == 1.5


def test_T_sets_the_answer_timeout():
    assert parse_options("T(30)").answer_timeout == 30.0


def test_options_combine_in_any_order():
    assert parse_options("T(30)rt(0.25)") == CallOptions(True, 0.25, 30.0)


def test_zero_timeouts_mean_disabled_not_default():
    assert parse_options("t(0)T(0)") == CallOptions(False, 0.0, 0.0)


def test_spaces_inside_the_value_are_ignored():
    assert parse_options("t( 2 )").progress_timeout == 2.0


def test_unknown_letters_are_all_named():
    with pytest.raises(OptionsError, match=r"unknown option\(s\): x, Z \(valid options: r,"):
        parse_options("rxZ(1)x")


def test_option_without_required_value_is_rejected():
    for text in ("t", "t()", "T( )"):
        with pytest.raises(OptionsError, match="needs a value in seconds"):
            parse_options(text)


@pytest.mark.parametrize("value", ["-1", "1e3", "abc", "1,5", "inf", "nan", "1.2345", "0x10"])
def test_non_decimal_timeout_is_rejected(value):
    with pytest.raises(OptionsError, match="is not a number of seconds"):
        parse_options(f"t({value})")


def test_progress_timeout_above_limit_is_rejected():
    with pytest.raises(OptionsError, match="above the limit of 300 s"):
        parse_options("t(301)")


def test_answer_timeout_above_limit_is_rejected():
    with pytest.raises(OptionsError, match="above the limit of 86400 s"):
        parse_options("T(86401)")


def test_flag_with_argument_is_rejected():
    with pytest.raises(OptionsError, match="option r takes no argument"):
        parse_options("r(1)")


def test_repeated_option_is_rejected():
    with pytest.raises(OptionsError, match="option t is given more than once"):
        parse_options("t(1)t(2)")


def test_missing_closing_parenthesis_is_rejected():
    with pytest.raises(OptionsError, match=r"option t: missing '\)'"):
        parse_options("t(1.5")


@pytest.mark.parametrize("text", ["r t(1)", "r,t(1)", "1", "(r)", "é"])
def test_non_letter_characters_are_rejected_with_position(text):
    with pytest.raises(OptionsError, match="unexpected character"):
        parse_options(text)


def test_options_error_is_a_value_error():
    assert issubclass(OptionsError, ValueError)
