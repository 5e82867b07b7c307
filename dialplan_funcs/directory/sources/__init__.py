"""Where the directory comes from: the Source protocol, its status, and the factory.

A source loads Tables and hands each to ``publish`` (the service swaps it in atomically); it
never does I/O in the call path. ``file`` is read at start (so on each 'module reload');
``postgresql`` (sources/postgres.py) follows the database from its own thread.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from ..settings import DirectorySettings
from ..table import Table

Publish = Callable[[Table], None]

#: How many problems of a refused load are logged and shown; the rest are counted.
MAX_PROBLEMS_SHOWN = 20


def shown_problems(errors: list[str], limit: int = MAX_PROBLEMS_SHOWN) -> list[str]:
    """The first ``limit`` problems, then "... and N more problems": a directory of 100 000
    bad rows must not make one log message (repeated on every reload) of megabytes."""
    if len(errors) <= limit:
        return list(errors)
    return errors[:limit] + [f"... and {len(errors) - limit} more problems"]


@dataclass
class SourceStatus:
    source: str                      # "file" | "postgresql"
    location: str                    # file path, or the DSN with any password removed
    entries: int
    loaded_at: Optional[float]       # time.time() of the table in service
    last_error: str                  # "" when the last attempt worked
    last_error_at: Optional[float]
    detail: str = ""                 # e.g. "connected, listening"


class Source(Protocol):
    def start(self, publish: Publish) -> None:
        """Load the first table (synchronously where that is quick and local) and publish it;
        publish() may be called again later, from any thread."""

    def stop(self) -> None:
        """Stop what start() started: bounded (a few seconds at most), idempotent."""

    def status(self) -> SourceStatus:
        """What the source loaded last, and its last error."""


def make_source(settings: DirectorySettings) -> Source:
    """The source ``[directory] source =`` names (imported only when used)."""
    if settings.source == "postgresql":
        from .postgres import PostgresSource
        return PostgresSource(settings)
    from .file import FileSource
    return FileSource(settings)
