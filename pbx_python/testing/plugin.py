"""pytest plugin: ``asterisk_prefix``, ``asterisk_factory``, ``pbx_python_module``, ``sipp`` and
``postgres`` fixtures, ``--asterisk-prefix``.

Load with ``pytest_plugins = ["pbx_python.testing.plugin"]`` in a top-level conftest, or via a
``pytest11`` entry point. Base dirs of instances are kept (and listed at the end of the run) when
the test failed, an instance had a problem, or ``PBX_PYTHON_KEEP=1``.

A test fails (an error at teardown) when any Asterisk it made shows a problem
(:meth:`AsteriskInstance.problems`): an AddressSanitizer report, a failed Asterisk assertion
(``FRACK!``, "bad magic number"), or death by a signal. Asterisk 22's own res_pjsip unload race on
a graceful stop (docs/ASTERISK_SHUTDOWN_ABORT.md) is reported and the base dir kept, but it does
not fail the test, and only when nothing else is wrong.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .instance import AddressInUseError, AsteriskInstance
from .module import find_module_so
from .net import claim_host, free_loopback_host, release_host
from .sipp import Sipp

if TYPE_CHECKING:
    from .postgres import PrivatePostgres

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
_KEPT = pytest.StashKey[list[str]]()

AsteriskFactory = Callable[..., AsteriskInstance]

#: Instances made by asterisk_factory and not yet torn down: killed (by PID) if pytest exits
#: before their teardown ran, so an interrupted run leaves no Asterisk behind.
_LIVE: set[AsteriskInstance] = set()


@atexit.register
def _kill_leftovers() -> None:
    for inst in list(_LIVE):
        proc = inst.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _sigterm_to_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--asterisk-prefix",
        default=None,
        help="Asterisk install prefix (holding sbin/asterisk) for integration tests; "
        "default: $ASTERISK_PREFIX, contrib/build-asterisk.sh --print, or asterisk on PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs a real Asterisk (and maybe SIPp)")
    config.addinivalue_line("markers", "asterisk_modules(*names): needs these Asterisk modules "
                            "(e.g. app_voicemail): skipped on a user's Asterisk without them")
    config.stash[_KEPT] = []
    # `timeout`, CI cancellations and `kill` send SIGTERM: unwind like Ctrl-C, so fixtures stop
    # their Asterisk processes instead of orphaning them.
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.asterisk_modules("app_voicemail", ...)``: an Asterisk chosen by the user
    (--asterisk-prefix, ASTERISK_PREFIX) that lacks one is a skip with the reason; the project's
    own build (contrib/build-asterisk.sh) must have them all, so there it fails."""
    marker = item.get_closest_marker("asterisk_modules")
    if marker is None:
        return
    prefix, how = find_asterisk_prefix(item.config)
    if prefix is None:
        return                      # the asterisk_prefix fixture skips with its reason
    moddir = prefix / "lib" / "asterisk" / "modules"
    missing = [m for m in marker.args if not (moddir / f"{m}.so").exists()]
    if not missing:
        return
    message = f"the Asterisk at {prefix} ({how}) has no {', '.join(missing)} in {moddir}"
    if how in ("--asterisk-prefix", "ASTERISK_PREFIX", "asterisk on PATH"):
        pytest.skip(message)
    pytest.fail(message + ": rebuild it with contrib/build-asterisk.sh", pytrace=False)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    item.stash.setdefault(_REPORTS, {})[rep.when] = rep


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    kept = config.stash.get(_KEPT, [])
    if kept:
        terminalreporter.section("kept Asterisk base dirs")
        for line in kept:
            terminalreporter.write_line(line)


def _is_prefix(path: Path) -> bool:
    return (path / "sbin" / "asterisk").is_file()


def _repo_roots(config: pytest.Config) -> list[Path]:
    roots = []
    for start in (Path(str(config.rootpath)), Path(__file__).resolve().parent):
        for d in (start, *start.parents):
            if (d / "contrib" / "build-asterisk.sh").is_file():
                roots.append(d)
                break
    return roots


