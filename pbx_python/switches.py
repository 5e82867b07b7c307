"""Whole contexts in Python: the dialplan switch (`switch => Python/<name>` in extensions.conf).

    import pbx_python as px

    office = px.switch("office")              # in a context:  switch => Python/office

    @office.extension("_2XXX")                # Asterisk pattern syntax, checked at load
    def internal(chan, exten):
        res = chan.exec_app("Dial", f"PJSIP/{exten},20")
        ...

A module declares switches and their extensions (exact ones like "100" and patterns like
"_2XXX") at import; each (re)load hands Asterisk the whole set in one call, and Asterisk answers
its lookups (exists, canmatch, matchmore) from that in-memory table without running Python, with
the dialplan's own precedence (an exact extension first, then the most specific pattern). Only
running an extension (its priority 1, the body) calls Python: `fn(chan, exten)` in the channel's
thread, returning None or 0 (continue: there is no priority 2, so the call ends as a dialplan that
runs off its end; after a Goto the PBX follows the new place) or -1 (hang up). An exception is
logged with its traceback and hangs the call up.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import patterns
from .registry import Stats, _target

SwitchHandler = Callable[..., Optional[int]]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _where(fn: Any) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return getattr(fn, "__module__", "?") or "?"
    return f"{code.co_filename}:{code.co_firstlineno}"


@dataclass
class ExtensionSpec:
    """One extension (or pattern) of a switch and the function that runs it."""
    switch: str
    pattern: str
    handler: SwitchHandler
    module: str
    where: str                                  # file:line of the handler, for messages
    stats: Stats = field(default_factory=Stats)  # shared per (switch, pattern) across reloads

    @property
    def key(self) -> str:
        """The name the C side calls it by: '<switch>/<pattern>' (a switch name has no '/')."""
        return f"{self.switch}/{self.pattern}"

    @property
    def handler_name(self) -> str:
        return f"{self.module}.{getattr(self.handler, '__qualname__', repr(self.handler))}"


class Switch:
    """A Python dialplan switch: `switch => Python/<name>` in a context of extensions.conf."""

    def __init__(self, name: str, module: str) -> None:
        self.name = name
        self.module = module
        self.extensions: dict[str, ExtensionSpec] = {}   # key: patterns.pattern_key(pattern)

    def __repr__(self) -> str:
        return f"<Switch Python/{self.name}: {len(self.extensions)} extension(s)>"

    def extension(self, pattern: str) -> Callable[[SwitchHandler], SwitchHandler]:
        """Declare an extension of this switch, exact ("100") or a pattern ("_2XXX"), served by
        the decorated fn(chan, exten). An invalid pattern or one declared twice (in any
        spelling Asterisk takes for the same, "_2XXX" and "_2xxx") raises ValueError: the module
        fails to load (on reload, the previous table stays)."""
        if not isinstance(pattern, str):
            raise TypeError(f"switch {self.name}: an extension must be a str, not "
                            f"{type(pattern).__name__}")

        def decorate(fn: SwitchHandler) -> SwitchHandler:
            where = _where(fn)
            try:
                patterns.validate_pattern(pattern)
            except ValueError as exc:
                raise ValueError(f"switch {self.name}, extension declared at {where}: {exc}") \
                    from None
            for other in self.extensions.values():
                if patterns.pattern_key(other.pattern) == patterns.pattern_key(pattern) or (
                        patterns.is_pattern(pattern) and patterns.is_pattern(other.pattern)
                        and patterns.pattern_cmp(pattern, other.pattern) == 0):
                    raise ValueError(f"switch {self.name}: extension {pattern!r} (at {where}) is "
                                     f"declared twice: also as {other.pattern!r} at {other.where}")
            spec = ExtensionSpec(self.name, pattern, fn, getattr(fn, "__module__", self.module),
                                 where)
            self.extensions[patterns.pattern_key(pattern)] = spec
            return fn
        return decorate

    def in_match_order(self) -> list[ExtensionSpec]:
        """The extensions in the order the dialplan tries them (the first match wins)."""
        order = patterns.in_dialplan_order(spec.pattern for spec in self.extensions.values())
        by_pattern = {spec.pattern: spec for spec in self.extensions.values()}
        return [by_pattern[p] for p in order]

    def lookup(self, exten: str) -> Optional[ExtensionSpec]:
        """The extension the dialplan would run for `exten` (pure Python, for tests and tools)."""
        return next((spec for spec in self.in_match_order()
                     if patterns.matches(spec.pattern, exten)), None)


def switch(name: str) -> Switch:
    """Declare a dialplan switch, used in extensions.conf as `switch => Python/<name>`.

    Names are 1-64 ASCII letters, digits, '_' and '-'; one name is declared once (by one module).
    """
    if not isinstance(name, str):
        raise TypeError(f"a switch name must be a str, not {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid switch name {name!r}: use 1-64 ASCII letters, digits, '_' "
                         "and '-'")
    import sys
    caller = sys._getframe(1).f_globals.get("__name__", "?")
    sw = Switch(name, caller)
    _target().add_switch(sw)
    return sw


def pack(switches: dict[str, Switch]) -> bytes:
    """The table handed to C in one call: per switch, its name, its patterns, then an empty
    string; every string NUL-terminated. C sorts each switch's patterns itself
    (ast_extension_cmp) and keeps the table until the next successful load."""
    out = bytearray()
    for sw in switches.values():
        out += sw.name.encode() + b"\0"
        for spec in sw.extensions.values():
            out += spec.pattern.encode() + b"\0"
        out += b"\0"
    return bytes(out)
