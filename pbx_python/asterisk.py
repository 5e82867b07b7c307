"""The one place that talks to Asterisk's C API (through the cffi shim in pbx_python.so).

Every function here that calls `_lib` costs one GIL hand-off; callers keep them few.
Outside Asterisk (unit tests) nothing is bound and the calls raise NotInAsterisk, except logging,
which falls back to Python's own stderr.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Mapping, Optional

# Asterisk log levels (include/asterisk/logger.h)
LOG_DEBUG = 0
LOG_NOTICE = 2
LOG_WARNING = 3
LOG_ERROR = 4

# What log() accepts: Python's logging levels, and the Asterisk levels above. Nothing else
# reaches Asterisk's logger, which indexes its own tables with the level.
LEVELS: dict[int, int] = {
    logging.DEBUG: LOG_DEBUG, logging.INFO: LOG_NOTICE, logging.WARNING: LOG_WARNING,
    logging.ERROR: LOG_ERROR, logging.CRITICAL: LOG_ERROR,
    LOG_DEBUG: LOG_DEBUG, LOG_NOTICE: LOG_NOTICE, LOG_WARNING: LOG_WARNING, LOG_ERROR: LOG_ERROR,
}

_ffi: Any = None
_lib: Any = None


class NotInAsterisk(RuntimeError):
    """An Asterisk call was made outside a running Asterisk."""


REFUSED = -(2 ** 31)   # PYAST_REFUSED in pbx_python.c


def checked(res: int) -> int:
    """`res` of a C helper that may run Python code again through Asterisk (an application, a
    function read or write); RecursionError when that code was not run: recursion too deep."""
    if res == REFUSED:
        raise RecursionError("maximum recursion depth exceeded while running Python code again "
                             "through Asterisk")
    return res


def bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


def bound() -> bool:
    return _lib is not None


def lib() -> Any:
    if _lib is None:
        raise NotInAsterisk("pbx_python is not running inside Asterisk")
    return _lib


def ffi() -> Any:
    if _ffi is None:
        raise NotInAsterisk("pbx_python is not running inside Asterisk")
    return _ffi


def encode(text: str) -> bytes:
    """str -> C string bytes; a NUL cannot be held by Asterisk, so it is refused, not dropped."""
    if "\0" in text:   # checked on the str: `b"\0" in bytes` costs a caught TypeError
        raise ValueError("a NUL character cannot be passed to Asterisk")
    return text.encode("utf-8", "surrogateescape")


def decode(data: bytes) -> str:
    """C string bytes -> str, losslessly (invalid UTF-8 survives as surrogate escapes)."""
    return data.decode("utf-8", "surrogateescape")


def printable(text: str) -> bytes:
    """Any str as valid UTF-8 for a log line: NUL shown as \\0, surrogates as \\udcXX."""
    return text.replace("\0", "\\0").encode("utf-8", "backslashreplace")


def output(text: str) -> bytes:
    """Any str as C string bytes for output (CLI): lossless where it can be (surrogate escapes
    become their bytes again), NUL shown as \\0, other surrogates as \\udXXX escapes."""
    text = text.replace("\0", "\\0")
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def log_level(level: Any) -> int:
    """The Asterisk log level for a logging level (DEBUG, INFO->NOTICE, WARNING, ERROR,
    CRITICAL->ERROR) or an Asterisk level (LOG_DEBUG, LOG_NOTICE, LOG_WARNING, LOG_ERROR)."""
    mapped = LEVELS.get(level) if isinstance(level, int) and not isinstance(level, bool) else None
    if mapped is None:
        raise ValueError(f"invalid log level {level!r}: use logging.DEBUG, INFO, WARNING, ERROR or "
                         "CRITICAL (or pbx_python.LOG_DEBUG, LOG_NOTICE, LOG_WARNING, LOG_ERROR)")
    return mapped


def log(level: int, message: str, file: str = "python", line: int = 0, func: str = "") -> None:
    """Write one entry to the Asterisk logger (multi-line messages stay one entry).

    `level` is a `logging` level or an Asterisk level (see log_level); any other value
    raises ValueError. NUL and surrogates in the texts are shown escaped.
    """
    level = log_level(level)
    message = message if isinstance(message, str) else str(message)
    if _lib is None:
        print(f"[{level}] {message}", file=sys.__stderr__)
        return
    _lib.pyast_log(level, printable(os.path.basename(str(file))), int(line), printable(str(func)),
                   printable(message))


def verbose(message: str, level: int = 3, file: str = "python", line: int = 0, func: str = "") -> None:
    """Asterisk verbose message, shown from `core set verbose <level>` up (level >= 0)."""
    if not isinstance(level, int) or isinstance(level, bool) or level < 0:
        raise ValueError(f"invalid verbose level {level!r}: use an int >= 0")
    if _lib is None or _lib.ast_verb_sys_level < level:
        return  # checked here: no C call when nobody would see it
    message = message if isinstance(message, str) else str(message)
    _lib.pyast_verbose(level, printable(os.path.basename(str(file))), int(line),
                       printable(str(func)), printable(message))


def debug_enabled() -> bool:
    """True when Asterisk's core debug level is at least 1."""
    return _lib is not None and _lib.option_debug > 0


