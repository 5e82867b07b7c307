"""The directory file (``[directory] file``, default cluster_directory.conf in Asterisk's config
dir): one entry a line.

    ; extension-or-pattern   primary   secondary   attributes (name=value, value may be "quoted")
    4711                     sopA      sopB        vm_context=default name="Marie Dupont"
    _5XXX                    sopB      sopC        vm_context=default
    _6XXX                    sopC      -           vm_context=default

``;`` or ``#`` start a comment (outside quotes); ``-`` means no secondary; blank lines are
ignored. The file is UTF-8 (a leading BOM is ignored); lines end with LF or CRLF. In a quoted
value, ``\\"`` is a quote and ``\\\\`` a backslash. Every problem is reported with its line
number; a file with any problem is not used at all (the directory in service stays), never a
part of it.
"""
from __future__ import annotations

import logging
import os
import stat
import threading
import time
from typing import Optional

from ..settings import DirectorySettings
from ..table import Entry, Table, TableError, entry_problem, pattern_key
from . import Publish, SourceStatus, shown_problems

log = logging.getLogger("directory")

NO_SECONDARY = "-"
MAX_FILE_BYTES = 64 * 1024 * 1024


def _tokens(line: str) -> list[str]:
    """Split a line into blank-separated tokens, quotes kept apart, comments dropped."""
    tokens: list[str] = []
    current: list[str] = []
    in_token = quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if quoted:
            if c == "\\" and i + 1 < len(line) and line[i + 1] in '"\\':
                current.append(line[i + 1])
                i += 1
            elif c == '"':
                quoted = False
            else:
                current.append(c)
        elif c in ";#":
            break
        elif c.isspace():
            if in_token:
                tokens.append("".join(current))
                current, in_token = [], False
        elif c == '"':
            quoted = in_token = True
        else:
            current.append(c)
            in_token = True
        i += 1
    if quoted:
        raise ValueError("a quoted value is not closed")
    if in_token:
        tokens.append("".join(current))
    return tokens


def _attribute(token: str) -> tuple[str, str]:
    name, sep, value = token.partition("=")
    if not sep or not name:
        raise ValueError(f"{token!r} is not an attribute: expected name=value")
    return name, value


def parse(text: str) -> Table:
    """The Table a directory file's text describes; TableError lists every problem found,
    each as "line N: ..."."""
    entries: list[Entry] = []
    lines: dict[str, int] = {}
    errors: list[str] = []
    # lines end at LF (CRLF too) only: str.splitlines() would also break at form feeds, NEL,
    # U+2028... inside a value, and every line number after them would be wrong
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        try:
            tokens = _tokens(line)
            if not tokens:
                continue
            if "=" in "".join(tokens[:3]) or len(tokens) < 3:
                raise ValueError("expected 'extension-or-pattern primary secondary "
                                 "[name=value ...]' (secondary '-' for none)")
            pattern, primary, secondary = tokens[:3]
            attrs: dict[str, str] = {}
            for token in tokens[3:]:
                name, value = _attribute(token)
                if name in attrs:
                    raise ValueError(f"attribute {name!r} is given more than once")
                attrs[name] = value
            entry = Entry(pattern, primary, "" if secondary == NO_SECONDARY else secondary,
                          attrs)
            problem = entry_problem(entry)
            if problem:
                raise ValueError(problem)
            key = pattern_key(pattern)
            if key in lines:
                raise ValueError(f"{pattern} is already listed on line {lines[key]}")
        except ValueError as exc:
            errors.append(f"line {number}: {exc}")
            continue
        lines[key] = number
        entries.append(entry)
    if errors:
        raise TableError(errors)
    try:
        return Table(entries)
    except TableError as exc:   # problems between rows (e.g. two spellings of one pattern)
        where = {e.pattern: lines[pattern_key(e.pattern)] for e in entries}
        raise TableError([_with_line(err, where) for err in exc.errors]) from None


def _with_line(error: str, where: dict[str, int]) -> str:
    if error.startswith("row "):
        pattern = error[4:].split(":", 1)[0]
        if pattern in where:
            return f"line {where[pattern]}: {error[4:]}"
    return error


class FileSource:
    """Reads the directory file once, at start (a 'module reload' starts a new source)."""

    def __init__(self, settings: DirectorySettings) -> None:
        self.path = settings.file
        self._lock = threading.Lock()
        self._entries = 0
        self._loaded_at: Optional[float] = None
        self._error = ""
        self._error_at: Optional[float] = None

    def start(self, publish: Publish) -> None:
        try:
            data = _read(self.path)
            if len(data) > MAX_FILE_BYTES:
                raise TableError([f"the file is larger than {MAX_FILE_BYTES} bytes"])
            table = parse(data.decode("utf-8-sig"))   # a BOM (Windows editors) is not text
        except (OSError, UnicodeDecodeError, TableError) as exc:
            problems = shown_problems(exc.errors) if isinstance(exc, TableError) \
                else [_describe(exc)]
            with self._lock:
                self._error = "; ".join(problems)
                self._error_at = time.time()
            log.error("cluster directory %s not loaded, the directory in service is unchanged:"
                      "\n%s", self.path, "\n".join(problems))
            return
        publish(table)
        with self._lock:
            self._entries, self._loaded_at = len(table), time.time()
            self._error, self._error_at = "", None
        log.info("cluster directory %s: %d entries loaded", self.path, len(table))

    def stop(self) -> None:
        """Nothing runs between loads."""

    def status(self) -> SourceStatus:
        with self._lock:
            return SourceStatus("file", self.path, self._entries, self._loaded_at, self._error,
                                self._error_at)


def _read(path: str) -> bytes:
    """The file's bytes (at most MAX_FILE_BYTES + 1). Opened without blocking and refused unless
    it is a regular file: a FIFO (or a device) at the path would hang or flood 'module reload'."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TableError(["it is not a regular file"])
        return f.read(MAX_FILE_BYTES + 1)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"the file is not UTF-8 (byte {exc.start})"
    if isinstance(exc, OSError):
        return f"cannot read the file: {exc.strerror or exc}"
    return str(exc)
