"""The cluster directory from PostgreSQL (``source = postgresql``), followed with LISTEN/NOTIFY.

Every node keeps the whole directory in memory; lookups never touch the network. A daemon thread
owns the database connection: it connects, LISTENs on ``cluster_directory`` (the trigger of
contrib/directory/schema.sql notifies on every change), loads the table, publishes it and writes
it to a JSON snapshot on disk (temp file + rename). It then reloads fully on each notification
(notifications arriving together cause one reload; in a storm of changes the next reload waits
as long as the last one took, at most MAX_GATHER) and every ``refresh`` seconds.

When the database cannot be reached the node keeps serving the table it has (or, at start, the
snapshot it last wrote) and logs that ONCE as a WARNING; the thread retries with a backoff capped
at :data:`MAX_BACKOFF` seconds and logs once when the database is back. A reload whose rows do not
validate is refused as a whole (logged with every problem; the previous table stays).

The pure parts (row conversion, snapshot format, backoff) are module functions
with unit tests; :class:`PostgresSource` is the thread and its status.
"""
from __future__ import annotations

import json
import logging
import os
import reprlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..settings import DirectorySettings, redact_error
from ..table import Entry, Table, TableError
from . import SourceStatus, shown_problems

log = logging.getLogger("directory.postgresql")

#: The NOTIFY channel and the table of contrib/directory/schema.sql.
CHANNEL = "cluster_directory"
TABLE = "cluster_directory"
QUERY = (f"SELECT extension, primary_sop, secondary_sop, attributes FROM {TABLE} "
         "ORDER BY extension")

CONNECT_TIMEOUT = 2          # seconds (libpq connect_timeout; its minimum useful value is 2)
STATEMENT_TIMEOUT_MS = 5000  # a load that takes longer is treated as a failure
FIRST_BACKOFF = 0.25         # seconds before the first retry after a failure
MAX_BACKOFF = 2.0            # retries never wait longer, so a recovery is seen within ~2 s
DEBOUNCE = 0.1               # seconds to gather more notifications before reloading
MAX_GATHER = 2.0             # at most this long, however long the last reload took
POLL = 0.5                   # longest wait without checking for stop()
START_WAIT = 1.5             # start() waits this long for the first load from the database
SNAPSHOT_FORMAT = 1
MAX_SNAPSHOT_TIME = 253402300799.0   # 9999-12-31 23:59:59 UTC: later is not a real write time

#: Connection parameters added to the administrator's DSN: bounded waits on a dead network.
CONNECT_KWARGS: Mapping[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT, "keepalives": 1, "keepalives_idle": 5,
    "keepalives_interval": 2, "keepalives_count": 2, "tcp_user_timeout": 5000,
    "application_name": "pbx_python-directory",
}


class SnapshotError(ValueError):
    """A snapshot file that cannot be used (unreadable, not our JSON, or bad entries)."""


