"""What went wrong inside an Asterisk process: sanitizer reports, failed assertions, crashes.

The pytest plugin fails a test when :meth:`AsteriskInstance.problems` is not empty at teardown.
Sources read: the ``full`` log, the process's stdout/stderr file, and the AddressSanitizer report
files ``<logdir>/asan.<pid>`` (the helpers point ASan's ``log_path`` there), plus the exit status.
"""
from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

#: Suppressions of libasan's own false positives (each one explained in the file).
ASAN_SUPPRESSIONS = Path(__file__).resolve().parent / "asan.supp"

#: ASan report files are ``<logdir>/<ASAN_LOG_NAME>.<pid>`` (one per process that reported).
ASAN_LOG_NAME = "asan"

#: ASAN_OPTIONS the helpers give an ASan-built Asterisk (and its ``asterisk -rx`` clients), before
#: any ASAN_OPTIONS of the environment (which win) and the per-instance ``log_path``.
#:
#: * ``detect_leaks=0``: an embedded CPython keeps its allocations for the life of the process by
#:   design, and ``core stop now`` ends Asterisk without freeing its own: LeakSanitizer would
#:   report thousands of "leaks" at every exit, burying real reports.
#: * ``halt_on_error=1``: stop at the first report. Asterisk is not built with
#:   ``-fsanitize-recover=address``, so ASan could not go on anyway; and after a memory error
#:   every later report is suspect.
#: * ``abort_on_error=1``: end with SIGABRT instead of ``exit(1)``, so the process is seen to die
#:   by a signal like any other crash (the report itself is what fails the test).
#: * ``disable_coredump=1``: the default on 64-bit, stated: a core of the 20 TB shadow mapping
#:   is useless and slow; the report has the stacks.
#: * ``suppressions``: :data:`ASAN_SUPPRESSIONS`, false positives of the sanitizer runtime only.
#: * ``detect_stack_use_after_return=0``: kept off: its fake stacks would enlarge the frames on
#:   Asterisk's 0.5 MB channel threads, which run an interpreter (recursion depth is sized to them).
ASAN_DEFAULT_OPTIONS: Mapping[str, str] = {
    "detect_leaks": "0",
    "halt_on_error": "1",
    "abort_on_error": "1",
    "disable_coredump": "1",
    "detect_stack_use_after_return": "0",
    "suppressions": str(ASAN_SUPPRESSIONS),
}

#: Text that means a sanitizer found an error (ASan, LeakSanitizer, and ASan's SEGV/stack overflow
#: handler, which reports as "ERROR: AddressSanitizer: SEGV ..." / "... stack-overflow ...").
SANITIZER_MARKERS: tuple[str, ...] = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer")

#: Text of Asterisk's failed assertions: ``__ast_assert_failed`` prints "FRACK!, Failed assertion
#: ..." (ao2 objects with a "bad magic number" or an "invalid object" among them) to stderr and
#: the log, then goes on unless Asterisk was built with DO_CRASH.
ASSERTION_MARKERS: tuple[str, ...] = ("FRACK!", "bad magic number")

#: pjproject's assertion logged by Asterisk 22's res_pjsip unload race on a graceful stop
#: (docs/ASTERISK_SHUTDOWN_ABORT.md).
KNOWN_UNLOAD_RACE_ASSERT = "Assert failed: endpt && rdata"

_FRAME_RE = re.compile(r"^\s*#\d+ ")


@dataclass(frozen=True)
class Problem:
    """One sign of a broken Asterisk: ``kind`` is "sanitizer", "assertion" or "crash"."""

    kind: str
    source: str
    text: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.source}: {self.text}"


def asan_options(logdir: Path, environ: Mapping[str, str] | None = None) -> str:
    """ASAN_OPTIONS for an instance: the defaults, then ``environ``'s, then log_path in ``logdir``."""
    opts = dict(ASAN_DEFAULT_OPTIONS)
    env = os.environ if environ is None else environ
    for item in re.split(r"[:\s]+", env.get("ASAN_OPTIONS", "")):
        if "=" in item:
            key, value = item.split("=", 1)
            opts[key] = value
    opts["log_path"] = str(Path(logdir) / ASAN_LOG_NAME)
    return ":".join(f"{k}={v}" for k, v in opts.items())


@lru_cache(maxsize=32)
def _links_asan(path: str, mtime_ns: int) -> bool:
    with open(path, "rb") as f:
        return b"libasan.so" in f.read()


