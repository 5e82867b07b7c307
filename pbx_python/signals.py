"""Signals belong to Asterisk: Python code in it may not install handlers or arm signal timers.

Inside Asterisk, a Python signal handler never runs (Python runs them only in its main thread,
which stays in Asterisk's C code after startup), `signal.signal` at import time would replace
Asterisk's own handler (SIGTERM, SIGHUP, SIGCHLD, ...), and `signal.alarm`/`setitimer` deliver
SIGALRM/SIGVTALRM/SIGPROF, whose default action kills the whole process. So `install()` makes
these functions raise `SignalsRefused` at the call, in the user's own frame.
Use threads (`threading.Timer`) for timeouts.
"""
from __future__ import annotations

import signal
from typing import Any, Callable

#: The functions of `signal` (and `_signal`, which it wraps) that would act on the process.
REFUSED = ("signal", "alarm", "setitimer", "siginterrupt", "raise_signal", "set_wakeup_fd")


class SignalsRefused(ValueError):
    """A signal function was called inside Asterisk, where signals belong to Asterisk. A
    ValueError, as Python's own refusal outside its main thread, which libraries expect."""


def _refuse(name: str) -> Callable[..., Any]:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise SignalsRefused(f"signal.{name}() is not available inside Asterisk: signals belong "
                             "to Asterisk (a Python handler would never run, and a signal timer "
                             "would kill the process); use threading.Timer for timeouts")
    refused.__name__ = name
    return refused


def install() -> None:
    """Replace the refused functions in `signal` and `_signal` (once, inside Asterisk)."""
    import _signal
    for module in (signal, _signal):
        for name in REFUSED:
            if hasattr(module, name):
                setattr(module, name, _refuse(name))
