"""The cluster directory in memory: which SOPs host an extension (pure Python, no Asterisk).

A Table holds entries for exact extensions ("4711") and Asterisk patterns ("_5XXX"). A lookup
gives what the dialplan would: an exact extension beats any pattern, and patterns are tried in
the order Asterisk sorts a context's extensions (main/pbx.c ext_cmp: the most specific first),
the first that matches winning. Pattern syntax, matching and order are Asterisk's, implemented
once in pbx_python.patterns (shared with the Python dialplan switch).

A Table is immutable: the service swaps a whole new one in (one reference assignment), so a
lookup never sees a half-loaded directory and never waits.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Optional

from pbx_python.patterns import (MAX_EXTEN_CHARS, elements, pattern_cmp, pattern_key,  # noqa: F401
                                 to_regex, validate_pattern)

_SOP_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ATTR_RE = re.compile(r"[A-Za-z0-9_]+")


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
        self._patterns = tuple((to_regex(elements(e.pattern[1:])), e) for e in patterns)

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
