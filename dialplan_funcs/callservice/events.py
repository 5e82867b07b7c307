"""What CallService reports to operators: AMI events and Prometheus metrics (pure, no Asterisk).

service.py sends what these functions build (pbx_python.manager_event, pbx_python.metrics).

Events (class "user"):

* ``CallServiceResult``, one per CallService run, whatever its status: see ``result_event``.
* ``CallServiceSopState``, when the state of a SOP as CallService on this node sees it changes:
  see ``SopStates``.

SOP states (per node, kept in memory; a ``module reload`` starts again from UNKNOWN):

* ``UNKNOWN``: CallService has not tried the SOP yet.
* ``UP``: the last attempt on the SOP ended the routing there: the SOP took the call and gave
  a call-level outcome (ANSWER, BUSY, NOANSWER, CANCEL, DECLINED, SIP482/483...).
* ``DOWN``: the last attempt on the SOP was a node-level failure that makes CallService move
  on: not dialled because qualify marks it unreachable (KNOWN_DOWN), or dialled and failed
  (UNREACHABLE, CONGESTION, SIP<code>, DIALINVALID, UNKNOWN, NOTHERE).

Attempts that say nothing about the SOP leave its state as it is: LOCAL_FAILURE (this node
could not place the leg) and the loop refusals (CAME_FROM, VISITED, HOP_LIMIT, DELIVERED).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Optional

from pbx_python import metrics

from .routing import Attempt, Disposition, Outcome, format_tried

RESULT_EVENT = "CallServiceResult"
SOP_STATE_EVENT = "CallServiceSopState"

# Anything a client could take for the end of an AMI line: CR and LF, and the other characters
# str.splitlines() breaks on.
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def clean(value: object) -> str:
    """A header value on one line: line breaks shown as escapes (\\r, \\n, \\xNN, \\uNNNN)."""
    text = str(value)

    def escape(m: re.Match[str]) -> str:
        c = m.group(0)
        return {"\r": "\\r", "\n": "\\n"}.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 256
                                                     else f"\\u{ord(c):04x}")
    return _LINE_BREAKS.sub(escape, text)


def seconds(value: Optional[float]) -> str:
    """A duration as seconds with milliseconds ("1.234"); empty when unknown."""
    return "" if value is None else f"{max(value, 0.0):.3f}"


def attempt_text(attempt: Attempt) -> str:
    """``<sop> <label> <disposition>``, e.g. ``sopA KNOWN_DOWN FAILOVER``."""
    return f"{attempt.sop} {attempt.outcome.label} {attempt.outcome.disposition.value}"


def result_event(*, channel: str, uniqueid: str, linkedid: str, exten: str, status: str,
                 sop: Optional[str], attempts: Sequence[Attempt], setup_time: Optional[float],
                 local_sop: str, error: str = "") -> dict[str, str]:
    """Headers of CallServiceResult, in order.

    Channel, Uniqueid, Linkedid: the calling channel. Exten: the extension asked for.
    Status: CALLSERVICE_STATUS (REDIRECT with option r). SOP: CALLSERVICE_SOP (the SOP that
    ended the routing; empty if none). Tried: CALLSERVICE_TRIED. Attempts: how many entries
    Tried has; Attempt1..AttemptN: ``<sop> <label> <disposition>`` each (disposition FINAL,
    FAILOVER, LOCAL or REFUSED). SetupTime: seconds (with ms) from CallService's start to the
    outcome (for ANSWER: to the answer). LocalSOP: this node's SOP. Error: why no call was
    placed (INVALIDARGS, NOTFOUND), else empty.
    """
    headers = {"Channel": channel, "Uniqueid": uniqueid, "Linkedid": linkedid, "Exten": exten,
               "Status": status, "SOP": sop or "", "Tried": format_tried(attempts),
               "Attempts": str(len(attempts))}
    for i, attempt in enumerate(attempts, 1):
        headers[f"Attempt{i}"] = attempt_text(attempt)
    headers.update({"SetupTime": seconds(setup_time), "LocalSOP": local_sop, "Error": error})
    return {name: clean(value) for name, value in headers.items()}


# ---------------------------------------------------------------------------- SOP states

class SopState(StrEnum):
    UNKNOWN = "UNKNOWN"
    UP = "UP"
    DOWN = "DOWN"


def observed_state(outcome: Outcome) -> Optional[SopState]:
    """What an attempt says about its SOP: UP (FINAL), DOWN (FAILOVER), else nothing."""
    if outcome.disposition is Disposition.FINAL:
        return SopState.UP
    if outcome.disposition is Disposition.FAILOVER:
        return SopState.DOWN
    return None


@dataclass(frozen=True)
class SopStateChange:
    sop: str
    state: SopState
    previous: SopState
    reason: str          # the label of the attempt that showed it (e.g. KNOWN_DOWN, ANSWER)


class SopStates:
    """The state of each SOP as CallService on this node last saw it (thread-safe)."""

    def __init__(self) -> None:
        self._states: dict[str, SopState] = {}
        self._lock = threading.Lock()

    def observe(self, sop: str, outcome: Outcome) -> Optional[SopStateChange]:
        """Record an attempt's outcome; the change it makes, if any (each change is returned
        to one caller only, even when calls race)."""
        state = observed_state(outcome)
        if state is None:
            return None
        with self._lock:
            previous = self._states.get(sop, SopState.UNKNOWN)
            if previous is state:
                return None
            self._states[sop] = state
        return SopStateChange(sop, state, previous, outcome.label)

    def get(self, sop: str) -> SopState:
        with self._lock:
            return self._states.get(sop, SopState.UNKNOWN)


def sop_state_event(change: SopStateChange, *, local_sop: str, channel: str,
                    uniqueid: str) -> dict[str, str]:
    """Headers of CallServiceSopState: SOP, State, PreviousState, Reason (the attempt's label),
    LocalSOP, and the Channel/Uniqueid of the call whose attempt showed the change."""
    return {name: clean(value) for name, value in {
        "SOP": change.sop, "State": change.state.value, "PreviousState": change.previous.value,
        "Reason": change.reason, "LocalSOP": local_sop, "Channel": channel,
        "Uniqueid": uniqueid}.items()}


# ---------------------------------------------------------------------------- metrics

PREFIX = "asterisk_pbx_python_callservice_"


class CallServiceMetrics:
    """CallService's counters and setup-time histogram, in a pbx_python.metrics registry (the
    one res_prometheus scrapes by default; declared once, so a reload keeps the counts)."""

    def __init__(self, registry: metrics.Registry = metrics.REGISTRY) -> None:
        self.calls = registry.counter(
            PREFIX + "calls_total", "CallService runs by status and the SOP that ended the "
            "routing (empty when none did)", ("sop", "status"))
        self.attempts = registry.counter(
            PREFIX + "attempts_total", "SOPs CallService tried or recorded as skipped, by "
            "result (the CALLSERVICE_TRIED label)", ("sop", "result"))
        self.failovers = registry.counter(
            PREFIX + "failovers_total", "Node-level failures of a SOP after which CallService "
            "moved on (disposition FAILOVER, KNOWN_DOWN included)", ("sop",))
        self.setup = registry.histogram(
            PREFIX + "setup_seconds", "Seconds from CallService's start to its outcome (to the "
            "answer for ANSWER), by status and SOP", ("sop", "status"))

    def record(self, status: str, sop: Optional[str], attempts: Sequence[Attempt],
               setup_time: Optional[float]) -> None:
        """Count one CallService run."""
        self.calls.inc(sop=sop or "", status=status)
        for attempt in attempts:
            self.attempts.inc(sop=attempt.sop, result=attempt.outcome.label)
            if attempt.outcome.failover:
                self.failovers.inc(sop=attempt.sop)
        if setup_time is not None:
            self.setup.observe(max(setup_time, 0.0), sop=sop or "", status=status)
