"""Asterisk extension patterns (pbx_python.patterns): validation, matching, the dialplan's order.
The cluster directory's own behaviour on top of them is in tests/unit/directory/."""
import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx_python import patterns


@pytest.mark.parametrize("pattern, number, matched", [
    ("_2XXX", "2345", True), ("_2XXX", "234", False), ("_2XXX", "23456", False),
    ("_NXX", "200", True), ("_NXX", "100", False), ("_ZX", "10", True), ("_ZX", "01", False),
    ("_9.", "9", False), ("_9.", "91", True), ("_9!", "9", True),
    ("_[1-3a]X", "a0", True), ("_[1-3a]X", "40", False), ("_[13-]", "-", False),
    ("555-1234", "5551234", True), ("_555-XXXX", "555-1234", True),
])
def test_matching_follows_asterisk(pattern, number, matched):
    assert patterns.matches(pattern, number) is matched


def test_exact_extensions_sort_before_patterns_and_specific_patterns_first():
    assert patterns.in_dialplan_order(["_X.", "_2!", "_2XXX", "_2[0-4]XX", "100"]) == \
        ["100", "_2[0-4]XX", "_2XXX", "_2!", "_X."]


@pytest.mark.parametrize("pattern, why", [
    ("_2[", "'[' without ']'"), ("_2]", "']' without '['"), ("_[]", "empty set"),
    ("_9.1", "'.' may only end a pattern"), ("_[3-1]", "backwards"), ("_", "after '_'"),
    ("", "empty"), ("x" * 81, "longer than 80"), ("1 2", "is invalid"),
])
def test_invalid_patterns_are_refused_with_the_reason(pattern, why):
    with pytest.raises(ValueError, match=why.replace("[", r"\[").replace("]", r"\]")
                       .replace(".", r"\.")):
        patterns.validate_pattern(pattern)


PATTERN = st.builds(lambda body: "_" + body,
                    st.text(alphabet="0123456789XZN", min_size=1, max_size=5))


@given(PATTERN, PATTERN, PATTERN)
def test_the_order_is_a_total_order(a, b, c):
    assert patterns.pattern_cmp(a, b) == -patterns.pattern_cmp(b, a)
    ordered = sorted([a, b, c], key=functools.cmp_to_key(patterns.pattern_cmp))
    assert patterns.pattern_cmp(ordered[0], ordered[1]) <= 0
    assert patterns.pattern_cmp(ordered[1], ordered[2]) <= 0
    assert patterns.pattern_cmp(ordered[0], ordered[2]) <= 0


def test_the_directory_uses_the_same_functions():
    from dialplan_funcs.directory import table
    assert table.pattern_cmp is patterns.pattern_cmp
    assert table.validate_pattern is patterns.validate_pattern
