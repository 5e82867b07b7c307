"""pbx_python.metrics: what a res_prometheus scrape shows (Prometheus text format)."""
from __future__ import annotations

import threading

import pytest

from pbx_python import metrics


def test_a_counter_renders_help_type_and_one_line_per_label_set():
    reg = metrics.Registry()
    calls = reg.counter("x_calls_total", "Calls", ("sop", "status"))
    calls.inc(sop="sopB", status="ANSWER")
    calls.inc(sop="sopA", status="ANSWER")
    calls.inc(2, sop="sopA", status="ANSWER")
    assert reg.render() == (
        "# HELP x_calls_total Calls\n"
        "# TYPE x_calls_total counter\n"
        'x_calls_total{sop="sopA",status="ANSWER"} 3\n'
        'x_calls_total{sop="sopB",status="ANSWER"} 1\n')


def test_label_values_escape_backslash_quote_and_newline():
    reg = metrics.Registry()
    reg.counter("x_total", "h", ("v",)).inc(v='a"b\\c\nd')
    assert 'x_total{v="a\\"b\\\\c\\nd"} 1' in reg.render()


def test_help_text_escapes_newlines():
    reg = metrics.Registry()
    reg.counter("x_total", "two\nlines")
    assert "# HELP x_total two\\nlines\n" in reg.render()


def test_a_histogram_has_cumulative_buckets_sum_and_count():
    reg = metrics.Registry()
    h = reg.histogram("x_seconds", "Setup", ("sop",), buckets=(0.1, 1))
    for value in (0.05, 0.1, 0.5, 3):
        h.observe(value, sop="sopA")
    assert reg.render() == (
        "# HELP x_seconds Setup\n"
        "# TYPE x_seconds histogram\n"
        'x_seconds_bucket{sop="sopA",le="0.1"} 2\n'
        'x_seconds_bucket{sop="sopA",le="1"} 3\n'
        'x_seconds_bucket{sop="sopA",le="+Inf"} 4\n'
        'x_seconds_sum{sop="sopA"} 3.65\n'
        'x_seconds_count{sop="sopA"} 4\n')
    assert h.count(sop="sopA") == 4


def test_declaring_a_metric_again_returns_the_same_one_with_its_counts():
    reg = metrics.Registry()
    reg.counter("x_total", "h", ("a",)).inc(a="1")
    again = reg.counter("x_total", "h", ("a",))
    assert again.value(a="1") == 1


@pytest.mark.parametrize("kind, labels", [("histogram", ("a",)), ("counter", ("b",))])
def test_declaring_a_name_again_with_another_kind_or_labels_is_refused(kind, labels):
    reg = metrics.Registry()
    reg.counter("x_total", "h", ("a",))
    with pytest.raises(ValueError, match="already declared"):
        getattr(reg, kind)("x_total", "h", labels)


@pytest.mark.parametrize("name, labels", [("bad-name", ()), ("1x", ()), ("x", ("le",)),
                                          ("x", ("__a",)), ("x", ("a b",)), ("x", ("a", "a"))])
def test_invalid_metric_or_label_names_are_refused(name, labels):
    with pytest.raises(ValueError):
        metrics.Registry().counter(name, "h", labels)


def test_wrong_labels_and_negative_increments_are_refused():
    c = metrics.Registry().counter("x_total", "h", ("a",))
    with pytest.raises(ValueError, match="labels"):
        c.inc(b="1")
    with pytest.raises(ValueError, match="cannot go down"):
        c.inc(-1, a="1")


def test_concurrent_increments_are_all_counted():
    c = metrics.Registry().counter("x_total", "h", ("a",))

    def work():
        for _ in range(2000):
            c.inc(a="1")
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.value(a="1") == 16000


@pytest.mark.parametrize("value, text", [(3, "3"), (2.0, "2"), (0.25, "0.25"),
                                         (float("inf"), "+Inf")])
def test_numbers_are_formatted_for_prometheus(value, text):
    assert metrics.format_number(value) == text
