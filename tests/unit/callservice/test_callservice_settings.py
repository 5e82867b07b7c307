"""[callservice] section of pbx_python.conf."""

import pytest

from dialplan_funcs.callservice.routing import Cluster
from dialplan_funcs.callservice.settings import Settings, SettingsError, parse_settings

BASE = [("local_sop", "sopA"), ("sops", "sopA, sopB ,sopC"), ("service_context", "services")]
SECRET = "0123456789abcdef"


def parse(*extra, base=BASE):
    return parse_settings(list(base) + list(extra))


def errors_of(*extra, base=BASE):
    with pytest.raises(SettingsError) as info:
        parse(*extra, base=base)
    return info.value.errors


def test_minimal_section_uses_the_defaults():
    assert parse() == Settings(
        local_sop="sopA", sops=("sopA", "sopB", "sopC"), service_context="services",
        progress_timeout=2.0, answer_timeout=None, max_hops=2, secret=None, endpoints={},
    )


def test_all_keys_are_parsed():
    s = parse(("progress_timeout", "1.5"), ("answer_timeout", "30"), ("max_hops", "1"),
              ("secret", SECRET), ("endpoint.sopB", "trunk-b"))
    assert (s.progress_timeout, s.answer_timeout, s.max_hops, s.secret) == (1.5, 30.0, 1, SECRET)
    assert s.endpoint_for("sopB") == "trunk-b" and s.endpoint_for("sopC") == "sopC"


def test_cluster_view_carries_local_sops_hops_and_endpoints():
    cluster = parse(("max_hops", "3"), ("endpoint.sopB", "trunk-b")).cluster
    assert cluster == Cluster("sopA", frozenset({"sopA", "sopB", "sopC"}), 3, {"sopB": "trunk-b"})


def test_zero_progress_timeout_disables_it():
    assert parse(("progress_timeout", "0")).progress_timeout == 0.0


def test_zero_answer_timeout_means_no_limit():
    assert parse(("answer_timeout", "0")).answer_timeout is None


def test_secret_is_not_shown_in_repr():
    assert SECRET not in repr(parse(("secret", SECRET)))


@pytest.mark.parametrize("missing", ["local_sop", "sops", "service_context"])
def test_required_keys_are_reported_when_missing(missing):
    base = [(k, v) for k, v in BASE if k != missing]
    assert any(e.startswith(f"{missing} is required") for e in errors_of(base=base))


def test_all_errors_are_reported_together():
    errs = errors_of(("max_hops", "0"), ("progress_timeout", "x"), ("bogus", "1"))
    assert len(errs) == 3


def test_unknown_key_is_an_error():
    assert errors_of(("progres_timeout", "1")) == ["unknown key 'progres_timeout'"]


def test_repeated_key_is_an_error():
    assert errors_of(("sops", "sopA")) == ["key 'sops' is given more than once"]


def test_local_sop_must_be_listed_in_sops():
    errs = errors_of(base=[("local_sop", "sopX"), ("sops", "sopA,sopB"), ("service_context", "s")])
    assert errs == ["local_sop 'sopX' is not listed in sops (sopA, sopB)"]


def test_sops_with_empty_entry_is_an_error():
    errs = errors_of(base=[("local_sop", "sopA"), ("sops", "sopA,,sopB"), ("service_context", "s")])
    assert errs == ["sops 'sopA,,sopB' has an empty entry"]


def test_sops_with_duplicate_is_an_error():
    base = [("local_sop", "sopA"), ("sops", "sopA,sopB,sopA"), ("service_context", "s")]
    errs = errors_of(base=base)
    assert errs == ["sops lists 'sopA' more than once"]


def test_invalid_sop_name_is_an_error():
    errs = errors_of(base=[("local_sop", "sopA"), ("sops", "sopA,sop B"), ("service_context", "s")])
    assert len(errs) == 1 and "sops entry 'sop B' is invalid" in errs[0]


def test_invalid_service_context_is_an_error():
    errs = errors_of(base=[("local_sop", "sopA"), ("sops", "sopA"), ("service_context", "a,b")])
    assert errs[0].startswith("service_context 'a,b' is invalid")


@pytest.mark.parametrize("key, value, message", [
    ("progress_timeout", "-1", "progress_timeout '-1' is not a number of seconds like 2 or 1.5"),
    ("progress_timeout", "301", "progress_timeout 301 s is above the limit of 300 s"),
    ("answer_timeout", "1e3", "answer_timeout '1e3' is not a number of seconds like 2 or 1.5"),
    ("max_hops", "0", "max_hops '0' must be an integer from 1 to 16"),
    ("max_hops", "17", "max_hops '17' must be an integer from 1 to 16"),
    ("max_hops", "two", "max_hops 'two' must be an integer from 1 to 16"),
])
def test_bad_numeric_values_are_explained(key, value, message):
    assert errors_of((key, value)) == [message]


def test_short_secret_is_rejected_without_echoing_it():
    errs = errors_of(("secret", "hunter2"))
    assert errs == ["secret is too short (7 characters); use at least 16"]
    assert "hunter2" not in errs[0]


def test_endpoint_override_for_unknown_sop_is_an_error():
    assert errors_of(("endpoint.sopZ", "t")) == ["endpoint.sopZ: 'sopZ' is not listed in sops"]


def test_endpoint_override_for_local_sop_is_an_error():
    assert errors_of(("endpoint.sopA", "t")) == [
        "endpoint.sopA: the local SOP is not dialled, so it has no endpoint"]


def test_invalid_endpoint_name_is_an_error():
    errs = errors_of(("endpoint.sopB", "trunk/b"))
    assert errs[0].startswith("endpoint.sopB: endpoint 'trunk/b' is invalid")


def test_two_sops_sharing_an_endpoint_is_an_error():
    assert errors_of(("endpoint.sopB", "sopC")) == [
        "SOPs 'sopB' and 'sopC' both use endpoint 'sopC'"]


def test_keys_and_values_are_trimmed():
    assert parse_settings([(" local_sop ", " sopA "), ("sops", "sopA"), ("service_context", "s ")]
                          ).service_context == "s"


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)
