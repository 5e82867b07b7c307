"""The cluster directory in memory: which SOPs host an extension (pure Python, no Asterisk).

A Table holds entries for exact extensions ("4711") and Asterisk patterns ("_5XXX"). A lookup
gives what the dialplan would: an exact extension beats any pattern, and patterns are tried in
the order Asterisk sorts a context's extensions (main/pbx.c ext_cmp: the most specific first),
the first that matches winning. Matching follows Asterisk's own (_extension_match_core):

    X  0-9     Z  1-9     N  2-9     [1-3a]  a set, with ranges (a '-' first or last is itself)
    .  one or more of anything (ends a pattern)   !  zero or more (ends a pattern)
    -  ignored (eye candy, as in NXX-XXXX), in patterns, extensions and looked-up numbers

A Table is immutable: the service swaps a whole new one in (one reference assignment), so a
lookup never sees a half-loaded directory and never waits.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Optional

MAX_EXTEN_CHARS = 80
_SOP_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ATTR_RE = re.compile(r"[A-Za-z0-9_]+")
#: An exact extension: what CallService accepts (codec.validate_extension), '_' not first.
_EXACT_RE = re.compile(r"[A-Za-z0-9*#+.-][A-Za-z0-9*#+_.-]{0,79}")
#: Characters a pattern may use outside sets ('[', ']' handled apart).
_PATTERN_CHARS = re.compile(r"[A-Za-z0-9*#+_.!-]")


class TableError(ValueError):
    """Entries that cannot form a directory; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid directory: " + "; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Entry:
    pattern: str                 # exact extension "4711" or Asterisk pattern "_5XXX"
    primary: str                 # SOP name
    secondary: str               # SOP name or "" (none)
    # extra attributes by name: a copy of the mapping given, never changed afterwards (a plain
    # dict, so that dataclasses.asdict/copy/pickle work); not part of the hash
    attrs: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", dict(self.attrs))

    @property
    def is_pattern(self) -> bool:
        return self.pattern.startswith("_")


# ---------------------------------------------------------------------------- patterns

def _elements(body: str) -> list[object]:
    """A pattern body (after '_') as elements: a str (one literal char), a frozenset (a set,
    X/Z/N included), "." or "!" (as the strings ".*"/"!*" to tell them from literals).
    Raises ValueError on what Asterisk would mis-handle (unclosed or empty set, text after
    '.' or '!', '/'), so a directory never holds a pattern that means something unexpected."""
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


def _regex(elements: list[object]) -> re.Pattern[str]:
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
    """Asterisk's ext_cmp for two valid directory keys (<0: left sorts first)."""
    if not left.startswith("_"):
        if right.startswith("_"):
            return -1
        a, b = left.replace("-", ""), right.replace("-", "")
        return (a > b) - (a < b)
    if not right.startswith("_"):
        return 1
    la = [_position_key(e) for e in _elements(left[1:])] + [_END]
    ra = [_position_key(e) for e in _elements(right[1:])] + [_END]
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
            _elements(pattern[1:])
        except ValueError as exc:
            raise ValueError(f"pattern {pattern!r}: {exc}") from None
    elif not _EXACT_RE.fullmatch(pattern) or not pattern.replace("-", ""):
        raise ValueError(f"extension {pattern!r} is invalid: use 1-{MAX_EXTEN_CHARS} of "
                         "A-Z a-z 0-9 * # + _ . - (a pattern starts with '_')")
    return pattern


# ---------------------------------------------------------------------------- the table

class Table:
    """An immutable directory: validated entries and their lookup."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries: tuple[Entry, ...] = tuple(entries)
        errors: list[str] = []
        exact: dict[str, Entry] = {}
        patterns: list[Entry] = []
        seen: dict[str, str] = {}
        for entry in self.entries:
            problem = entry_problem(entry)
            if problem:
                errors.append(f"row {entry.pattern}: {problem}")
                continue
            key = pattern_key(entry.pattern)
            if key in seen:
                errors.append(f"row {entry.pattern}: listed more than once "
                              f"(also as {seen[key]})")
                continue
            seen[key] = entry.pattern
            if entry.is_pattern:
                patterns.append(entry)
            else:
                exact[key] = entry
        if errors:
            raise TableError(errors)
        patterns.sort(key=functools.cmp_to_key(lambda a, b: pattern_cmp(a.pattern, b.pattern)))
        for before, after in zip(patterns, patterns[1:]):
            if pattern_cmp(before.pattern, after.pattern) == 0:   # e.g. _5XXX and _5[0-9]xx
                errors.append(f"row {after.pattern}: the same pattern as {before.pattern}")
        if errors:
            raise TableError(errors)
        self._exact = exact
        self._patterns = tuple((_regex(_elements(e.pattern[1:])), e) for e in patterns)

    def lookup(self, exten: str) -> Optional[Entry]:
        """The entry the dialplan would pick for ``exten`` (None when nothing matches)."""
        number = exten.replace("-", "")
        if not number:
            return None
        found = self._exact.get(number)
        if found is not None:
            return found
        for rx, entry in self._patterns:
            if rx.fullmatch(number):
                return entry
        return None

    @property
    def patterns_in_order(self) -> tuple[str, ...]:
        """The patterns in the order they are tried."""
        return tuple(e.pattern for _, e in self._patterns)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"<Table {len(self)} entries>"


def pattern_key(pattern: str) -> str:
    """What makes two rows the same extension for Asterisk ('-' ignored in exact ones)."""
    return pattern if pattern.startswith("_") else pattern.replace("-", "")


def entry_problem(entry: Entry) -> str:
    """Why ``entry`` cannot be in a directory ("" when it can)."""
    try:
        validate_pattern(entry.pattern)
    except ValueError as exc:
        return str(exc)
    if not _SOP_RE.fullmatch(entry.primary or ""):
        return f"primary SOP {entry.primary!r} is invalid: use 1-64 of A-Z a-z 0-9 _ . -"
    if entry.secondary and not _SOP_RE.fullmatch(entry.secondary):
        return f"secondary SOP {entry.secondary!r} is invalid: use 1-64 of A-Z a-z 0-9 _ . -"
    if entry.secondary == entry.primary:
        return f"secondary SOP {entry.secondary!r} is the primary too"
    for name, value in entry.attrs.items():
        if not isinstance(name, str) or not _ATTR_RE.fullmatch(name):
            return f"attribute name {name!r} is invalid: use A-Z a-z 0-9 _"
        if name.lower() in RESERVED_FIELDS:
            return f"attribute name {name!r} is reserved (a GETEXTENSIONINFO field)"
        if not isinstance(value, str) or "\0" in value or "\n" in value or "\r" in value:
            return f"attribute {name}: the value cannot hold NUL or line breaks"
    return ""


#: GETEXTENSIONINFO's own fields: an attribute cannot take these names.
RESERVED_FIELDS = ("primary", "secondary", "found", "pattern")
