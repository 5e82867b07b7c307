"""The Python side of pbx_python.so: the callbacks the C trampolines call.

bind() runs once, inside Asterisk, when the module starts Python. Each callback catches every
exception itself: a Python error becomes a log entry with its traceback and a defined result, and
never propagates into Asterisk.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import asterisk as ast
from . import config as config_mod
from . import loader, logbridge, metrics, signals
from . import switches as switches_mod
from .channel import CallChannel, Channel
from .values import NUL_MESSAGE, value_bytes
from .registry import AppSpec, CliSpec, FuncSpec, Registry, Stats


class ShowUsage(Exception):
    """Raised by a CLI handler to make Asterisk print the command's usage."""


class DialplanError(Exception):
    """Bad input from the dialplan: logged as a WARNING with its message only (no traceback).

    An application raising it sets PYTHON_ERROR and ends as configured by on_exception; a
    function raising it fails the read or write.
    """


@dataclass
class State:
    registry: Registry = field(default_factory=Registry)
    builtin: Registry = field(default_factory=Registry)
    config: config_mod.Config = field(default_factory=config_mod.Config)
    stats: dict[str, Stats] = field(default_factory=dict)
    modules: list[loader.ModuleStatus] = field(default_factory=list)
    last_load: str = "never"
    loaded_at: float = 0.0
    load_lock: threading.Lock = field(default_factory=threading.Lock)


state = State()
_tls = threading.local()   # keeps CLI output alive until the trampoline has copied it
_ffi: Any = None
_lib: Any = None


def current_config() -> config_mod.Config:
    return state.config


def _stats(name: str) -> Stats:
    st = state.stats.get(name)
    if st is None:
        st = state.stats.setdefault(name, Stats())
    return st


# PYTHON_ERROR holds at most this many characters; a longer summary is cut and ends with
# PYTHON_ERROR_CUT. The log keeps the whole traceback up to LOG_TEXT_MAX bytes (Asterisk's own
# logger cuts an entry at 8 kB): a longer one keeps its beginning and its end, with a marker.
PYTHON_ERROR_MAX = 1024
PYTHON_ERROR_CUT = " [...]"
LOG_TEXT_MAX = 7000


def _safe(fn: Callable[[], str], fallback: str) -> str:
    """fn() or, if it raises anything at all (a user's __str__ may), fallback."""
    try:
        text = fn()
        return text if isinstance(text, str) else fallback
    except BaseException:  # noqa: BLE001 - formatting an error must never fail
        return fallback


def _type_name(exc_type: Any) -> str:
    return _safe(lambda: str(exc_type.__name__), "BaseException")


