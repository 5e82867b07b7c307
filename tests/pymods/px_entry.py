"""Python dialplan code for tests/integration/test_entry_path.py."""
import threading
import time

import pbx_python as px

NAMES = 100   # more names than the trampolines' name cache holds (64)


def _make(i):
    def read(chan, *args):
        return f"F{i}"
    return read


for _i in range(NAMES):
    px.function(f"PYNAME{_i}")(_make(_i))


@px.application("PySleepInPython")
def sleep_in_python(chan, seconds="1"):
    time.sleep(float(seconds))        # releases the GIL, as any blocking call does
    chan.set_var("SLEPT", seconds)


@px.function("PYLEN2")
def pylen2(chan, text=""):
    return str(len(text))


_busy = {"until": 0.0}


def _spin():
    while time.monotonic() < _busy["until"]:
        pass                          # pure Python: holds the GIL but for switch intervals


@px.application("PyBusyThread")
def busy_thread(chan, seconds="1"):
    _busy["until"] = time.monotonic() + float(seconds)
    threading.Thread(target=_spin, daemon=True).start()


def _deep(n):
    # each level goes through C (map calls the function), so each uses C stack
    return 0 if n == 0 else 1 + sum(map(_deep, [n - 1]))


@px.application("PyDeep")
def deep(chan, levels="1000"):
    chan.set_var("DEEP", str(_deep(int(levels))))
