"""Python's logging, stdout and stderr, routed to the Asterisk logger."""
from __future__ import annotations

import io
import logging
import sys

from . import asterisk as ast

# Python level -> Asterisk level. INFO becomes NOTICE: what Python code logs at INFO is meant
# for the administrator; use pbx_python.verbose() for chatty per-call lines.
_LEVELS = ((logging.ERROR, ast.LOG_ERROR), (logging.WARNING, ast.LOG_WARNING),
           (logging.INFO, ast.LOG_NOTICE), (0, ast.LOG_DEBUG))


def asterisk_level(levelno: int) -> int:
    for threshold, level in _LEVELS:
        if levelno >= threshold:
            return level
    return ast.LOG_DEBUG


class AsteriskHandler(logging.Handler):
    """A logging handler writing each record as one Asterisk log entry."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.INFO and not ast.debug_enabled():
            return  # decided here: no C call for debug lines nobody keeps
        try:
            ast.log(asterisk_level(record.levelno), self.format(record), record.pathname,
                    record.lineno, record.funcName or "")
        except BaseException:  # noqa: BLE001 - a log call must never raise into user code
            self.handleError(record)


class AsteriskStream(io.TextIOBase):
    """A text stream (for sys.stdout / sys.stderr) that logs each complete line."""

    def __init__(self, level: int, label: str) -> None:
        super().__init__()
        self._level = level
        self._label = label
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = self._partial + text
        *lines, self._partial = data.split("\n")
        for line in lines:
            ast.log(self._level, line, self._label)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            line, self._partial = self._partial, ""
            ast.log(self._level, line, self._label)


def install() -> None:
    """Route the root logger and sys.stdout/sys.stderr to Asterisk."""
    sys.stdout = AsteriskStream(ast.LOG_NOTICE, "python-stdout")
    sys.stderr = AsteriskStream(ast.LOG_WARNING, "python-stderr")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = AsteriskHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # Asterisk's own debug level decides what is kept