class RowsError(ValueError):
    """Rows that do not make a valid directory; ``errors`` lists every problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


# ---------------------------------------------------------------------------------------------
# Pure parts

def row_to_entry(row: Sequence[Any]) -> Entry:
    """One (extension, primary_sop, secondary_sop, attributes) row as an :class:`Entry`.

    ``secondary_sop`` NULL or '' means none. ``attributes`` is a JSON object (dict, or its
    text) whose values are strings; anything else raises ValueError naming the problem
    (names and SOPs are validated by :class:`Table`)."""
    pattern, primary, secondary, attrs = row
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"extension {pattern!r} is not a non-empty text")
    if not isinstance(primary, str):
        raise ValueError(f"primary_sop {primary!r} is not a text")
    if secondary is None:
        secondary = ""
    if not isinstance(secondary, str):
        raise ValueError(f"secondary_sop {secondary!r} is not a text")
    if attrs is None:
        attrs = {}
    if isinstance(attrs, str):
        try:
            attrs = json.loads(attrs)
        except ValueError as exc:
            raise ValueError(f"attributes are not JSON: {exc}") from None
    if not isinstance(attrs, dict):
        raise ValueError(f"attributes must be a JSON object, not {type(attrs).__name__}")
    bad = [f"{k}={v!r}" for k, v in attrs.items() if not isinstance(v, str)]
    if bad:
        raise ValueError("attribute values must be strings: " + ", ".join(bad))
    return Entry(pattern, primary, secondary, dict(attrs))


def rows_to_table(rows: Iterable[Sequence[Any]]) -> Table:
    """A validated :class:`Table` from database rows; RowsError lists every bad row
    ("row <extension>: ...") and whatever :class:`Table` itself refuses."""
    entries: list[Entry] = []
    errors: list[str] = []
    for row in rows:
        try:
            entries.append(row_to_entry(row))
        except ValueError as exc:
            errors.append(f"row {row[0] if row else '?'}: {exc}")
    if errors:
        raise RowsError(errors)
    try:
        return Table(entries)
    except TableError as exc:
        raise RowsError(list(getattr(exc, "errors", None) or [str(exc)])) from None


def entry_to_json(entry: Entry) -> dict[str, Any]:
    return {"pattern": entry.pattern, "primary": entry.primary,
            "secondary": entry.secondary, "attrs": dict(entry.attrs)}


def write_snapshot(path: Path, table: Table, location: str, when: float) -> None:
    """Write ``table`` to ``path`` as JSON atomically (a temp file in the same directory,
    fsync'd, then renamed over ``path``): a reader sees the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": SNAPSHOT_FORMAT, "source": "postgresql", "location": location,
           "written_at": when, "entries": [entry_to_json(e) for e in table.entries]}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_snapshot(path: Path) -> tuple[Table, float]:
    """(table, time it was written) from a snapshot file; SnapshotError says why not."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SnapshotError(f"no snapshot at {path}") from None
    except (OSError, ValueError, RecursionError) as exc:   # RecursionError: nested too deep
        raise SnapshotError(f"snapshot {path} is unreadable: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT \
            or not isinstance(doc.get("entries"), list):
        raise SnapshotError(f"snapshot {path} is not a pbx_python directory snapshot "
                            f"(format {SNAPSHOT_FORMAT})")
    written = doc.get("written_at")
    # a time the status and the log can show (JSON also reads Infinity, NaN, 1e300, true)
    if isinstance(written, bool) or not isinstance(written, (int, float)) \
            or not 0 <= written <= MAX_SNAPSHOT_TIME:
        raise SnapshotError(f"snapshot {path} has no valid written_at time")
    rows = []
    for item in doc["entries"]:
        if not isinstance(item, dict):
            raise SnapshotError(f"snapshot {path}: entry {reprlib.repr(item)} is not an object")
        rows.append((item.get("pattern"), item.get("primary"), item.get("secondary"),
                     item.get("attrs")))
    try:
        return rows_to_table(rows), float(written)
    except RowsError as exc:
        raise SnapshotError(f"snapshot {path} has bad entries: "
                            f"{'; '.join(shown_problems(exc.errors))}") from None


def backoff_delays(first: float = FIRST_BACKOFF, cap: float = MAX_BACKOFF) -> Iterator[float]:
    """Waits between reconnection attempts: ``first``, doubling, never above ``cap``."""
    delay = first
    while True:
        yield min(delay, cap)
        delay = min(delay * 2, cap)


def failure_kind(exc: BaseException) -> str:
    """How a failed connection or load is named in the log and the status."""
    if isinstance(exc, ImportError):
        return "the psycopg driver is not installed (make deps)"
    name = type(exc).__name__
    if name in ("OperationalError", "InterfaceError", "ConnectionTimeout") or isinstance(exc, OSError):
        return "database unreachable"
    return "cannot load the directory from the database"


def describe_time(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


# ---------------------------------------------------------------------------------------------
# The source


class PostgresSource:
    """The :class:`~dialplan_funcs.directory.sources.Source` for ``source = postgresql``:
    ``settings.dsn`` (libpq connection string), ``settings.refresh`` (seconds between full
    reloads), ``settings.snapshot`` (absolute path of the JSON snapshot)."""

    def __init__(self, settings: DirectorySettings) -> None:
        self.dsn = settings.dsn
        self.refresh = float(settings.refresh)
        self.snapshot = Path(settings.snapshot)
        self.location = settings.safe_dsn      # the DSN without its password
        self._publish: Callable[[Table], None] | None = None
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._lock = threading.Lock()
        # status (written by the thread, read by status(); each assignment is atomic)
        self._entries = 0
        self._loaded_at: float | None = None
        self._last_error = ""
        self._last_error_at: float | None = None
        self._detail = "starting"
        self._down = False        # the "unreachable" WARNING was logged, not yet the recovery
        self._serving_snapshot_of: float | None = None
        self._snapshot_error = ""  # the last failure to write the snapshot (logged once)
        self._reload_cost = 0.0    # seconds the last reload took (query, table, snapshot)

    # -- Source protocol --------------------------------------------------------------------

    def start(self, publish: Callable[[Table], None]) -> None:
        """Publish the disk snapshot (if any), start the thread, and wait up to START_WAIT
        seconds for its first load from the database (which replaces the snapshot)."""
        if self._thread is not None:
            raise RuntimeError("PostgresSource.start() called twice")
        self._publish = publish
        self._load_snapshot()
        self._thread = threading.Thread(target=self._run, name="pbx_python-directory-pg",
                                        daemon=True)
        self._thread.start()
        self._first_attempt.wait(START_WAIT)

    def stop(self) -> None:
        """Stop the thread: it checks for stop at least every POLL seconds, and a query in
        progress is cancelled. Returns within a few seconds; idempotent."""
        self._stop.set()
        with self._lock:       # the thread closes the connection under this lock: never both
            conn = self._conn
            if conn is not None and not conn.closed:
                try:
                    conn.cancel_safe(timeout=1.0)   # libpq's cancel is meant for other threads
                except Exception:  # noqa: BLE001 - best effort: the thread times out by itself
                    pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(CONNECT_TIMEOUT + 1.5)
            if thread.is_alive():
                log.warning("PostgreSQL directory: the connection thread is still busy after "
                            "stop(); it ends by itself within %d s", CONNECT_TIMEOUT + 5)

    def status(self) -> SourceStatus:
        return SourceStatus(source="postgresql", location=self.location, entries=self._entries,
                            loaded_at=self._loaded_at, last_error=self._last_error,
                            last_error_at=self._last_error_at, detail=self._detail)

    # -- the thread -------------------------------------------------------------------------

    def _load_snapshot(self) -> None:
        try:
            table, written = read_snapshot(self.snapshot)
        except SnapshotError as exc:
            if self.snapshot.exists():
                log.warning("PostgreSQL directory: %s; not used", exc)
            self._detail = "no snapshot yet, waiting for the database"
            return
        self._serve(table, written)
        self._serving_snapshot_of = written
        self._detail = f"serving snapshot of {describe_time(written)}, connecting"

    def _serve(self, table: Table, when: float) -> None:
        assert self._publish is not None
        self._publish(table)
        self._entries = len(table)
        self._loaded_at = when

    def _run(self) -> None:
        delays = backoff_delays()
        while not self._stop.is_set():
            try:
                self._session()
            except Exception as exc:  # noqa: BLE001 - any failure: serve what we have, retry
                if self._stop.is_set():
                    break
                self._went_down(exc)
            finally:
                self._close()
                self._first_attempt.set()
            if self._down:
                self._stop.wait(next(delays))
            else:
                delays = backoff_delays()

    def _session(self) -> None:
        """One connection: connect, LISTEN, load, then follow notifications until an error."""
        import psycopg   # imported here: a missing driver is a logged error, not a load failure

        conn = psycopg.connect(self.dsn, autocommit=True, **CONNECT_KWARGS)
        with self._lock:
            self._conn = conn
        if self._stop.is_set():
            return
        conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
        conn.execute(f"LISTEN {CHANNEL}")
        self._reload(conn, "start" if self._loaded_at is None else "connect")
        self._came_up()
        self._first_attempt.set()
        next_full = time.monotonic() + self.refresh
        while not self._stop.is_set():
            wait = max(0.0, min(POLL, next_full - time.monotonic()))
            notified = any(True for _ in conn.notifies(timeout=wait, stop_after=1))
            if self._stop.is_set():
                return
            if notified:
                # gather a burst into one reload; in a storm of changes, wait as long as the
                # last reload took (a large table), so reloads take at most half of the time
                gather = min(max(DEBOUNCE, self._reload_cost), MAX_GATHER)
                for _ in conn.notifies(timeout=gather):
                    pass
                self._reload(conn, "notify")
                next_full = time.monotonic() + self.refresh
            elif time.monotonic() >= next_full:
                self._reload(conn, "refresh")
                next_full = time.monotonic() + self.refresh

    def _reload(self, conn: Any, why: str) -> None:
        started = time.monotonic()
        try:
            self._load(conn, why)
        finally:
            self._reload_cost = time.monotonic() - started

    def _load(self, conn: Any, why: str) -> None:
        rows = conn.execute(QUERY).fetchall()
        now = time.time()
        try:
            table = rows_to_table(rows)
        except RowsError as exc:
            problems = "; ".join(shown_problems(exc.errors))
            error = f"reload refused: {problems}"
            # logged once: the same bad rows are refused again on every refresh and NOTIFY
            repeated = error == self._last_error
            self._last_error = error
            self._last_error_at = now
            (log.debug if repeated else log.error)(
                "PostgreSQL directory %s: reload (%s) refused, the previous directory stays in "
                "service (%d entries): %s", self.location, why, self._entries, problems)
            return
        self._serve(table, now)
        self._serving_snapshot_of = None
        if self._last_error.startswith("reload refused"):
            self._last_error = ""
        log.debug("PostgreSQL directory: %d entries loaded (%s)", len(table), why)
        try:
            write_snapshot(self.snapshot, table, self.location, now)
            self._snapshot_error = ""
        except OSError as exc:
            if str(exc) != self._snapshot_error:    # once, not on every reload
                log.warning("PostgreSQL directory: cannot write the snapshot %s: %s",
                            self.snapshot, exc)
            self._snapshot_error = str(exc)

    def _came_up(self) -> None:
        self._detail = "connected, listening"
        if self._down:
            self._down = False
            self._last_error = ""
            log.info("PostgreSQL directory %s: database reachable again; %d entries loaded",
                     self.location, self._entries)
        elif self._loaded_at is not None:
            log.info("PostgreSQL directory %s: %d entries loaded", self.location, self._entries)

    def _went_down(self, exc: BaseException) -> None:
        # libpq quotes pieces of a malformed DSN in its errors: never log or show its password
        reason = redact_error(" ".join(str(exc).split()), self.dsn) or type(exc).__name__
        what = failure_kind(exc)
        self._last_error = f"{what}: {reason}"
        self._last_error_at = time.time()
        if self._loaded_at is None:
            serving = "no directory yet (no snapshot): every extension is unknown"
        elif self._serving_snapshot_of is not None:
            serving = f"serving snapshot of {describe_time(self._serving_snapshot_of)}"
        else:
            serving = f"serving the directory loaded at {describe_time(self._loaded_at)}"
        self._detail = f"{what}, {serving}"
        if not self._down:
            self._down = True
            log.warning("PostgreSQL directory %s: %s (%s); %s (%d entries), retrying every %g s",
                        self.location, what, reason, serving, self._entries, MAX_BACKOFF)

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