def sanitize(text: str, limit: Optional[int] = None) -> str:
    """Text any C string can hold as valid UTF-8: NUL shown as \\0, lone surrogates (anywhere in
    U+D800-U+DFFF) as \\udXXX escapes; cut to `limit` characters, marked, when longer."""
    text = text.replace("\0", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(text) > limit:
        text = text[:limit - len(PYTHON_ERROR_CUT)] + PYTHON_ERROR_CUT
    return text


def _clip_log(text: str) -> str:
    data = text.encode("utf-8")
    if len(data) <= LOG_TEXT_MAX:
        return text
    half = LOG_TEXT_MAX // 2
    return (data[:half].decode("utf-8", "ignore")
            + f"\n[... {len(data) - 2 * half} bytes of this traceback left out ...]\n"
            + data[-half:].decode("utf-8", "ignore"))


def describe_exception(exc_type: Any, exc: Any, tb: Any) -> tuple[str, str]:
    """(the traceback for the log, the one-line summary "Type: message") of any exception,
    whatever its __str__ or __repr__ do; both sanitized."""
    name = _type_name(exc_type)
    summary = _safe(lambda: "".join(traceback.format_exception_only(exc_type, exc)).strip(),
                    f"{name}: <the exception's message could not be formatted>")
    text = _safe(lambda: "".join(traceback.format_exception(exc_type, exc, tb)).rstrip(), "")
    if not text:
        frames = _safe(lambda: "".join(traceback.format_tb(tb)), "")
        text = f"Traceback (most recent call last):\n{frames}{summary}"
    return _clip_log(sanitize(text)), sanitize(summary, PYTHON_ERROR_MAX)


def _log_exception(kind: str, name: str, chan: Optional[Channel]) -> str:
    """Log the exception being handled; return the summary for PYTHON_ERROR. Never raises."""
    exc_type, exc, tb = sys.exc_info()
    if isinstance(exc, DialplanError):   # bad dialplan input: its message only
        message = sanitize(_safe(lambda: str(exc), "<unprintable message>"))
        ast.log(ast.LOG_WARNING, f"{name}: {message}")
        return sanitize(f"{_type_name(exc_type)}: {message}", PYTHON_ERROR_MAX)
    text, summary = describe_exception(exc_type, exc, tb)
    try:
        where = ""
        if chan is not None:
            where = _safe(lambda: f" on {chan.name}", "")
        try:
            frame = traceback.extract_tb(tb)[-1] if tb else None
        except BaseException:  # noqa: BLE001
            frame = None
        ast.log(ast.LOG_ERROR, f"Python {kind} {name}{where} raised an exception:\n{text}",
                frame.filename if frame else "python", (frame.lineno or 0) if frame else 0,
                frame.name if frame else "")
    except BaseException:  # noqa: BLE001 - last resort: the entry must still return its result
        ast.log(ast.LOG_ERROR, f"Python {kind} {name} raised {summary} (the traceback could not "
                "be logged)")
    return summary


def _failed(kind: str, name: str, chan: Optional[Channel]) -> None:
    """Log the exception being handled and set PYTHON_ERROR on the channel, if any (after the
    assignments the code made before it raised, which are applied too)."""
    summary = _log_exception(kind, name, chan)
    if chan is not None:
        chan._pending += f"PYTHON_ERROR\0{summary}\0"    # sanitized: no NUL, no surrogate


def _safe_repr(value: Any) -> str:
    text = _safe(lambda: repr(value), f"<{_type_name(type(value))} object>")
    return sanitize(text, 200)


# ---- the hot path: entries the C trampolines call ----
#
# One entry callable per registered name, called by the C trampoline through the C API as
# entry(call_address, channel_address_or_None, [value,] *arguments). An entry returns its result
# (an application: int; a function read: bytes, or None when the read failed; a write: int) or,
# when the Python code left variable assignments for C to apply, (result, b"name\0value\0...").
# The C side looks entries up by name in these dicts (application names in lower case), which
# each load updates in place: a channel running an entry while a reload happens finishes with it.
#
# Every entry catches BaseException from the user's code (SystemExit, KeyboardInterrupt, ... are
# a bug of one call, not a reason to stop Asterisk), and ends its Channel in a finally: nothing
# can use the channel's address after the entry returned.

Entry = Callable[..., Any]
APP_ENTRIES: dict[str, Entry] = {}
FUNC_READ_ENTRIES: dict[str, Entry] = {}
FUNC_WRITE_ENTRIES: dict[str, Entry] = {}
SWITCH_ENTRIES: dict[str, Entry] = {}     # key: "<switch>/<pattern>"

INT_MIN, INT_MAX = -2**31, 2**31 - 1


def app_result(res: Any, name: str, kind: str = "application") -> int:
    """An application's return value as Asterisk's int result (README: "Values")."""
    if res is None:
        return 0
    if isinstance(res, int) and not isinstance(res, bool):
        res = int.__int__(res)     # the number itself: an int subclass's own methods are not used
        if INT_MIN <= res <= INT_MAX:
            return res
        raise ValueError(f"{kind} {name} returned {res}, outside the range of a C int; "
                         "expected None or 0 (continue), -1 (hang up)")
    raise TypeError(f"{kind} {name} returned {_safe_repr(res)}; expected None or 0 "
                    "(continue), -1 (hang up)")


def read_result(value: Any, name: str) -> bytes:
    """A function's return value as the bytes of the value it reads (README: "Values")."""
    if type(value) is str and "\0" not in value:
        try:
            return value.encode("utf-8", "surrogateescape")   # the common case
        except UnicodeEncodeError:
            pass                                               # value_bytes says why
    if value is None:
        return b""
    try:
        return value_bytes(value, f"the value of function {name}")
    except TypeError:
        raise TypeError(f"function {name} returned {_safe_repr(value)}: a function returns str, "
                        "bytes, int, float, bool or None") from None
    except ValueError as exc:
        if NUL_MESSAGE in str(exc):
            raise ValueError(f"function {name} returned a value with a NUL character, which "
                             "Asterisk cannot hold") from None
        raise


def _app_entry(spec: AppSpec) -> Entry:
    handler, stats, name = spec.handler, spec.stats, spec.name

    def entry(call: int, chan_addr: int, *args: str) -> Any:
        chan = CallChannel(chan_addr, call)
        stats.calls += 1
        try:
            try:
                # one argument is the common case: no list and tuple built to spread *args
                res = handler(chan, args[0]) if len(args) == 1 else handler(chan, *args)
                if res is None:
                    res = 0
                elif type(res) is not int or not INT_MIN <= res <= INT_MAX:
                    res = app_result(res, name)
            except BaseException:  # noqa: BLE001 - mapped to a defined result below
                stats.errors += 1
                _failed("application", name, chan)
                res = -1 if state.config.on_exception == "hangup" else 0
            if chan._pending:
                return res, chan._take_pending()
            return res
        finally:
            chan._gone = True     # nothing may use the channel's address any more

    return entry


def _called_name(call: int) -> str:
    """The name the dialplan used (as registered with Asterisk), read from the C call."""
    return ast.decode(_ffi.string(_ffi.cast("struct pyast_call *", call).name))


def _removed_app_entry() -> Entry:
    def entry(call: int, chan_addr: int, *args: str) -> int:
        name = _called_name(call)
        ast.log(ast.LOG_ERROR, f"Application {name} is no longer provided by any Python module "
                "(it was removed by a reload); the channel hangs up")
        _stats(name).errors += 1
        return -1

    return entry


def _func_read_entry(spec: FuncSpec) -> Entry:
    reader, stats, name = spec.reader, spec.stats, spec.name

    def entry(call: int, chan_addr: Optional[int], *args: str) -> Any:
        chan = CallChannel(chan_addr, call) if chan_addr is not None else None
        stats.calls += 1
        try:
            try:
                value = reader(chan, args[0]) if len(args) == 1 else reader(chan, *args)
                if type(value) is str and value.isascii() and "\0" not in value:
                    data: Optional[bytes] = value.encode("ascii")   # the common case
                else:
                    data = read_result(value, name)
            except BaseException:  # noqa: BLE001 - the read fails with a log line
                stats.errors += 1
                _failed("function", name, chan)
                data = None
            if chan is not None and chan._pending:
                return data, chan._take_pending()
            return data
        finally:
            if chan is not None:
                chan._gone = True

    return entry


def _func_write_entry(spec: FuncSpec) -> Entry:
    writer, stats, name = spec.writer, spec.stats, spec.name
    assert writer is not None

    def entry(call: int, chan_addr: Optional[int], value: str, *args: str) -> Any:
        chan = CallChannel(chan_addr, call) if chan_addr is not None else None
        stats.calls += 1
        try:
            try:
                writer(chan, value, *args)
                res = 0
            except BaseException:  # noqa: BLE001
                stats.errors += 1
                _failed("function write", name, chan)
                res = -1
            if chan is not None and chan._pending:
                return res, chan._take_pending()
            return res
        finally:
            if chan is not None:
                chan._gone = True

    return entry


def _switch_entry(spec: Any) -> Entry:
    """A switch extension's body: entry(call, chan, exten, context) -> int. The C side picked
    the extension from its table; an exception hangs the call up (-1) after logging."""
    handler, stats, key = spec.handler, spec.stats, spec.key

    def entry(call: int, chan_addr: int, exten: str, context: str) -> Any:
        chan = CallChannel(chan_addr, call)
        stats.calls += 1
        try:
            try:
                res = handler(chan, exten)
                if res is None:
                    res = 0
                elif type(res) is not int or not INT_MIN <= res <= INT_MAX:
                    res = app_result(res, key, "switch extension")
            except BaseException:  # noqa: BLE001 - mapped to a defined result below
                stats.errors += 1
                _failed("switch extension", f"{key} ({exten}@{context})", chan)
                res = -1
            if chan._pending:
                return res, chan._take_pending()
            return res
        finally:
            chan._gone = True

    return entry


def _removed_switch_entry(key: str) -> Entry:
    def entry(call: int, chan_addr: int, exten: str, context: str) -> int:
        ast.log(ast.LOG_ERROR, f"Switch extension {key} ({exten}@{context}) is no longer provided "
                "by any Python module (a reload removed it while the call was looked up); the "
                "channel hangs up")
        _stats(f"switch:{key}").errors += 1
        return -1

    return entry


def _refused_func_entry(name: str, why: str, result: Any) -> Entry:
    def entry(call: int, chan_addr: Optional[int], *args: str) -> Any:
        ast.log(ast.LOG_ERROR, f"Function {name} {why}")
        _stats(name).errors += 1
        return result

    return entry


def _update_entries(registry: Registry) -> None:
    """Point every name at the new code; names a reload removed answer with an error."""
    apps = {key: _removed_app_entry() for key in APP_ENTRIES}
    apps.update({key: _app_entry(spec) for key, spec in registry.apps.items()})
    reads = {name: _refused_func_entry(name, "is no longer provided by any Python module "
                                       "(it was removed by a reload)", None)
             for name in FUNC_READ_ENTRIES}
    writes = {name: _refused_func_entry(name, "is no longer provided by any Python module: "
                                        "write refused", -1)
              for name in FUNC_WRITE_ENTRIES}
    for name, fspec in registry.functions.items():
        reads[name] = _func_read_entry(fspec)
        writes[name] = (_func_write_entry(fspec) if fspec.writer is not None else
                        _refused_func_entry(name, "is read-only: write refused", -1))
    switch_entries = {key: _removed_switch_entry(key) for key in SWITCH_ENTRIES}
    for sw in registry.switches.values():
        for spec in sw.extensions.values():
            switch_entries[spec.key] = _switch_entry(spec)
    # dict.update with str keys runs without releasing the GIL: a trampoline sees old or new
    SWITCH_ENTRIES.update(switch_entries)
    APP_ENTRIES.update(apps)
    FUNC_READ_ENTRIES.update(reads)
    FUNC_WRITE_ENTRIES.update(writes)


# ---- CLI ----

def on_cli(command: Any, argc: int, argv: Any, out: Any) -> int:
    cmd = _ffi.string(command).decode("utf-8", "surrogateescape")
    spec: Optional[CliSpec] = state.builtin.clis.get(cmd) or state.registry.clis.get(cmd)
    if spec is None:
        text, res = f"'{cmd}' is no longer provided by any Python module\n", 2
    else:
        args = [_ffi.string(argv[i]).decode("utf-8", "surrogateescape") for i in range(argc)]
        try:
            text, res = spec.handler(args), 0
            if text is None:
                text = ""
            elif not isinstance(text, str):
                raise TypeError(f"CLI command handler returned {_safe_repr(text)}; expected a str "
                                "or None")
            text = str.__str__(text)   # the plain string: a subclass's own methods are not used
        except ShowUsage:
            text, res = "", 1
        except BaseException:  # noqa: BLE001 - a CLI command's bug must not reach Asterisk
            _log_exception("CLI command", cmd, None)
            text, res = "Error: the command failed; see the Asterisk log\n", 2
    if text:
        buf = _ffi.from_buffer(ast.output(text if text.endswith("\n") else text + "\n") + b"\0")
        out.text = buf
        _tls.keep = [buf]
    return res


# ---- metrics ----

def on_metrics(out: Any) -> None:
    """A res_prometheus scrape: every metric held in pbx_python.metrics, as text."""
    try:
        text = metrics.render()
    except BaseException:  # noqa: BLE001 - a broken metric must not break the scrape
        _log_exception("Metrics", "scrape", None)
        return
    if text:
        buf = _ffi.from_buffer(ast.output(text) + b"\0")
        out.text = buf
        _tls.keep = [buf]


# ---- load, reload, shutdown ----

def on_load(items: Any, nitems: int, reload: int) -> int:
    triples = [(_ffi.string(items[i].category).decode("utf-8", "surrogateescape"),
                _ffi.string(items[i].name).decode("utf-8", "surrogateescape"),
                _ffi.string(items[i].value).decode("utf-8", "surrogateescape"))
               for i in range(nitems)]
    with state.load_lock:
        return _load(triples, bool(reload))


def _load(triples: list[tuple[str, str, str]], reload: bool) -> int:
    what = "reload" if reload else "load"
    try:
        config = config_mod.parse(triples)
    except config_mod.ConfigError as exc:
        state.last_load = f"{what} failed at {time.strftime('%Y-%m-%d %H:%M:%S')}: {exc}"
        ast.log(ast.LOG_ERROR, f"pbx_python.conf: {exc}; "
                + ("the running Python code stays in service" if reload else "no Python module loaded"))
        return -1
    if reload and config.python != state.config.python:
        ast.log(ast.LOG_WARNING, "pbx_python.conf: a changed 'python' setting takes effect only "
                "when Asterisk restarts")
    result = loader.load_modules(config, all_or_nothing=reload)
    for failure in result.failures():
        ast.log(ast.LOG_ERROR, f"Python module {failure.name} failed to {what}:\n"
                f"{failure.traceback.rstrip()}")
    _log_unload_errors(result.unload_errors)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    if reload and not result.ok:
        names = ", ".join(f.name for f in result.failures())
        state.last_load = f"reload failed at {stamp} ({names}); previous code kept"
        ast.log(ast.LOG_ERROR, f"pbx_python reload failed ({names}): the previous Python code "
                "stays in service")
        return -1
    for spec in (*result.registry.apps.values(), *result.registry.functions.values()):
        spec.stats = _stats(spec.name)
    for sw in result.registry.switches.values():
        for ext in sw.extensions.values():
            ext.stats = _stats(f"switch:{ext.key}")
    state.config = config
    _update_entries(result.registry)     # before registering: a new name has its entry at once
    _register_with_asterisk(result.registry)
    _load_switch_table(result.registry)
    previous, state.registry = state.registry, result.registry
    if reload:   # the new code is in service: the old generation may stop what it started
        _log_unload_errors(loader.run_unload_hooks(previous.unload_hooks, "reload"))
    state.modules = result.modules
    state.loaded_at = time.time()
    failed = len(result.failures())
    state.last_load = (f"{what} at {stamp}: {len(result.modules) - failed} module(s) ok"
                       + (f", {failed} failed" if failed else ""))
    ast.log(ast.LOG_NOTICE, f"pbx_python {what}: {len(result.registry.apps)} application(s), "
            f"{len(result.registry.functions)} function(s), "
            f"{len(result.registry.switches)} switch(es) from "
            f"{', '.join(m.name for m in result.modules if m.ok) or 'no module'}"
            + (f"; {failed} module(s) failed" if failed else ""))
    return -1 if failed else 0


def _register_with_asterisk(registry: Registry) -> None:
    for spec in registry.apps.values():
        description = spec.description
        if spec.syntax:
            description = f"Syntax: {spec.syntax}\n\n{description}"
        if spec.arguments:
            description = f"{description}\n\nArguments:\n{spec.arguments}"
        if ast.register_app(spec.name, spec.synopsis, description) < 0:
            ast.log(ast.LOG_ERROR, f"Cannot register application {spec.name} (from {spec.module}): "
                    "the name is taken by another module")
    for fspec in registry.functions.values():
        if ast.register_function(fspec.name, fspec.synopsis, fspec.syntax, fspec.arguments,
                                 fspec.description, fspec.seealso) < 0:
            ast.log(ast.LOG_ERROR, f"Cannot register function {fspec.name} (from {fspec.module}): "
                    "the name is taken by another module")
    for cspec in registry.clis.values():
        if ast.register_cli(cspec.command, cspec.summary, cspec.usage) < 0:
            ast.log(ast.LOG_ERROR, f"Cannot register CLI command '{cspec.command}'")


def _load_switch_table(registry: Registry) -> None:
    """Hand Asterisk the switches' table in one call; it replaces the previous one at once."""
    if ast.switch_load(switches_mod.pack(registry.switches)) < 0:
        ast.log(ast.LOG_ERROR, "pbx_python: the switch table could not be built (out of memory?); "
                "the previous one stays in service")


def _log_unload_errors(errors: list[str]) -> None:
    for text in errors:
        ast.log(ast.LOG_ERROR, text.rstrip())


def on_shutdown() -> None:
    """Call the on_unload hooks (reason "shutdown"), bounded in time (loader.UNLOAD_HOOK_TIMEOUT):
    a hook that hangs cannot hold Asterisk's shutdown."""
    _log_unload_errors(loader.run_unload_hooks(state.registry.unload_hooks, "shutdown"))
    ast.log(ast.LOG_NOTICE, "pbx_python: Asterisk is shutting down; Python stays initialised "
            "until the process exits")


def bind(ffi: Any, lib: Any) -> None:
    """Called once from the module's embedding init code."""
    global _ffi, _lib
    _ffi, _lib = ffi, lib
    ast.bind(ffi, lib)
    logbridge.install()
    ast.log(ast.LOG_NOTICE, f"pbx_python: Python {sys.version.split()[0]} C stack: {ast.stack_summary()}")
    signals.install()
    from . import builtin_cli  # noqa: F401 - declares the python show ... commands
    state.builtin = builtin_cli.REGISTRY
    _register_with_asterisk(state.builtin)

    def onerror(exc_type: Any, exc: Any, tb: Any) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        ast.log(ast.LOG_ERROR, f"pbx_python internal error:\n{text}")

    ffi.def_extern(name="pyast_on_cli", error=2, onerror=onerror)(on_cli)
    ffi.def_extern(name="pyast_on_load", error=-1, onerror=onerror)(on_load)
    ffi.def_extern(name="pyast_on_shutdown", onerror=onerror)(on_shutdown)
    ffi.def_extern(name="pyast_on_metrics", onerror=onerror)(on_metrics)
