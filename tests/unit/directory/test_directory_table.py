"""The directory table: Asterisk's pattern matching and precedence, exact before patterns."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialplan_funcs.directory.table import Entry, Table, TableError


def table(*patterns: str) -> Table:
    return Table(Entry(p, "sopA", "", {}) for p in patterns)


def winner(t: Table, number: str) -> str | None:
    entry = t.lookup(number)
    return entry.pattern if entry else None


def test_exact_extension_is_found():
    assert winner(table("4711"), "4711") == "4711"


def test_unknown_extension_gives_none():
    assert table("4711", "_5XXX").lookup("4712") is None


def test_exact_extension_beats_a_matching_pattern():
    assert winner(table("_47XX", "4711", "_X."), "4711") == "4711"


def test_x_z_n_match_their_digit_ranges():
    t = table("_X", "_Z1", "_N2")
    assert [winner(t, n) for n in ("0", "01", "11", "12", "22", "9")] == \
        ["_X", None, "_Z1", None, "_N2", "_X"]


def test_lower_case_x_z_n_work_as_upper_case():
    assert winner(table("_5xzn"), "5012") == "_5xzn"


def test_set_with_range_and_single_characters():
    t = table("_5[1-3a]")
    assert [winner(t, n) for n in ("51", "53", "5a", "54", "5b")] == \
        ["_5[1-3a]", "_5[1-3a]", "_5[1-3a]", None, None]


def test_dash_at_the_end_of_a_set_is_itself():
    t = table("_5[1-]")
    assert (winner(t, "51"), winner(t, "5-"), winner(t, "52")) == ("_5[1-]", None, None)


def test_dot_needs_at_least_one_more_character():
    t = table("_5.")
    assert (winner(t, "5"), winner(t, "51"), winner(t, "5123456")) == (None, "_5.", "_5.")


def test_bang_matches_zero_or_more_characters():
    t = table("_5!")
    assert (winner(t, "5"), winner(t, "5123")) == ("_5!", "_5!")


def test_dashes_are_ignored_in_patterns_extensions_and_numbers():
    t = table("_NXX-XXXX", "47-11")
    assert (winner(t, "4711"), winner(t, "555-1234"), winner(t, "5551234")) == \
        ("47-11", "_NXX-XXXX", "_NXX-XXXX")


def test_the_more_specific_pattern_wins_whatever_the_order():
    for order in (("_5XXX", "_5[0-4]XX", "_51XX", "_X."), ("_X.", "_51XX", "_5[0-4]XX", "_5XXX")):
        t = table(*order)
        assert [winner(t, n) for n in ("5123", "5234", "5734", "77")] == \
            ["_51XX", "_5[0-4]XX", "_5XXX", "_X."]


def test_dot_pattern_sorts_after_fixed_length_patterns_and_bang_after_dot():
    assert table("_5!", "_5.", "_5XXX").patterns_in_order == ("_5XXX", "_5.", "_5!")


def test_n_sorts_before_z_before_x():
    assert table("_X", "_Z", "_N").patterns_in_order == ("_N", "_Z", "_X")


def test_equal_size_sets_sort_by_their_lowest_character():
    assert table("_[5-7]", "_[1-3]").patterns_in_order == ("_[1-3]", "_[5-7]")


def test_entries_keep_their_attributes_and_secondary():
    t = Table([Entry("4711", "sopA", "sopB", {"vm_context": "default", "name": "Marie"})])
    entry = t.lookup("4711")
    assert (entry.primary, entry.secondary, dict(entry.attrs)) == \
        ("sopA", "sopB", {"vm_context": "default", "name": "Marie"})


def test_len_counts_entries():
    assert len(table("1", "2", "_3X")) == 3


@pytest.mark.parametrize("pattern, why", [
    ("_5[12", "'[' without ']'"),
    ("_5[]X", "empty set"),
    ("_5.X", "may only end a pattern"),
    ("_5!X", "may only end a pattern"),
    ("_", "needs something after"),
    ("_5/1", "not allowed"),
    ("_5[3-1]", "backwards"),
    ("47 11", "invalid"),
    ("", "empty"),
])
def test_bad_pattern_is_refused_with_the_reason(pattern, why):
    with pytest.raises(TableError) as err:
        table(pattern)
    assert why in err.value.errors[0]


def test_every_problem_is_listed():
    with pytest.raises(TableError) as err:
        Table([Entry("_5[", "sopA", "", {}), Entry("4711", "bad sop", "", {}),
               Entry("4712", "sopA", "sopA", {})])
    assert len(err.value.errors) == 3


def test_same_extension_twice_is_refused():
    with pytest.raises(TableError, match="more than once"):
        table("4711", "47-11")


def test_two_spellings_of_one_pattern_are_refused():
    with pytest.raises(TableError, match="same pattern"):
        table("_5XXX", "_5[0-9]xx")


def test_attribute_named_like_a_field_is_refused():
    with pytest.raises(TableError, match="reserved"):
        Table([Entry("4711", "sopA", "", {"primary": "x"})])


def test_bad_attribute_name_is_refused():
    with pytest.raises(TableError, match="attribute name"):
        Table([Entry("4711", "sopA", "", {"vm-context": "x"})])


# ---------------------------------------------------------------- properties, against a port of
# Asterisk's own _extension_match_core (main/pbx.c), character by character as the C does it.

def asterisk_match(pattern: str, data: str) -> bool:
    if not pattern.startswith("_"):
        return pattern.replace("-", "") == data.replace("-", "")
    p, d, i, j = pattern[1:], data, 0, 0
    while True:
        while j < len(d) and d[j] == "-":
            j += 1
        while i < len(p) and p[i] == "-":
            i += 1
        if j >= len(d) or i >= len(p):
            break
        c = p[i]
        if c == "[":
            end = p.index("]", i + 1)
            k, hit = i + 1, False
            while k < end:
                if k + 2 < end and p[k + 1] == "-":
                    hit = p[k] <= d[j] <= p[k + 2]
                    k += 3
                else:
                    hit = d[j] == p[k]
                    k += 1
                if hit:
                    break
            if not hit:
                return False
            i = end
        elif c in "nN":
            if not "2" <= d[j] <= "9":
                return False
        elif c in "xX":
            if not "0" <= d[j] <= "9":
                return False
        elif c in "zZ":
            if not "1" <= d[j] <= "9":
                return False
        elif c in ".!":
            return True
        elif d[j] != c:
            return False
        i += 1
        j += 1
    if j < len(d):
        return False
    return i >= len(p) or p[i] == "!"


ELEMENT = st.sampled_from(["0", "1", "5", "9", "a", "X", "Z", "N", "x", "[1-3]", "[05]", "[a-c7]",
                           "-", "[0-9]", "[2-4a]"])
PATTERN = st.builds(lambda els, tail: "_" + "".join(els) + tail,
                    st.lists(ELEMENT, min_size=1, max_size=5), st.sampled_from(["", "", ".", "!"]))
NUMBER = st.text(alphabet="0123459a-", min_size=1, max_size=7)


def valid_table(patterns: list[str]) -> Table | None:
    try:
        return table(*dict.fromkeys(patterns))
    except TableError:
        return None    # two spellings of one pattern, or one with no element left ("_-")


@given(st.lists(PATTERN, min_size=1, max_size=8), NUMBER)
def test_lookup_is_the_first_pattern_in_asterisk_order_that_asterisk_matches(patterns, number):
    t = valid_table(patterns)
    if t is None:
        return
    expected = next((p for p in t.patterns_in_order if asterisk_match(p, number)), None)
    assert winner(t, number) == expected


@given(st.lists(PATTERN, min_size=2, max_size=8))
def test_order_does_not_depend_on_the_order_of_the_rows(patterns):
    t = valid_table(patterns)
    if t is None:
        return
    assert valid_table(list(reversed(patterns))).patterns_in_order == t.patterns_in_order


@given(st.text(alphabet="0123456789", min_size=1, max_size=6), st.lists(PATTERN, max_size=5))
def test_an_exact_entry_always_beats_patterns(number, patterns):
    t = valid_table([*patterns, number])
    if t is None:
        return
    assert winner(t, number) == number


def test_entry_attributes_are_a_copy_of_the_mapping_given():
    given = {"name": "Marie"}
    entry = Entry("4711", "sopA", "", given)
    given["name"] = "changed"
    assert entry.attrs == {"name": "Marie"}


def test_entries_can_be_hashed_and_converted_to_dicts():
    import dataclasses
    entry = Entry("4711", "sopA", "sopB", {"name": "Marie"})
    assert len({entry, Entry("4711", "sopA", "sopB", {"name": "Marie"})}) == 1
    assert dataclasses.asdict(entry)["attrs"] == {"name": "Marie"}
