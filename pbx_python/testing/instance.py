"""A private Asterisk process for tests: its own config/run/log dirs, CLI and log helpers."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from . import configs as cfg
from . import health
from .ami import AmiClient
from .health import Problem
from .net import require_loopback

#: Sub-directories of an instance's base dir.
SUBDIRS = ("etc", "run", "log", "spool", "lib", "db", "cache", "keys", "mods", "data")

#: The voice prompts Debian's asterisk-core-sounds-* packages install (``en``, ``fr``, ...): an
#: instance's ``<astdatadir>/sounds`` points here when it exists (the Makefile installs them).
SYSTEM_SOUNDS = Path("/usr/share/asterisk/sounds")

#: sun_path is 108 bytes on Linux; asterisk.ctl must fit in it.
_SUN_PATH_MAX = 107

#: ``dialplan eval function`` prints exactly "Return Value: <Success|Failure> (<n>)\nResult: <value>\n"
#: and ``asterisk -rx`` passes it through byte for byte: the value is everything between
#: "Result: " and the final newline, newlines and blanks included.
_EVAL_RE = re.compile(rb"^Return Value: (Success|Failure) \((-?\d+)\)\nResult: (.*)\n\Z", re.MULTILINE | re.DOTALL)

#: CLI commands that unload modules on the way out (the only path of Asterisk's known
#: res_pjsip unload race, docs/ASTERISK_SHUTDOWN_ABORT.md).
_GRACEFUL_RE = re.compile(r"^\s*core\s+(stop|restart)\s+(gracefully|when\s+convenient)\b")


class AsteriskError(RuntimeError):
    """Asterisk failed to start, or a helper got an unusable answer from it."""


class AddressInUseError(AsteriskError):
    """Asterisk started but could not bind its AMI or SIP socket: another process (often another
    test run on the same machine) took the address between the check and the bind."""


#: Log lines of a failed bind: AMI (tcptls.c), a PJSIP transport (config_transport.c) and IAX2
#: (chan_iax2's netsock.c; it then falls back to 0.0.0.0, so such an instance must not run).
_BIND_FAILED_RE = re.compile(r"Unable to bind AMI server to \S+: Address already in use"
                             r"|Transport '[^']*' could not be started: Address already in use"
                             r"|Unable to bind to \S+: Address already in use")


def cli_quote(arg: str) -> str:
    """Quote ``arg`` as one Asterisk CLI argument (double quotes; backslash escapes ``\"`` and ``\\``)."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "<unreadable>"
    return data[-limit:].decode("utf-8", "replace")


class AsteriskInstance:
    """One Asterisk process running from ``prefix`` with a private, generated configuration.

    Nothing is started until :meth:`start`. Configuration files can be replaced with
    ``configs={"name.conf": text}`` or :meth:`write_config` before starting.

    If the Asterisk binary is built with AddressSanitizer, the process and its ``asterisk -rx``
    clients run with :data:`health.ASAN_DEFAULT_OPTIONS` (overridable through ``ASAN_OPTIONS`` in
    the environment or ``env``) and write their reports to ``<logdir>/asan.<pid>``.
    """

    def __init__(
        self,
        prefix: str | Path,
        host: str = "127.0.0.1",
        name: str = "ast",
        modules: Sequence[str | Path] = (),
        configs: Mapping[str, str] = {},
        cdr: bool = False,
        cel: bool = False,
        verbose: int = 3,
        debug: int = 0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.host = require_loopback(host)
        self.prefix = Path(prefix).resolve()
        self.name = name
        self.binary = self.prefix / "sbin" / "asterisk"
        if not self.binary.is_file():
            raise FileNotFoundError(f"no asterisk binary at {self.binary}")
        self.sys_moddir = self.prefix / "lib" / "asterisk" / "modules"
        self.sys_datadir = self.prefix / "var" / "lib" / "asterisk"
        self.env = dict(env) if env is not None else None
        self.verbose, self.debug = verbose, debug
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.returncode: int | None = None
        self._out = None
        self._ami: list[AmiClient] = []
        self._graceful_since: int | None = None  # log offset when a graceful stop was asked for
        self.ami_port = 5038
        self.sip_port = 5060

        extra = [Path(so).resolve() for so in modules]
        for src in extra:
            if not src.is_file():
                raise FileNotFoundError(f"extra module {src} does not exist")
        self.asan = health.links_asan(self.binary)
        for src in extra:
            if not self.asan and health.links_asan(src):
                raise AsteriskError(f"{src} is built with -fsanitize=address but {self.binary} is not: "
                                    "load it into the ASan Asterisk (contrib/build-asterisk.sh --asan)")

        self.base = Path(tempfile.mkdtemp(prefix="pxa" + re.sub(r"[^A-Za-z0-9]", "", name)[:6], dir="/tmp"))
        try:
            self._populate(extra, configs, cdr, cel)
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise

    # -- setup ---------------------------------------------------------------------------------

    def _populate(self, extra: Sequence[Path], configs: Mapping[str, str], cdr: bool, cel: bool) -> None:
        """Create the directory tree, the module mirror and the configuration files."""
        for d in SUBDIRS:
            (self.base / d).mkdir()
        self.etc = self.base / "etc"
        self.logdir = self.base / "log"
        self.moddir = self.base / "mods"
        self.spooldir = self.base / "spool"
        self.datadir = self.base / "data"
        self.conf = self.etc / "asterisk.conf"
        ctl = self.base / "run" / "asterisk.ctl"
        if len(str(ctl)) > _SUN_PATH_MAX:
            raise ValueError(f"control socket path too long for sun_path: {ctl}")

        present = self._mirror_modules(extra)
        self._mirror_data()
        dirs = {
            "astetcdir": self.etc,
            "astmoddir": self.moddir,
            "astvarlibdir": self.base / "lib",
            "astdbdir": self.base / "db",
            "astkeydir": self.base,  # res_crypto appends "/keys"
            "astdatadir": self.datadir,
            "astagidir": self.datadir / "agi-bin",
            "astspooldir": self.spooldir,
            "astrundir": self.base / "run",
            "astlogdir": self.logdir,
            "astcachedir": self.base / "cache",
            "astsbindir": self.prefix / "sbin",
        }
        self.conf.write_text(cfg.asterisk_conf(dirs, self.verbose, self.debug))
        defaults = {
            "logger.conf": cfg.logger_conf(),
            "modules.conf": cfg.modules_conf(present),
            "cdr.conf": cfg.cdr_conf(cdr),
            "cel.conf": cfg.cel_conf(cel),
            "manager.conf": cfg.manager_conf(self.host, self.ami_port),
            "http.conf": cfg.http_conf(),
            "pjsip.conf": cfg.pjsip_conf(self.host, self.sip_port),
            "extensions.conf": cfg.extensions_conf(),
            "rtp.conf": cfg.rtp_conf(self.host),
        }
        defaults.update(configs)
        for fname, text in defaults.items():
            self.write_config(fname, text)

    def _mirror_modules(self, extra: Sequence[Path]) -> set[str]:
        names: set[str] = set()
        if self.sys_moddir.is_dir():
            for so in sorted(self.sys_moddir.glob("*.so")):
                (self.moddir / so.name).symlink_to(so)
                names.add(so.name)
        for src in extra:
            dst = self.moddir / src.name
            dst.unlink(missing_ok=True)
            dst.symlink_to(src)
            names.add(src.name)
        return names

    def _mirror_data(self) -> None:
        """``data/``: the prefix's data dir entries as symlinks (documentation, keys, ...), except
        ``sounds``, which is :data:`SYSTEM_SOUNDS` when installed. A private, writable dir, so
        what a module keeps under astdatadir stays with the instance."""
        if self.sys_datadir.is_dir():
            for entry in sorted(self.sys_datadir.iterdir()):
                if entry.name != "sounds":
                    (self.datadir / entry.name).symlink_to(entry)
        sounds = SYSTEM_SOUNDS if SYSTEM_SOUNDS.is_dir() else self.sys_datadir / "sounds"
        (self.datadir / "sounds").symlink_to(sounds)

    def write_config(self, name: str, text: str) -> Path:
        """Write ``etc/<name>`` (replacing the default); effective at start or on reload."""
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"bad config file name {name!r}")
        if name == "asterisk.conf":
            raise ValueError("asterisk.conf is generated; pass verbose/debug instead")
        path = self.etc / name
        path.write_text(text)
        return path

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the started process has not exited."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def stdout_path(self) -> Path:
        """File receiving the process's stdout and stderr."""
        return self.logdir / "stdout.txt"

    def _popen_env(self) -> dict[str, str] | None:
        if self.env is None and not self.asan:
            return None
        merged = dict(os.environ)
        merged.update(self.env or {})
        if self.asan:
            merged["ASAN_OPTIONS"] = health.asan_options(self.logdir, merged)
        return merged

    def start(self, timeout: float = 60) -> AsteriskInstance:
        """Start Asterisk and wait until it is fully booted; raises AsteriskError on failure."""
        if self.proc is not None:
            if self.running:
                return self
            raise AsteriskError(f"{self.name}: already started once (exited rc={self.returncode}); make a new instance")
        self._out = open(self.stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(self.binary), "-f", "-n", "-g", "-C", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=self.base,
            env=self._popen_env(),
            start_new_session=True,
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                self._close_out()
                raise AsteriskError(self._failure_text(f"exited during startup with rc={self.returncode}"))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop(timeout=5)
                raise AsteriskError(self._failure_text(f"not fully booted after {timeout}s (last CLI answer {last!r})"))
            try:
                last = self._rx("core waitfullybooted", timeout=min(remaining, 10))
            except subprocess.TimeoutExpired:
                continue
            if "fully booted" in last:
                failed = _BIND_FAILED_RE.search(self.log_text())
                if failed:
                    self.stop(timeout=5)
                    raise AddressInUseError(self._failure_text(f"could not bind on {self.host}: {failed.group(0)}"))
                return self
            time.sleep(0.1)

    def _failure_text(self, what: str) -> str:
        return (
            f"Asterisk {self.name} ({self.base}) {what}\n"
            f"--- {self.stdout_path} (tail) ---\n{_tail(self.stdout_path)}\n"
            f"--- {self.log_path} (tail) ---\n{_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 20, graceful: bool = False) -> int | None:
        """Stop with ``core stop now`` (``graceful``: ``core stop gracefully`` first), then SIGKILL
        our own PID. Returns the exit code.

        ``core stop now`` does not unload modules. A graceful stop does, and res_pjsip's unload in
        Asterisk 22 can corrupt the heap when SIP traffic (a peer's qualify) arrives meanwhile
        (docs/ASTERISK_SHUTDOWN_ABORT.md), so only tests about unloading should ask for it.
        """
        for client in self._ami:
            client.close()
        self._ami.clear()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            deadline = time.monotonic() + timeout
            steps = (("core stop gracefully", 0.5), ("core stop now", 1.0)) if graceful else \
                (("core stop now", 1.0),)
            if graceful and self._graceful_since is None:
                self._graceful_since = self.log_offset()
            for cmd, share in steps:
                try:
                    self._rx(cmd, timeout=max(1.0, min(5.0, deadline - time.monotonic())))
                except (subprocess.TimeoutExpired, OSError):
                    pass
                wait_until = time.monotonic() + max(0.5, (deadline - time.monotonic()) * share)
                try:
                    proc.wait(timeout=max(0.1, wait_until - time.monotonic()))
                    break
                except subprocess.TimeoutExpired:
                    continue
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)  # exactly the process we started
                proc.wait()
        if proc is not None:
            self.returncode = proc.returncode
        self._close_out()
        return self.returncode

    @property
    def crashed(self) -> bool:
        """True if the process ended by a signal other than our SIGKILL (e.g. SIGSEGV/SIGABRT)."""
        return health.exit_problem(self.returncode) is not None

    @property
    def crashed_by_known_asterisk_bug(self) -> bool:
        """Aborted with the signature of Asterisk 22's res_pjsip unload race, and only that:
        SIGABRT (glibc's heap checks), pjproject's ``Assert failed: endpt && rdata`` logged after a
        graceful stop was asked for (a SIP message handled after the SIP endpoint was destroyed
        while modules unloaded), and no sanitizer report or Asterisk assertion anywhere. It
        happens without pbx_python loaded too (docs/ASTERISK_SHUTDOWN_ABORT.md)."""
        after = None if self._graceful_since is None else self.log_text(self._graceful_since)
        return health.is_known_unload_race(self.returncode, after, self._report_problems())

    def _report_problems(self) -> list[Problem]:
        return health.scan_files([self.log_path, self.stdout_path, *health.asan_report_files(self.logdir)])

    def problems(self) -> list[Problem]:
        """Everything that says this Asterisk went wrong: AddressSanitizer/LeakSanitizer reports
        (``<logdir>/asan.*``, stdout, log), failed assertions (``FRACK!``, "bad magic number"),
        and death by a signal other than the helpers' own SIGKILL. Asterisk's known unload race
        (:attr:`crashed_by_known_asterisk_bug`) is not listed. Call after :meth:`stop`."""
        found = self._report_problems()
        crash = health.exit_problem(self.returncode)
        if crash is not None and not self.crashed_by_known_asterisk_bug:
            found.append(crash)
        return found

    def _close_out(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def cleanup(self) -> None:
        """Stop if needed and delete the base directory."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> AsteriskInstance:  # noqa: PYI034
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<AsteriskInstance {self.name} {self.host} pid={self.pid} base={self.base}>"

    # -- CLI -----------------------------------------------------------------------------------

    def _rx_bytes(self, cmd: str, timeout: float) -> bytes:
        if self._graceful_since is None and _GRACEFUL_RE.match(cmd):
            self._graceful_since = self.log_offset()
        res = subprocess.run(
            [str(self.binary), "-C", str(self.conf), "-rx", cmd],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=self._popen_env(),
            check=False,
        )
        return res.stdout

    def _rx(self, cmd: str, timeout: float) -> str:
        return self._rx_bytes(cmd, timeout).decode("utf-8", "replace")

    def cli(self, cmd: str, timeout: float = 15) -> str:
        """Run one CLI command via ``asterisk -rx`` and return its output (the exit code is always 0).

        Asterisk splits the command on blanks: quote arguments holding spaces with :func:`cli_quote`.
        """
        if not self.running:
            raise AsteriskError(f"{self.name} is not running (cli {cmd!r})")
        return self._rx(cmd, timeout)

    def cli_lines(self, cmd: str, timeout: float = 15) -> list[str]:
        """:meth:`cli` output split into non-empty lines."""
        return [ln for ln in self.cli(cmd, timeout).splitlines() if ln.strip()]

    def originate_local(
        self,
        exten: str,
        context: str,
        *,
        app: str | None = None,
        data: str = "",
        extension: str | None = None,
        timeout: float = 15,
    ) -> str:
        """``channel originate Local/<exten>@<context>`` to ``application <app> <data>`` or
        ``extension <extension>`` (``exten@context``). Asynchronous; returns the CLI output."""
        chan = f"Local/{exten}@{context}"
        if app:
            cmd = f"channel originate {chan} application {app}"
            if data:
                cmd += " " + cli_quote(data)
        elif extension:
            cmd = f"channel originate {chan} extension {extension}"
        else:
            raise ValueError("originate_local needs app= or extension=")
        return self.cli(cmd, timeout)

    def eval_function(self, expr: str, timeout: float = 15) -> str | None:
        """Evaluate ``FUNC(args)`` with ``dialplan eval function``; the value, or None if it failed.

        The value is returned exactly: newlines, carriage returns, leading and trailing blanks
        included. Bytes that are not UTF-8 come back as surrogate escapes
        (``value.encode("utf-8", "surrogateescape")`` gives the bytes Asterisk returned).
        Asterisk substitutes ``${...}`` in ``expr`` on a dummy channel first; its result buffer
        is 1024 bytes (longer values are cut by Asterisk).
        """
        if not self.running:
            raise AsteriskError(f"{self.name} is not running (eval_function {expr!r})")
        out = self._rx_bytes(f"dialplan eval function {cli_quote(expr)}", timeout)
        m = _EVAL_RE.search(out)
        if not m:
            raise AsteriskError(f"unexpected 'dialplan eval function' output: {out!r}")
        return m.group(3).decode("utf-8", "surrogateescape") if m.group(1) == b"Success" else None

    # -- logs ----------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """The ``full`` log file (notice, warning, error, verbose, debug, dtmf)."""
        return self.logdir / cfg.FULL_LOG

    def run_local(self, exten: str, context: str = "default", marker: str = "RESULT",
                  timeout: float = 10, app: str = "Wait 1") -> str:
        """Originate ``Local/<exten>@<context>`` (the other side runs ``app``) and return the first
        ``app_verbose`` line starting with ``marker`` that *this* call logs.

        The call is recognised by its call id (``[C-...]``) from its first priority, so a line a
        previous call is still logging (e.g. from its ``h`` extension) is never taken for it.
        Needs verbose level 3 (the ``Executing`` lines).
        """
        since = self.log_offset()
        self.cli(f"channel originate Local/{exten}@{context} application {app}")
        call = self.wait_for_log(rf"\]\[(C-[0-9a-f]+)\] pbx\.c: Executing \[{re.escape(exten)}@"
                                 rf"{re.escape(context)}:1\]", timeout=timeout, since=since).group(1)
        return self.wait_for_log(rf"\]\[{call}\] app_verbose\.c: ({marker}\b.*)$", timeout=timeout,
                                 since=since).group(1)

    def log_offset(self) -> int:
        """Current size of the full log, for ``since=``."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        """Full log text from byte offset ``since``."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 10, since: int = 0) -> re.Match[str]:
        """Wait until regex ``pattern`` (MULTILINE if given as str) matches the log after ``since``."""
        rx = re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text(since)
            m = rx.search(text)
            if m:
                return m
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{rx.pattern!r} not found in {self.log_path} within {timeout}s; log tail:\n{text[-3000:]}"
                )
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"Asterisk exited (rc={self.proc.returncode}) while waiting for {rx.pattern!r}; "
                    f"log tail:\n{text[-3000:]}"
                )
            time.sleep(0.05)

    # -- AMI / process -------------------------------------------------------------------------

    def ami(self, user: str = "test", secret: str = "test", timeout: float = 10) -> AmiClient:
        """A logged-in :class:`AmiClient`; closed automatically by :meth:`stop`."""
        client = AmiClient(self.host, self.ami_port, user, secret, timeout=timeout)
        self._ami.append(client)
        return client

    def rss_kb(self) -> int:
        """Resident set size of the Asterisk process in kB (VmRSS)."""
        if self.pid is None:
            raise AsteriskError("not started")
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AsteriskError("VmRSS not found")

