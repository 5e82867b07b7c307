"""A private PostgreSQL server for tests: initdb into a temporary directory, listening only on a
loopback address of its own (claimed like an Asterisk instance's) and a unix socket in that
directory, trust authentication, a ``pbx`` database and user, and the directory schema applied.

Debian's ``postgresql`` package provides the server binaries (/usr/lib/postgresql/<v>/bin; set
PBX_PYTHON_PG_BINDIR to use others). initdb and the server refuse to run as root, so when the
tests run as root the server runs as the ``postgres`` system user the package creates (through
``runuser``), in a directory chowned to it; otherwise as the current user.

:meth:`PrivatePostgres.stop` is a real server stop (``pg_ctl stop``: clients see the connection
drop) and :meth:`start` brings the same data back on the same address; :meth:`cleanup` stops it
and removes the directory. Only what this helper started is ever stopped: its own ``pg_ctl -D
<dir>``, and, if that fails or the test process exits without cleaning up, its own postmaster's
PID (read from the postmaster.pid file of its own data directory).
"""
from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from .net import free_loopback_host, free_port, release_host

ROOT = Path(__file__).resolve().parents[2]
#: The checkout's schema; a package installed with `pip install .` carries a copy in pbx_python/_src.
SCHEMA = next((p for p in (ROOT / "contrib" / "directory" / "schema.sql",
                           ROOT / "pbx_python" / "_src" / "schema.sql") if p.is_file()),
              ROOT / "contrib" / "directory" / "schema.sql")
DB_NAME = "pbx"
DB_USER = "pbx"
SUPERUSER = "postgres"
SERVER_USER = "postgres"        # the system user the server runs as when we are root

#: Servers started and not cleaned up: stopped (by their own postmaster PID) at exit.
_LIVE: set["PrivatePostgres"] = set()


@atexit.register
def _stop_leftovers() -> None:
    for pg in list(_LIVE):
        pg.kill()


class PostgresError(RuntimeError):
    """The private PostgreSQL could not be set up or driven (the message has its log's tail)."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres (highest Debian version first)."""
    explicit = os.environ.get("PBX_PYTHON_PG_BINDIR")
    candidates = [Path(explicit)] if explicit else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    raise PostgresError("no PostgreSQL server binaries (initdb, pg_ctl) in "
                        + (explicit or "/usr/lib/postgresql/*/bin")
                        + ": install Debian's postgresql package (make deps does)")


