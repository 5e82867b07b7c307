"""Asterisk extension patterns in Python: validation, matching and the dialplan's precedence.

Used by the Python dialplan switch (pbx_python.switches) and by the cluster directory
(dialplan_funcs.directory.table). Matching follows Asterisk's own (_extension_match_core):

    X  0-9     Z  1-9     N  2-9     [1-3a]  a set, with ranges (a '-' first or last is itself)
    .  one or more of anything (ends a pattern)   !  zero or more (ends a pattern)
    -  ignored (eye candy, as in NXX-XXXX), in patterns, extensions and looked-up numbers

and the order is Asterisk's ext_cmp (main/pbx.c): an exact extension before any pattern, then the
most specific pattern first. Inside Asterisk, the switch's table is sorted and matched by
Asterisk's own C functions (ast_extension_cmp, ast_extension_match); this module validates what
a module declares, so that a table never holds a pattern that means something unexpected, and
gives the same answers to pure-Python code (the directory, unit tests).
"""
from __future__ import annotations

import functools
import re
from typing import Iterable

MAX_EXTEN_CHARS = 80
#: An exact extension: '_' not first (that starts a pattern).
_EXACT_RE = re.compile(r"[A-Za-z0-9*#+.-][A-Za-z0-9*#+_.-]{0,79}")
#: Characters a pattern may use outside sets ('[', ']' handled apart).
_PATTERN_CHARS = re.compile(r"[A-Za-z0-9*#+_.!-]")


def elements(body: str) -> list[object]:
    """A pattern body (after '_') as elements: a str (one literal char), a frozenset (a set,
    X/Z/N included), "." or "!" (as the strings ".*"/"!*" to tell them from literals).
    Raises ValueError on what Asterisk would mis-handle (unclosed or empty set, text after
    '.' or '!', '/'), so a table never holds a pattern that means something unexpected."""
    out: list[object] = []
    i = 0
    while i < len(body):
        c = body[i]
        if out and out[-1] in (".*", "!*"):
            raise ValueError(f"'{'.' if out[-1] == '.*' else '!'}' may only end a pattern")
        if c == "-":
            i += 1
            continue
        if c in "xX":
            out.append(frozenset("0123456789"))
        elif c in "zZ":
            out.append(frozenset("123456789"))
        elif c in "nN":
            out.append(frozenset("23456789"))
        elif c == ".":
            out.append(".*")
        elif c == "!":
            out.append("!*")
        elif c == "[":
            end = body.find("]", i + 1)
            if end < 0:
                raise ValueError("'[' without ']'")
            chars = _set_chars(body[i + 1:end])
            if not chars:
                raise ValueError("empty set '[]'")
            out.append(frozenset(chars))
            i = end
        elif c == "]":
            raise ValueError("']' without '['")
        elif _PATTERN_CHARS.fullmatch(c):
            out.append(c)
        else:
            raise ValueError(f"character {c!r} is not allowed")
        i += 1
    if not out:
        raise ValueError("a pattern needs something after '_'")
    return out


def _set_chars(inner: str) -> set[str]:
    """The characters of a set's inside, as Asterisk reads it: 'a-c' is a range when a
    character follows the '-' inside the set; any other character is itself."""
    if any(c in inner for c in "[/\\") or any(ord(c) < 33 or ord(c) > 126 for c in inner):
        raise ValueError(f"set [{inner}] holds a character that is not allowed")
    chars: set[str] = set()
    i = 0
    while i < len(inner):
        if i + 2 < len(inner) and inner[i + 1] == "-":
            lo, hi = inner[i], inner[i + 2]
            if lo > hi:
                raise ValueError(f"range {lo}-{hi} in [{inner}] is backwards")
            chars.update(chr(o) for o in range(ord(lo), ord(hi) + 1))
            i += 3
        else:
            chars.add(inner[i])
            i += 1
    return chars


def to_regex(elements: list[object]) -> re.Pattern[str]:
    parts = []
    for el in elements:
        if el == ".*":
            parts.append(".+")
        elif el == "!*":
            parts.append(".*")
        elif isinstance(el, frozenset):
            parts.append("[" + "".join(re.escape(c) for c in sorted(el)) + "]")
        else:
            parts.append(re.escape(str(el)))
    return re.compile("".join(parts), re.DOTALL)


def _position_key(el: object) -> tuple[int, bytes]:
    """ext_cmp_pattern_pos: (score, bitmap). A smaller score sorts first: one character, then
    sets by size (then lowest first character), '.', '!', end of pattern. Equal scores sort by
    the set's bitmap, the set holding lower characters first."""
    if el == ".*":
        return 0x18000, bytes(32)
    if el == "!*":
        return 0x28000, bytes(32)
    chars = el if isinstance(el, frozenset) else {el}
    bitmap = bytearray(32)
    for c in chars:
        o = ord(c)
        bitmap[o // 8] |= 1 << (7 - o % 8)
    # Asterisk compares memcmp(right, left): the larger bitmap sorts first; negate by inverting.
    return (len(chars) << 8) | min(ord(c) for c in chars), bytes(255 - b for b in bitmap)


_END = (0x30000, bytes(32))


def pattern_cmp(left: str, right: str) -> int:
    """Asterisk's ext_cmp (main/pbx.c) for two valid extensions or patterns (<0: left sorts
    first): an exact extension before any pattern, then the most specific pattern first."""
    if not left.startswith("_"):
        if right.startswith("_"):
            return -1
        a, b = left.replace("-", ""), right.replace("-", "")
        return (a > b) - (a < b)
    if not right.startswith("_"):
        return 1
    la = [_position_key(e) for e in elements(left[1:])] + [_END]
    ra = [_position_key(e) for e in elements(right[1:])] + [_END]
    for a, b in zip(la, ra):
        if a != b:
            return -1 if a < b else 1
    return 0


def validate_pattern(pattern: str) -> str:
    """``pattern`` if it is a valid exact extension or pattern, else ValueError saying why."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("the extension or pattern is empty")
    if len(pattern) > MAX_EXTEN_CHARS:
        raise ValueError(f"{pattern!r} is longer than {MAX_EXTEN_CHARS} characters")
    if pattern.startswith("_"):
        try:
            elements(pattern[1:])
        except ValueError as exc:
            raise ValueError(f"pattern {pattern!r}: {exc}") from None
    elif not _EXACT_RE.fullmatch(pattern) or not pattern.replace("-", ""):
        raise ValueError(f"extension {pattern!r} is invalid: use 1-{MAX_EXTEN_CHARS} of "
                         "A-Z a-z 0-9 * # + _ . - (a pattern starts with '_')")
    return pattern


def pattern_key(pattern: str) -> str:
    """What makes two spellings the same extension for Asterisk ('-' ignored in exact ones)."""
    return pattern if pattern.startswith("_") else pattern.replace("-", "")


def is_pattern(pattern: str) -> bool:
    return pattern.startswith("_")


def matches(pattern: str, exten: str) -> bool:
    """Whether the valid extension or pattern ``pattern`` matches the number ``exten`` exactly
    (as ast_extension_match: '-' ignored on both sides)."""
    number = exten.replace("-", "")
    if not number:
        return False
    if not pattern.startswith("_"):
        return pattern.replace("-", "") == number
    return to_regex(elements(pattern[1:])).fullmatch(number) is not None


def in_dialplan_order(patterns: Iterable[str]) -> list[str]:
    """``patterns`` sorted as Asterisk sorts a context's extensions (the first match wins)."""
    return sorted(patterns, key=functools.cmp_to_key(pattern_cmp))
