"""Drive SIPp (Debian ``sip-tester``) as a UAC (:meth:`Sipp.run_uac`) or a background UAS (:class:`SippUas`).

Everything binds to loopback (``-i``/``-mi``/``-ci`` plus ``-bind_local``) and every SIPp file
lands in a work directory; nothing reads stdin and every run has a hard timeout.
"""
from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from . import sipmsg
from .net import port_is_free, require_loopback

SCENARIO_DIR = Path(__file__).with_name("scenarios")

#: Built-in UAS behaviours -> scenario file.
UAS_SCENARIOS = {
    "answer": "uas.xml",
    "busy": "uas_busy.xml",
    "notfound": "uas_notfound.xml",
    "silent": "uas_silent.xml",
}

#: UAC that keys in digits once answered (SIP INFO dtmf-relay): run_uac(scenario=DTMF_UAC,
#: extra_args=dtmf_args("24711")); the hold time counts from the last digit.
DTMF_UAC = SCENARIO_DIR / "uac_dtmf.xml"

_DTMF_DIGITS = frozenset("0123456789*#ABCD")

_EXTRA_HEADERS_LINE = "[pbx_python_extra_headers]"
_HOLD_MARK = "PBXPY_HOLD_MS"


def sipp_binary() -> str:
    """Path of ``sipp`` (env ``SIPP`` overrides); raises FileNotFoundError if absent."""
    exe = os.environ.get("SIPP") or shutil.which("sipp")
    if not exe:
        raise FileNotFoundError("sipp not found (apt-get install sip-tester)")
    return exe


def dtmf_args(digits: str, wait_ms: int = 300) -> list[str]:
    """SIPp arguments for :data:`DTMF_UAC`: send ``digits`` one SIP INFO each, ``wait_ms`` after
    the answer and between two digits."""
    if not digits or any(d not in _DTMF_DIGITS for d in digits):
        raise ValueError(f"bad DTMF digits {digits!r}: one or more of 0-9 * # A-D")
    if wait_ms < 1:
        raise ValueError(f"wait_ms={wait_ms}: at least 1 ms")
    return ["-set", "digits", digits, "-set", "dtmf_wait", str(int(wait_ms))]


def _media_port(host: str) -> int:
    """An even port p with p and p+2 free on ``host`` (SIPp binds audio and video)."""
    for _ in range(200):
        p = random.randrange(30000, 39998, 2)
        if port_is_free(host, p) and port_is_free(host, p + 2):
            return p
    raise RuntimeError(f"no free media port pair on {host}")


def _free_udp(host: str, preferred: int | None = None) -> int:
    if preferred is not None and port_is_free(host, preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _loopback_args(host: str, port: int) -> list[str]:
    return [
        "-i", host, "-p", str(port), "-bind_local",
        "-mi", host, "-mp", str(_media_port(host)),
        "-ci", host, "-cp", str(_free_udp(host)),
        "-nostdin",
    ]


def _stat_counts(csv_text: str) -> dict[str, str]:
    """Last row of a ``-trace_stat`` CSV as ``column -> value``."""
    rows = [r for r in csv_text.splitlines() if r.strip()]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0].split(";"), rows[-1].split(";")))


def _render_uac(template: str, headers: Mapping[str, str], hold_ms: int) -> str:
    lines = []
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n") or "]]>" in value or ":" in name:
            raise ValueError(f"bad extra header {name!r}: {value!r}")
        lines.append(f"{name}: {value}")
    out = []
    for line in template.splitlines(keepends=True):
        if line.strip() == _EXTRA_HEADERS_LINE:
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(f"{indent}{h}\n" for h in lines)
        else:
            out.append(line)
    return "".join(out).replace(_HOLD_MARK, str(int(hold_ms)))


@dataclass
class SippResult:
    """Outcome of one SIPp UAC run."""

    returncode: int | None  # 0 all calls ok, 1 some failed, 255 fatal/global timeout, None killed
    successful: int
    failed: int
    final_status: int | None  # last final INVITE status seen (e.g. 200, 486), None if none
    statuses: dict[str, int]  # Call-ID -> final INVITE status
    messages: str  # the -trace_msg log
    stdout: str
    errors: str  # the -trace_err log
    command: list[str] = field(default_factory=list)
    workdir: Path | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """True if SIPp exited 0 (every call succeeded)."""
        return self.returncode == 0

    def received(self) -> list[str]:
        """Messages SIPp received."""
        return sipmsg.received_messages(self.messages)

    def sent(self) -> list[str]:
        """Messages SIPp sent."""
        return sipmsg.sent_messages(self.messages)

    def __str__(self) -> str:
        return (
            f"SippResult(rc={self.returncode}, successful={self.successful}, failed={self.failed}, "
            f"final_status={self.final_status}, timed_out={self.timed_out}, workdir={self.workdir})"
        )