class PrivatePostgres:
    """One private PostgreSQL server. ``PrivatePostgres().start()``; ``dsn`` for clients."""

    def __init__(self, host: Optional[str] = None, port: Optional[int] = None,
                 bindir: Optional[Path] = None, schema: Optional[Path] = SCHEMA) -> None:
        self.bindir = bindir or find_bindir()
        self.host = host or free_loopback_host(udp_ports=(), tcp_ports=(), shuffle=True,
                                               candidates=range(191, 200))
        self.port = port or free_port(self.host, socket.SOCK_STREAM)
        self.base = Path(tempfile.mkdtemp(prefix="pbx-pg-"))
        self.data = self.base / "data"
        self.logfile = self.base / "postgres.log"
        self.schema = schema
        self.pid: Optional[int] = None
        self._as_root = os.geteuid() == 0
        self._initialized = False

    # -- connection strings -----------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """libpq connection string of the ``pbx`` user and database (TCP on the loopback)."""
        return f"host={self.host} port={self.port} dbname={DB_NAME} user={DB_USER}"

    def superuser_dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} dbname={dbname} user={SUPERUSER}"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> "PrivatePostgres":
        """initdb (first time), start the server and wait until it accepts connections;
        the first time also create the database and user and apply the schema."""
        if self.running:
            return self
        _LIVE.add(self)
        if not self._initialized:
            self._initdb()
        self._pg_ctl("start", "-w", "-t", "30", "-l", str(self.logfile), "-o",
                     f"-c listen_addresses={self.host} -p {self.port} "
                     f"-c unix_socket_directories={self.base} -c fsync=off "
                     "-c synchronous_commit=off -c full_page_writes=off")
        self.pid = self._postmaster_pid()
        if not self._initialized:
            self._initialized = True
            self._create_db()
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m fast``: sessions are ended, clients see the
        connection drop). Kills its own postmaster if pg_ctl fails. No-op if not running.
        Also stops a server whose start was interrupted (Ctrl-C while ``pg_ctl start`` waited:
        the postmaster runs, but :attr:`pid` was never set)."""
        if self.pid is None:
            self.pid = self.leftover_pid()
            if self.pid is None:
                return
        try:
            self._pg_ctl("stop", "-w", "-t", "20", "-m", mode)
        except PostgresError:
            self.kill()
        self.pid = None

    def kill(self) -> None:
        """Immediate stop of exactly our postmaster (SIGQUIT, then SIGKILL); for exit paths."""
        pid = self.pid or self._postmaster_pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if not _alive(pid):
                break
        self.pid = None

    def cleanup(self, keep: bool = False) -> None:
        """Stop the server; remove its directory unless ``keep``; release the address."""
        try:
            self.stop()
        finally:
            _LIVE.discard(self)
            release_host(self.host)
            if not keep:
                shutil.rmtree(self.base, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.pid is not None and _alive(self.pid)

    def leftover_pid(self) -> Optional[int]:
        """The PID in our data directory's postmaster.pid if that process is alive, else None."""
        pid = self._postmaster_pid()
        return pid if pid is not None and _alive(pid) else None

    # -- using it ---------------------------------------------------------------------------

    def execute(self, sql: str, params: Optional[tuple[Any, ...]] = None) -> list[tuple[Any, ...]]:
        """Run one statement as the ``pbx`` user (autocommit); rows if it returns any."""
        import psycopg
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def psql(self, sql: str = "", *, file: Optional[Path] = None, user: str = DB_USER,
             dbname: str = DB_NAME) -> str:
        """Run ``psql -c sql`` (or ``-f file``) against the server, as an admin would; stdout."""
        args = [str(self._psql_exe()), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                "-p", str(self.port), "-U", user, "-d", dbname]
        args += ["-f", str(file)] if file is not None else ["-c", sql]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
        if proc.returncode != 0:
            raise PostgresError(f"psql {' '.join(args[1:])} failed ({proc.returncode}): "
                                f"{proc.stderr.strip()}")
        return proc.stdout

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- internals --------------------------------------------------------------------------

    def _as_server_user(self, args: list[str]) -> list[str]:
        return ["runuser", "-u", SERVER_USER, "--", *args] if self._as_root else args

    def _psql_exe(self) -> Path:
        own = self.bindir / "psql"
        return own if own.is_file() else Path(shutil.which("psql") or "psql")

    def _run(self, args: list[str], what: str, timeout: float = 60) -> None:
        try:
            proc = subprocess.run(self._as_server_user(args), capture_output=True, text=True,
                                  timeout=timeout, cwd=self.base, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise PostgresError(f"{what} timed out after {timeout:g}s\n{self.log_tail()}") from None
        if proc.returncode != 0:
            raise PostgresError(f"{what} failed ({proc.returncode}): {proc.stdout.strip()} "
                                f"{proc.stderr.strip()}\n{self.log_tail()}")

    def _initdb(self) -> None:
        if self._as_root:
            try:
                pw = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresError(f"running as root needs the '{SERVER_USER}' system user "
                                    "(Debian's postgresql package creates it)") from None
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                   "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")

    def _pg_ctl(self, *args: str) -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), *args], f"pg_ctl {args[0]}")

    def _postmaster_pid(self) -> Optional[int]:
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def _create_db(self) -> None:
        import psycopg
        with psycopg.connect(self.superuser_dsn(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE ROLE {DB_USER} LOGIN")
            conn.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
        if self.schema is not None:
            self.psql(file=self.schema)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for us (our postmaster is reparented to init, so not ours to reap)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True