def find_asterisk_prefix(config: pytest.Config) -> tuple[Path | None, str]:
    """(prefix, how it was found) or (None, why not)."""
    tried = []
    opt = config.getoption("--asterisk-prefix", default=None)
    for label, value in (("--asterisk-prefix", opt), ("ASTERISK_PREFIX", os.environ.get("ASTERISK_PREFIX"))):
        if value:  # an explicit choice is never silently replaced by another Asterisk
            p = Path(value)
            if _is_prefix(p):
                return p, label
            return None, f"{label}={value} has no sbin/asterisk"
    for root in _repo_roots(config):
        script = root / "contrib" / "build-asterisk.sh"
        try:
            out = subprocess.run(
                ["bash", str(script), "--print"], capture_output=True, text=True, timeout=120, cwd=root, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            tried.append(f"{script} --print failed: {exc}")
            continue
        lines = out.stdout.strip().splitlines()
        if out.returncode == 0 and lines:
            p = Path(lines[-1])
            if _is_prefix(p) and (p / ".pbx-python-build-ok").exists():
                return p, f"{script} --print"
            tried.append(f"{p} (from {script.name} --print) is not built yet")
    exe = shutil.which("asterisk")
    if exe:
        p = Path(exe).resolve().parent.parent
        if _is_prefix(p):
            return p, "asterisk on PATH"
        tried.append(f"{exe} is not in <prefix>/sbin")
    return None, "no Asterisk found: " + ("; ".join(tried) or "set --asterisk-prefix or ASTERISK_PREFIX")


@pytest.fixture(scope="session")
def asterisk_prefix(pytestconfig: pytest.Config) -> Path:
    """The Asterisk install prefix; skips the test if none is available."""
    prefix, how = find_asterisk_prefix(pytestconfig)
    if prefix is None:
        pytest.skip(how)
    return prefix


@pytest.fixture(scope="session")
def pbx_python_module(asterisk_prefix: Path) -> Path:
    """The pbx_python.so to load (``asterisk_factory(modules=[pbx_python_module])``):
    ``$PBX_PYTHON_MODULE``, the checkout's build, or the one installed in the Asterisk under test;
    fails the test, saying where it looked, when there is none."""
    so, how = find_module_so(asterisk_prefix)
    if so is None:
        pytest.fail(how, pytrace=False)
    return so


@pytest.fixture
def asterisk_factory(request: pytest.FixtureRequest, asterisk_prefix: Path) -> Iterator[AsteriskFactory]:
    """``make(host=None, *, start=False, **AsteriskInstance kwargs) -> AsteriskInstance``.

    ``host=None`` picks a 127.0.0.N whose SIP and AMI ports are free; with ``start=True`` it
    moves on to another address if another process binds the picked one first. Every instance
    is stopped at teardown; its base dir is removed unless the test failed, it had a problem
    (sanitizer report, failed assertion, crash), or PBX_PYTHON_KEEP=1.
    """
    made: list[AsteriskInstance] = []

    def make(host: str | None = None, *, start: bool = False, **kwargs: Any) -> AsteriskInstance:
        kwargs.setdefault("name", f"ast{len(made) + 1}")
        prefix = kwargs.pop("prefix", asterisk_prefix)
        tried: list[str] = []
        for attempt in range(5):
            if host is None:
                pick = free_loopback_host(exclude=[i.host for i in made] + tried, claim=True, shuffle=True)
            else:
                pick = host
                claim_host(pick)           # tells other runs; an explicit address is used anyway
            try:
                inst = AsteriskInstance(prefix, pick, **kwargs)
            except BaseException:
                release_host(pick)
                raise
            made.append(inst)
            _LIVE.add(inst)
            if not start:
                return inst
            try:
                return inst.start()
            except AddressInUseError:
                if host is not None or attempt == 4:
                    raise
                made.remove(inst)          # lost a race for the address: it never served the test
                _LIVE.discard(inst)
                inst.cleanup()
                release_host(pick)
                tried.append(pick)
        raise AssertionError("unreachable")

    yield make

    reports = request.node.stash.get(_REPORTS, {})
    failed = any(r.failed for r in reports.values())
    keep_all = os.environ.get("PBX_PYTHON_KEEP", "") not in ("", "0")
    broken: list[str] = []
    for inst in made:
        inst.stop()
        _LIVE.discard(inst)
        problems = inst.problems()
        known = inst.crashed_by_known_asterisk_bug
        if known:
            line = (f"{request.node.nodeid}: {inst.name} rc={inst.returncode} aborted with the "
                    f"signature of Asterisk's res_pjsip unload race (docs/ASTERISK_SHUTDOWN_ABORT.md;"
                    f" not failing the test; base kept at {inst.base})")
            request.config.stash[_KEPT].append(line)
            print(line)
        if problems:
            broken.append(f"{inst.name} {inst.host} rc={inst.returncode} (base kept at {inst.base}):\n"
                          + "\n".join(f"  {p.kind}: {p.source}: " + p.text.replace("\n", "\n    ")
                                       for p in problems))
        if failed or keep_all or problems or known:
            if not known:
                line = f"{request.node.nodeid}: {inst.name} {inst.host} kept at {inst.base}"
                request.config.stash[_KEPT].append(line)
                print(line)
        else:
            shutil.rmtree(inst.base, ignore_errors=True)
    for host in {inst.host for inst in made}:
        release_host(host)
    if broken:
        pytest.fail("Asterisk went wrong (sanitizer report, failed assertion or crash):\n"
                    + "\n".join(broken), pytrace=False)


@pytest.fixture
def sipp(tmp_path: Path) -> Sipp:
    """A :class:`Sipp` runner whose files go under the test's tmp_path."""
    return Sipp(workdir=tmp_path / "sipp")


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> Iterator["PrivatePostgres"]:
    """A private PostgreSQL (:mod:`pbx_python.testing.postgres`): its own loopback address and
    port, trust auth, database and user ``pbx``, contrib/directory/schema.sql applied. Stopped
    and removed at teardown (its directory, with the server log, kept if the test failed or
    PBX_PYTHON_KEEP=1)."""
    from .postgres import PrivatePostgres
    pg = PrivatePostgres()
    try:
        pg.start()
    except BaseException:
        pg.cleanup(keep=True)
        raise
    yield pg
    reports = request.node.stash.get(_REPORTS, {})
    keep = any(r.failed for r in reports.values()) or \
        os.environ.get("PBX_PYTHON_KEEP", "") not in ("", "0")
    pg.cleanup(keep=keep)
    if keep:
        line = f"{request.node.nodeid}: PostgreSQL {pg.host}:{pg.port} kept at {pg.base}"
        request.config.stash[_KEPT].append(line)