class Sipp:
    """Factory/runner for SIPp processes whose files go to ``workdir`` (a temp dir if None)."""

    def __init__(self, workdir: str | Path | None = None, binary: str | None = None) -> None:
        self.binary = binary or sipp_binary()
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="pxsipp", dir="/tmp"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count(1)

    def cleanup(self) -> None:
        """Delete the work dir if this runner created it."""
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _rundir(self, kind: str) -> Path:
        d = self.workdir / f"{kind}{next(self._seq)}"
        d.mkdir()
        return d

    def run_uac(
        self,
        target_host: str,
        target_port: int = 5060,
        *,
        local_host: str = "127.0.0.10",
        local_port: int | None = None,
        service: str = "100",
        calls: int = 1,
        rate: float = 10.0,
        concurrent: int | None = None,
        duration_ms: int = 500,
        scenario: str | Path | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
        extra_args: Sequence[str] = (),
    ) -> SippResult:
        """Place ``calls`` calls to ``service@target_host:target_port`` and wait for SIPp to finish.

        The built-in scenario sends INVITE+SDP, accepts optional 100/180/183, ACKs the 200, holds
        ``duration_ms`` (answering a remote BYE) and sends BYE. A 4xx/5xx/6xx is ACKed and counted
        as failed. ``headers`` are added to the INVITE (built-in scenario, or a custom one holding
        a ``[pbx_python_extra_headers]`` line). ``local_port`` None = 5060 if free, else any.
        """
        require_loopback(target_host)
        require_loopback(local_host)
        run = self._rundir("uac")
        src = Path(scenario) if scenario else SCENARIO_DIR / "uac.xml"
        text = src.read_text()
        if headers and _EXTRA_HEADERS_LINE not in text:
            raise ValueError(f"scenario {src} has no {_EXTRA_HEADERS_LINE} line for extra headers")
        scen = run / "uac.xml"
        scen.write_text(_render_uac(text, headers or {}, duration_ms))
        port = local_port if local_port is not None else _free_udp(local_host, 5060)
        files = {n: run / n for n in ("messages.log", "stat.csv", "errors.log", "screen.log", "stdout.txt")}
        cmd = [
            self.binary, f"{target_host}:{target_port}",
            "-sf", str(scen), "-s", service,
            "-m", str(calls), "-r", str(rate), "-d", str(duration_ms),
            *_loopback_args(local_host, port),
            "-timeout", f"{max(1, int(timeout))}s", "-timeout_error",
            "-recv_timeout", f"{max(1, int(timeout))}s",
            "-max_recv_loops", "1000",
            "-trace_msg", "-message_file", str(files["messages.log"]),
            "-trace_stat", "-stf", str(files["stat.csv"]),
            "-trace_err", "-error_file", str(files["errors.log"]),
            "-trace_screen", "-screen_file", str(files["screen.log"]),
        ]
        if concurrent:
            cmd += ["-l", str(concurrent)]
        cmd += list(extra_args)
        timed_out = False
        with open(files["stdout.txt"], "wb") as out:
            proc = subprocess.Popen(cmd, cwd=run, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            try:
                rc: int | None = proc.wait(timeout=timeout + 15)
            except subprocess.TimeoutExpired:
                timed_out = True
                _terminate(proc)
                rc = None
            except BaseException:
                _terminate(proc)   # e.g. Ctrl-C: never leave SIPp running
                raise
        if rc == 255:
            timed_out = True
        read = lambda p: p.read_text(errors="replace") if p.exists() else ""
        messages = read(files["messages.log"])
        stats = _stat_counts(read(files["stat.csv"]))
        statuses = sipmsg.final_invite_statuses(sipmsg.received_messages(messages))
        return SippResult(
            returncode=rc,
            successful=int(stats.get("SuccessfulCall(C)", 0) or 0),
            failed=int(stats.get("FailedCall(C)", 0) or 0),
            final_status=list(statuses.values())[-1] if statuses else None,
            statuses=statuses,
            messages=messages,
            stdout=read(files["stdout.txt"]),
            errors=read(files["errors.log"]),
            command=cmd,
            workdir=run,
            timed_out=timed_out,
        )

    def uas(self, local_host: str, local_port: int = 5060, scenario: str | Path | None = None, trace: bool = True) -> SippUas:
        """A :class:`SippUas` whose files go under this runner's work dir."""
        return SippUas(local_host, local_port, scenario=scenario, trace=trace, workdir=self._rundir("uas"), binary=self.binary)


def run_uac(target_host: str, target_port: int = 5060, **kwargs: object) -> SippResult:
    """:meth:`Sipp.run_uac` with a fresh temp work dir, removed afterwards unless the call
    failed or PBX_PYTHON_KEEP=1 (the result already holds the messages and statistics)."""
    runner = Sipp()
    result = runner.run_uac(target_host, target_port, **kwargs)  # type: ignore[arg-type]
    if result.ok and not os.environ.get("PBX_PYTHON_KEEP"):
        runner.cleanup()
    return result


def _terminate(proc: subprocess.Popen[bytes], grace: float = 3) -> None:
    """SIGTERM then SIGKILL exactly this process."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


class SippUas:
    """A SIPp UAS running in the background (context manager).

    ``scenario``: None/"answer" (180, then 200+SDP; waits ACK and BYE), "busy" (486),
    "notfound" (404), "silent" (100 only; answers a CANCEL), or a path to a scenario file.
    """

    def __init__(
        self,
        local_host: str,
        local_port: int = 5060,
        scenario: str | Path | None = None,
        trace: bool = True,
        workdir: str | Path | None = None,
        binary: str | None = None,
    ) -> None:
        self.host = require_loopback(local_host)
        self.port = local_port
        self.trace = trace
        self.binary = binary or sipp_binary()
        if scenario is None or str(scenario) in UAS_SCENARIOS:
            self.scenario = SCENARIO_DIR / UAS_SCENARIOS[str(scenario or "answer")]
        else:
            self.scenario = Path(scenario)
            if not self.scenario.is_file():
                raise FileNotFoundError(f"no SIPp scenario {scenario!r} (built-ins: {', '.join(UAS_SCENARIOS)})")
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="pxuas", dir="/tmp"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.message_file = self.workdir / "messages.log"
        self.stdout_file = self.workdir / "stdout.txt"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def pid(self) -> int | None:
        """PID of the SIPp process."""
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 10) -> SippUas:
        """Start SIPp and wait until it listens on ``host:port``."""
        if self.proc is not None:
            return self
        if not port_is_free(self.host, self.port):
            raise RuntimeError(f"UDP {self.host}:{self.port} is already in use")
        cmd = [self.binary, "-sf", str(self.scenario), *_loopback_args(self.host, self.port)]
        if self.trace:
            cmd += ["-trace_msg", "-message_file", str(self.message_file)]
        cmd += ["-trace_err", "-error_file", str(self.workdir / "errors.log")]
        self.command = cmd
        with open(self.stdout_file, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while port_is_free(self.host, self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"SIPp UAS did not start (rc={self.returncode}): {self.stdout_file.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.05)
        return self

    def stop(self) -> int | None:
        """SIGTERM then SIGKILL the SIPp process; safe to call twice."""
        if self.proc is not None:
            _terminate(self.proc)
            self.returncode = self.proc.returncode
        return self.returncode

    def cleanup(self) -> None:
        """Stop, and delete the work dir if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SippUas:  # noqa: PYI034
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def messages(self) -> str:
        """The ``-trace_msg`` log so far."""
        try:
            return self.message_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def received_invites(self) -> list[str]:
        """Raw INVITEs received so far (retransmissions removed)."""
        return sipmsg.unique_requests(sipmsg.received_messages(self.messages()), "INVITE")

    def wait_for_invites(self, count: int = 1, timeout: float = 10) -> list[str]:
        """Wait until at least ``count`` INVITEs were received; raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            invites = self.received_invites()
            if len(invites) >= count:
                return invites
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(invites)} INVITE(s) received by {self.host}:{self.port} within {timeout}s, "
                    f"wanted {count}; trace tail:\n{self.messages()[-3000:]}"
                )
            time.sleep(0.05)
