"""Prometheus metrics held in Python, rendered in the text exposition format.

Asterisk's res_prometheus asks pbx_python for its text on every scrape (one C callback, one
call into Python: `render()`); Python modules declare and update the metrics here:

    calls = metrics.counter("asterisk_pbx_python_x_total", "Calls", ("sop", "status"))
    calls.inc(sop="sopA", status="ANSWER")

`counter()`/`histogram()` return the existing metric of that name when it was declared before
with the same kind and labels, so a `module reload` of the declaring module keeps the counts.
Every update takes the metric's own lock (updates come from many channel threads at once).
Pure Python: no Asterisk needed (unit-tested).
"""
from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Union

Number = Union[int, float]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and line feed escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_number(value: Number) -> str:
    """Integers without a decimal point, floats as Python's shortest repr, infinities as +Inf."""
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if math.isnan(value):
            return "NaN"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(int(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{escape_label(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str]) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labels:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__") or label == "le":
                raise ValueError(f"invalid label name {label!r} for metric {name}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate label names for metric {name}: {labels}")
        self.name, self.help, self.labels = name, help, tuple(labels)
        self._lock = threading.Lock()

    def _key(self, given: dict[str, object]) -> tuple[str, ...]:
        if set(given) != set(self.labels):
            raise ValueError(f"metric {self.name} takes the labels {', '.join(self.labels) or '(none)'}"
                             f"; got {', '.join(sorted(given)) or '(none)'}")
        return tuple(str(given[n]) for n in self.labels)

    def _header(self) -> list[str]:
        return [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> str:
        raise NotImplementedError


class Counter(_Metric):
    """A value per label set that only goes up."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], Number] = {}

    def inc(self, amount: Number = 1, **labels: object) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot go down ({amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def value(self, **labels: object) -> Number:
        key = self._key(labels)
        with self._lock:
            return self._values.get(key, 0)

    def render(self) -> str:
        with self._lock:
            items = sorted(self._values.items())
        lines = self._header()
        lines += [f"{self.name}{_labels(self.labels, k)} {format_number(v)}" for k, v in items]
        return "\n".join(lines) + "\n"


#: Default buckets in seconds: from a few milliseconds (a local delivery, a known-down SOP)
#: to a minute (a call that rang a long time before it was answered).
DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                                      10.0, 30.0, 60.0)


class Histogram(_Metric):
    """Observations per label set, counted in cumulative buckets (``le``), with sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 buckets: Iterable[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help, labels)
        bounds = tuple(float(b) for b in buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or math.isinf(bounds[-1]):
            raise ValueError(f"histogram {name}: buckets must be finite, increasing and distinct")
        self.buckets = bounds
        # per label set: [count per bucket (not cumulative) + overflow, sum]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        index = next((i for i, b in enumerate(self.buckets) if value <= b), len(self.buckets))
        with self._lock:
            counts, total = self._series.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[index] += 1
            total[0] += value

    def count(self, **labels: object) -> int:
        key = self._key(labels)
        with self._lock:
            series = self._series.get(key)
            return sum(series[0]) if series else 0

    def render(self) -> str:
        with self._lock:
            items = sorted((k, (list(c), s[0])) for k, (c, s) in self._series.items())
        lines = self._header()
        for key, (counts, total) in items:
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts):
                running += n
                le = f'le="{format_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.labels, key, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(self.labels, key)} {format_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.labels, key)} {running}")
        return "\n".join(lines) + "\n"


class Registry:
    """The metrics a scrape shows, in declaration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _get(self, cls: type[_Metric], name: str, help: str, labels: Sequence[str],
             **kwargs: object) -> _Metric:
        with self._lock:
            found = self._metrics.get(name)
            if found is None:
                found = self._metrics[name] = cls(name, help, labels, **kwargs)  # type: ignore[call-arg]
            elif (type(found) is not cls or found.labels != tuple(labels)
                  or getattr(found, "buckets", None) != kwargs.get("buckets")):
                raise ValueError(f"metric {name} is already declared as a {found.kind} with "
                                 f"labels {found.labels}")
            return found

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._get(Counter, name, help, labels)  # type: ignore[return-value]

    def histogram(self, name: str, help: str, labels: Sequence[str] = (),
                  buckets: Iterable[float] = DEFAULT_BUCKETS) -> Histogram:
        return self._get(Histogram, name, help, labels,  # type: ignore[return-value]
                         buckets=tuple(float(b) for b in buckets))

    def render(self) -> str:
        with self._lock:
            metrics = list(self._metrics.values())
        return "".join(m.render() for m in metrics)


#: The registry res_prometheus scrapes.
REGISTRY = Registry()


def counter(name: str, help: str, labels: Sequence[str] = ()) -> Counter:
    """The counter ``name`` of the scraped registry (declared on first use)."""
    return REGISTRY.counter(name, help, labels)


def histogram(name: str, help: str, labels: Sequence[str] = (),
              buckets: Iterable[float] = DEFAULT_BUCKETS) -> Histogram:
    """The histogram ``name`` of the scraped registry (declared on first use)."""
    return REGISTRY.histogram(name, help, labels, buckets)


def render() -> str:
    """Every metric of the scraped registry in the Prometheus text format."""
    return REGISTRY.render()