def verbosity() -> int:
    """Asterisk's current maximum verbose level (0 outside Asterisk)."""
    return 0 if _lib is None else int(_lib.ast_verb_sys_level)


def manager_event(event: str, headers: Mapping[str, object]) -> None:
    """Send an AMI event of class 'user' with the given headers."""
    pairs = [(str(k), str(v)) for k, v in headers.items()]
    # each name and value checked on its own: a CR or LF would end the header and start another
    if any("\r" in text or "\n" in text for pair in pairs for text in pair) \
            or "\r" in event or "\n" in event:
        raise ValueError("manager event names, header names and header values cannot hold CR or LF")
    body = "".join(f"{k}: {v}\r\n" for k, v in pairs)
    lib().pyast_manager_event(encode(event), encode(body))


def version() -> str:
    """The running Asterisk's version string."""
    return decode(ffi().string(lib().ast_get_version()))


def thread_states() -> int:
    """How many Asterisk threads currently hold a Python thread state (one per thread that ran
    Python code and has not ended yet)."""
    return int(lib().pyast_thread_state_count())


def directories() -> tuple[str, str]:
    """Asterisk's configuration and data directories (astetcdir, astdatadir), as it runs."""
    out = ffi().new("const char *[2]")
    lib().pyast_directories(out, out + 1)
    return decode(ffi().string(out[0])), decode(ffi().string(out[1]))


def stack_summary() -> str:
    """How Python's C stack is set up on Asterisk's threads (docs/DESIGN.md, "Stack depth")."""
    info = ffi().new("struct pyast_stack_info *")
    lib().pyast_stack_info(info)
    where = (f"{info.pystack_kb} KB of its own on each Asterisk thread ({info.stacks} in use, "
             f"{info.pooled} kept for new threads, {info.created} mapped since the start; "
             f"Asterisk's threads have {info.thread_kb} KB)"
             if info.pystack_kb else
             f"Asterisk's threads' own {info.thread_kb} KB")
    if not info.units:
        return f"{where}; recursion limited by Python itself"
    units = min(info.units, info.c_limit or sys.getrecursionlimit())
    counted = "C-level calls" if info.c_limit else "calls (Python frames included)"
    return (f"{where}; recursion budget {units} {counted} per call from Asterisk "
            f"({info.unit_bytes} bytes each, {info.reserve_kb} KB in reserve)")


def register_app(name: str, synopsis: str, description: str) -> int:
    return lib().pyast_register_app(encode(name), encode(synopsis), encode(description))


def register_function(name: str, synopsis: str, syntax: str, arguments: str, description: str,
                      seealso: str) -> int:
    return lib().pyast_register_function(encode(name), encode(synopsis), encode(syntax),
                                         encode(arguments), encode(description), encode(seealso))


def register_cli(command: str, summary: str, usage: str) -> int:
    return lib().pyast_register_cli(encode(command), encode(summary), encode(usage))


def switch_load(table: bytes) -> int:
    """Replace the switch table Asterisk matches against (switches.pack()); 0, or -1."""
    return lib().pyast_switch_load(table, len(table))


def switch_dump() -> list[tuple[str, int, list[str]]]:
    """The switch table in service, as Asterisk holds it: (name, lookups since the last load,
    patterns in match order) per switch."""
    out = ffi().new("const char **")
    n = lib().pyast_switch_dump(out)
    if n <= 0:
        return []
    fields = decode(ffi().unpack(out[0], n)).split("\0")
    result: list[tuple[str, int, list[str]]] = []
    i = 0
    while i + 1 < len(fields) and fields[i]:
        name, lookups = fields[i], int(fields[i + 1])
        i += 2
        pats = []
        while i < len(fields) and fields[i]:
            pats.append(fields[i])
            i += 1
        i += 1
        result.append((name, lookups, pats))
    return result


def add_extension(context: str, exten: str, priority: int, app: str, data: str = "") -> None:
    """Add or replace one dialplan priority (the context is created if needed).

    Owned by the registrar "pbx_python": a 'dialplan reload' of extensions.conf keeps it.
    """
    if lib().pyast_add_extension(encode(context), encode(exten), priority, encode(app),
                                 encode(data)) != 0:
        raise RuntimeError(f"cannot add {exten},{priority} to context {context}")


def global_var(name: str) -> Optional[str]:
    """Read a global dialplan variable."""
    from .values import name_bytes
    out = ffi().new("const char **")
    n = lib().pyast_getvar(ffi().NULL, name_bytes(name), out)
    return None if n < 0 else decode(ffi().unpack(out[0], n))


def func_read(expr: str) -> Optional[str]:
    """Read a dialplan function without a channel, e.g. DEVICE_STATE(PJSIP/sopB)."""
    from .values import name_bytes
    out = ffi().new("const char **")
    n = checked(lib().pyast_func_read(ffi().NULL, name_bytes(expr, "a function expression"), out))
    return None if n < 0 else decode(ffi().unpack(out[0], n))