def links_asan(path: str | Path) -> bool:
    """True if the ELF file at ``path`` names the ASan runtime (built with -fsanitize=address)."""
    p = Path(path).resolve()
    return _links_asan(str(p), p.stat().st_mtime_ns)


def sanitizer_report_summary(text: str, frames_per_stack: int = 8, max_lines: int = 60) -> str:
    """A sanitizer report without its shadow-memory dump: the ERROR line, each section's heading
    ("READ of size ...", "freed by thread ... here:", ...) with its first stack frames, and the
    SUMMARY line."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if any(m in ln for m in SANITIZER_MARKERS)), None)
    if start is None:
        return ""
    picked = [lines[start].strip()]
    frames = 0
    for ln in lines[start + 1:]:
        if "SUMMARY: " in ln:
            picked.append(ln.strip())
            break
        if len(picked) >= max_lines:
            continue
        if _FRAME_RE.match(ln):
            if frames < frames_per_stack:
                picked.append(ln.rstrip())
            frames += 1
        elif ln.strip() and not ln.startswith(" "):
            picked.append(ln.strip())
            frames = 0
    return "\n".join(picked)


def scan_text(text: str, source: str, limit: int = 3) -> list[Problem]:
    """Sanitizer reports and failed assertions found in one file's text (first ``limit`` of each)."""
    found: list[Problem] = []
    if any(m in text for m in SANITIZER_MARKERS):
        found.append(Problem("sanitizer", source, sanitizer_report_summary(text)))
    hits = [ln.strip() for ln in text.splitlines() if any(m in ln for m in ASSERTION_MARKERS)]
    found += [Problem("assertion", source, ln) for ln in hits[:limit]]
    if len(hits) > limit:
        found.append(Problem("assertion", source, f"... and {len(hits) - limit} more"))
    return found


_REPORT_LINES = 400       # lines kept after a sanitizer's ERROR line (the report's stacks)


def scan_file(path: Path, limit: int = 3) -> list[Problem]:
    """:func:`scan_text` of one file, read line by line (logs of long runs can be large): only
    the first sanitizer report and the first ``limit`` assertion lines are kept."""
    report: list[str] = []
    hits: list[str] = []
    extra = 0
    capturing = 0
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return []
    with f:
        for raw in f:
            line = raw.decode("utf-8", "replace")
            if capturing:
                report.append(line)
                capturing -= 1
            elif not report and any(m in line for m in SANITIZER_MARKERS):
                report.append(line)
                capturing = _REPORT_LINES
            if any(m in line for m in ASSERTION_MARKERS):
                if len(hits) < limit:
                    hits.append(line.strip())
                else:
                    extra += 1
    found = [Problem("sanitizer", str(path), sanitizer_report_summary("".join(report)))] if report else []
    found += [Problem("assertion", str(path), ln) for ln in hits]
    if extra:
        found.append(Problem("assertion", str(path), f"... and {extra} more"))
    return found


def scan_files(paths: Iterable[Path]) -> list[Problem]:
    """:func:`scan_file` over the files that exist."""
    found: list[Problem] = []
    for path in paths:
        if Path(path).is_file():
            found += scan_file(Path(path))
    return found


def asan_report_files(logdir: Path) -> list[Path]:
    """``<logdir>/asan.*`` report files, oldest first."""
    return sorted(Path(logdir).glob(ASAN_LOG_NAME + ".*"), key=lambda p: p.stat().st_mtime)


def exit_problem(returncode: int | None) -> Problem | None:
    """A crash if the process ended by a signal other than the helpers' SIGKILL."""
    if returncode is None or returncode >= 0 or returncode == -signal.SIGKILL:
        return None
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return Problem("crash", "exit status", f"Asterisk died by {name} (rc={returncode})")


def is_known_unload_race(returncode: int | None, log_after_graceful_stop: str | None,
                         problems: Iterable[Problem]) -> bool:
    """Asterisk 22's res_pjsip unload race, and nothing else: SIGABRT, pjproject's
    ``endpt && rdata`` assertion logged after a graceful stop was asked for (the race needs
    module unloading), and no sanitizer report or failed Asterisk assertion anywhere."""
    return (returncode == -signal.SIGABRT
            and log_after_graceful_stop is not None
            and KNOWN_UNLOAD_RACE_ASSERT in log_after_graceful_stop
            and not any(p.kind in ("sanitizer", "assertion") for p in problems))
