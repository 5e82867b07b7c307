"""Parse the CallService options argument (Asterisk application option syntax).

Options are single letters, some with a parenthesised argument, concatenated: ``rt(1.5)T(30)``.

    r          when the target SOP is the local one, redirect (Goto) the channel into the
               service instead of dialling a Local channel (no status is returned then)
    t(<sec>)   progress timeout for this call: fail over if a remote SOP sends no
               ringing/progress within <sec> seconds; 0 disables it (overrides the setting)
    T(<sec>)   answer timeout for the whole attempt; 0 means no limit (overrides the setting)

Seconds are a plain decimal number (``2``, ``1.5``, ``0.25``). Each option may be given once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .codec import CallServiceError, shown

MAX_PROGRESS_TIMEOUT = 300.0
MAX_ANSWER_TIMEOUT = 86400.0

SECONDS_RE = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,3})?")
_FLAGS = {"r"}
_VALUED = {
    "t": ("progress timeout", MAX_PROGRESS_TIMEOUT),
    "T": ("answer timeout", MAX_ANSWER_TIMEOUT),
}
_USAGE = "valid options: r, t(<seconds>), T(<seconds>)"


class OptionsError(CallServiceError):
    """The options argument is malformed; the message says what and where."""


@dataclass(frozen=True)
class CallOptions:
    """Parsed options. A timeout of None means "use the configured default"; 0.0 means none."""

    redirect_local: bool = False
    progress_timeout: float | None = None
    answer_timeout: float | None = None


def parse_options(text: str | None) -> CallOptions:
    """Parse ``text`` (None or "" gives the defaults); raise OptionsError on any problem."""
    given: dict[str, str | None] = {}
    unknown: list[str] = []
    s = (text or "").strip()
    i = 0
    while i < len(s):
        letter = s[i]
        if not letter.isascii() or not letter.isalpha():
            raise OptionsError(
                f"unexpected character {letter!r} at position {i + 1} in options {shown(s)}"
            )
        i += 1
        arg: str | None = None
        if i < len(s) and s[i] == "(":
            end = s.find(")", i + 1)
            if end < 0:
                raise OptionsError(f"option {letter}: missing ')' in options {shown(s)}")
            arg = s[i + 1:end]
            i = end + 1
        if letter not in _FLAGS and letter not in _VALUED:
            if letter not in unknown:
                unknown.append(letter)
            continue
        if letter in given:
            raise OptionsError(f"option {letter} is given more than once")
        given[letter] = arg
    if unknown:
        raise OptionsError(f"unknown option(s): {', '.join(unknown)} ({_USAGE})")

    for flag in _FLAGS & given.keys():
        if given[flag] is not None:
            raise OptionsError(f"option {flag} takes no argument")
    return CallOptions(
        redirect_local="r" in given,
        progress_timeout=_seconds("t", given),
        answer_timeout=_seconds("T", given),
    )


def _seconds(letter: str, given: dict[str, str | None]) -> float | None:
    if letter not in given:
        return None
    what, limit = _VALUED[letter]
    arg = given[letter]
    if arg is None or not arg.strip():
        raise OptionsError(f"option {letter} needs a value in seconds: {letter}(<seconds>)")
    arg = arg.strip()
    if not SECONDS_RE.fullmatch(arg):
        raise OptionsError(
            f"option {letter}: {what} {shown(arg)} is not a number of seconds like 2 or 1.5"
        )
    value = float(arg)
    if value > limit:
        raise OptionsError(f"option {letter}: {what} {arg} s is above the limit of {limit:g} s")
    return value
