"""Where a Python application/function call spends its time, measured outside Asterisk.

    .venv/bin/python bench/profile_dispatch.py [--n 200000] [--reps 5]

Builds a small cffi module (in a temp dir) with the same `struct pyast_call` and `extern "Python"`
callback shape as pbx_python.so, and a C driver that calls a callback N times from C with the GIL
released -- the path a channel thread takes (cffi: PyEval_RestoreThread, call, PyEval_SaveThread;
the thread state persists). Then it times, per call:

  bare        an extern "Python" callback that returns 0 (the cffi + GIL floor)
  on_app      pbx_python._runtime.on_app dispatching to px_bench's PyNop / PySet (the real code)
  on_func     pbx_python._runtime.on_func_read dispatching to px_bench's PYLEN
  + what-ifs  the same with one change applied by monkeypatching (nothing in the package is
              edited): a cheaper encode(), no threading.local, a lean dispatcher, ...

C side costs (ast_strdup + argument splitting + apply_sets in the trampoline, Asterisk's own
pbx_exec and channel snapshot) are not in these numbers; the in-Asterisk benchmark has them.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CDEF = """
struct ast_channel;
struct pyast_call {
    struct ast_channel *chan;
    const char *name;
    const char *data;
    int argc;
    char **argv;
    const char *result;
    int nset;
    const char *sets;
};
extern "Python" int cb_bare(struct pyast_call *call);
extern "Python" int cb_app(struct pyast_call *call);
extern "Python" int cb_func(struct pyast_call *call);
double drive(int which, int n, const char *name);
double drive_capi(void *fn, int n);
"""

SOURCE = r"""
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <stdlib.h>
struct ast_channel { int dummy; };
struct pyast_call {
    struct ast_channel *chan; const char *name; const char *data; int argc; char **argv;
    const char *result; int nset; const char *sets;
};
static int cb_bare(struct pyast_call *call);
static int cb_app(struct pyast_call *call);
static int cb_func(struct pyast_call *call);
static struct ast_channel fake_chan;
static volatile size_t sink;

/* n calls from C; returns seconds. which: 0 bare, 1 app, 2 func read. */
static double drive(int which, int n, const char *name)
{
    struct timespec a, b;
    char arg0[] = "hello";
    char *argv[1] = { arg0 };
    int i;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (i = 0; i < n; i++) {
        struct pyast_call call = { .chan = &fake_chan, .name = name, .data = "hello",
                                   .argc = 1, .argv = argv };
        int res = which == 0 ? cb_bare(&call) : which == 1 ? cb_app(&call) : cb_func(&call);
        /* what the trampoline reads back: the deferred sets and the result */
        if (call.nset > 0 && call.sets) sink += strlen(call.sets);
        if (call.result) sink += strlen(call.result);
        sink += res;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
}

/* The C-API alternative: the trampoline takes the GIL itself, builds the argument tuple with
 * PyUnicode_DecodeUTF8 and calls a Python callable bound to the registered name (no cffi
 * callback, no name lookup, no cdata attribute access). fn(chan_as_int, *args) returns None or
 * the deferred sets as bytes (copied here). */
static double drive_capi(void *fnp, int n)
{
    PyObject *fn = (PyObject *) fnp;
    struct timespec a, b;
    int i;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (i = 0; i < n; i++) {
        PyGILState_STATE g = PyGILState_Ensure();
        PyObject *args = PyTuple_New(2), *r;
        PyTuple_SetItem(args, 0, PyLong_FromVoidPtr(&fake_chan));
        PyTuple_SetItem(args, 1, PyUnicode_DecodeUTF8("hello", 5, "surrogateescape"));
        r = PyObject_Call(fn, args, NULL);
        Py_DECREF(args);
        if (r) {
            if (PyBytes_Check(r)) sink += PyBytes_Size(r);
            Py_DECREF(r);
        } else {
            PyErr_Clear();
        }
        PyGILState_Release(g);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
}
"""


def build() -> tuple[Any, Any]:
    import cffi
    tmp = Path(tempfile.mkdtemp(prefix="pxbprof"))
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source("_pxb_profile", SOURCE, extra_compile_args=["-O2"])
    so = ffi.compile(tmpdir=str(tmp), verbose=False)
    sys.path.insert(0, str(tmp))
    mod = importlib.import_module("_pxb_profile")
    return mod.ffi, mod.lib


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200000)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    ffi, lib = build()

    from pbx_python import _runtime, asterisk as ast, channel as channel_mod, registry
    reg = registry.Registry()
    prev = registry.collect_into(reg)
    import px_bench  # noqa: F401 - declares PyNop, PySet, PYLEN into reg
    registry.collect_into(prev)
    _runtime.state.registry = reg
    _runtime._ffi, _runtime._lib = ffi, lib
    ast.bind(ffi, lib)

    current: dict[str, Callable[[Any], int]] = {}

    @ffi.def_extern(name="cb_bare", error=-1)
    def cb_bare(call: Any) -> int:
        return 0

    @ffi.def_extern(name="cb_app", error=-1)
    def cb_app(call: Any) -> int:
        return current["app"](call)

    @ffi.def_extern(name="cb_func", error=-1)
    def cb_func(call: Any) -> int:
        return current["func"](call)

    names = {n: ffi.new("char[]", n.encode()) for n in ("PyNop", "PySet", "PYLEN")}
    # the extra Python frame of cb_app/cb_func (a dict lookup + call) is measured too:
    current["app"] = current["func"] = lambda call: 0
    frame_floor = [lib.drive(1, args.n, names["PyNop"]) for _ in range(args.reps)]

    results: list[tuple[str, float, float, float]] = []

    def measure(label: str, which: int, name: str) -> None:
        times = [lib.drive(which, args.n, names[name]) / args.n * 1e6 for _ in range(args.reps)]
        results.append((label, min(times), statistics.median(times), max(times)))

    measure("bare extern \"Python\" callback (cffi + GIL floor)", 0, "PyNop")
    results.append(("  + one Python call frame (harness dispatch)",
                    *(f(x / args.n * 1e6 for x in frame_floor) for f in (min, statistics.median, max))))

    def scenario(title: str) -> None:
        current["app"], current["func"] = _runtime.on_app, _runtime.on_func_read
        measure(f"{title}: on_app -> PyNop", 1, "PyNop")
        measure(f"{title}: on_app -> PySet", 1, "PySet")
        measure(f"{title}: on_func_read -> PYLEN", 2, "PYLEN")

    scenario("as shipped")

    # what-if 1: encode() without `b"\0" in data` (bytes.__contains__ with a bytes argument first
    # tries it as an integer, raising and formatting a TypeError that it then clears)
    orig_encode = ast.encode

    def encode_fast(text: str) -> bytes:
        data = text.encode("utf-8", "surrogateescape")
        if 0 in data:
            raise ValueError("a NUL character cannot be passed to Asterisk")
        return data
    ast.encode = encode_fast
    channel_mod.encode = encode_fast
    scenario("encode: `0 in data`")

    # what-if 2: + result kept alive on the Channel/call instead of a threading.local attribute
    orig_hand_back = _runtime._hand_back

    def hand_back_no_tls(call: Any, chan: Any, result: bytes | None = None) -> None:
        n, batch = chan._take_pending()
        if n:
            buf = _runtime._ffi.from_buffer(batch)
            call.sets = buf
            call.nset = n
            _keep.append(buf)
        if result is not None:
            buf = _runtime._ffi.from_buffer(result + b"\0")
            call.result = buf
            _keep.append(buf)
    _keep: list[Any] = []

    class _Trim:   # clear the keep list once per call, like the TLS slot is overwritten
        pass
    orig_on_app, orig_on_func = _runtime.on_app, _runtime.on_func_read

    def on_app2(call: Any) -> int:
        _keep.clear()
        return orig_on_app(call)

    def on_func2(call: Any) -> int:
        _keep.clear()
        return orig_on_func(call)
    _runtime._hand_back = hand_back_no_tls
    current["app"], current["func"] = on_app2, on_func2
    measure("+ no threading.local: on_app -> PySet", 1, "PySet")
    measure("+ no threading.local: on_func_read -> PYLEN", 2, "PYLEN")
    _runtime._hand_back = orig_hand_back

    # what-if 3: a lean dispatcher -- names decoded once per C pointer, no per-call Stats lookup
    # by name, bytes results/sets handed back through ffi.new'd buffers without from_buffer.
    apps_by_ptr: dict[int, Any] = {}
    funcs_by_ptr: dict[int, Any] = {}
    string = ffi.string
    Channel = channel_mod.Channel

    def lean_app(call: Any) -> int:
        key = int(ffi.cast("intptr_t", call.name))
        entry = apps_by_ptr.get(key)
        if entry is None:
            name = string(call.name).decode()
            spec = reg.apps[name.lower()]
            entry = apps_by_ptr[key] = (spec.handler, _runtime._stats(spec.name))
        handler, st = entry
        st.calls += 1
        chan = Channel(call.chan, call)
        argv = call.argv
        res = handler(chan, *[string(argv[i]).decode("utf-8", "surrogateescape") for i in range(call.argc)])
        if chan._pending:
            n, batch = chan._take_pending()
            buf = ffi.new("char[]", batch)
            call.sets = buf
            call.nset = n
            _keep[:] = [buf]
        return res or 0

    def lean_func(call: Any) -> int:
        key = int(ffi.cast("intptr_t", call.name))
        entry = funcs_by_ptr.get(key)
        if entry is None:
            spec = reg.functions[string(call.name).decode()]
            entry = funcs_by_ptr[key] = (spec.reader, _runtime._stats(spec.name))
        reader, st = entry
        st.calls += 1
        chan = Channel(call.chan, call)
        argv = call.argv
        value = reader(chan, *[string(argv[i]).decode("utf-8", "surrogateescape") for i in range(call.argc)])
        buf = ffi.new("char[]", value.encode() if isinstance(value, str) else value)
        call.result = buf
        _keep[:] = [buf]
        return 0
    current["app"], current["func"] = lean_app, lean_func
    measure("lean dispatcher sketch: -> PyNop", 1, "PyNop")
    measure("lean dispatcher sketch: -> PySet", 1, "PySet")
    measure("lean dispatcher sketch: -> PYLEN", 2, "PYLEN")

    # what-if 4: the C-API trampoline sketched in drive_capi (encode fix kept)
    def capi_measure(label: str, fn: Callable[..., Any]) -> None:
        keep = fn   # noqa: F841 - id(fn) is passed to C as the PyObject pointer
        ptr = ffi.cast("void *", id(fn))
        times = [lib.drive_capi(ptr, args.n) / args.n * 1e6 for _ in range(args.reps)]
        results.append((label, min(times), statistics.median(times), max(times)))

    def bind_app(handler: Callable[..., Any]) -> Callable[..., Any]:
        def dispatch(chanptr: int, *a: str) -> Any:
            chan = Channel(chanptr, None)
            handler(chan, *a)
            if chan._pending:
                return b"".join(chan._pending)
            return None
        return dispatch

    def bind_func(reader: Callable[..., Any]) -> Callable[..., Any]:
        def dispatch(chanptr: int, *a: str) -> Any:
            value = reader(Channel(chanptr, None), *a)
            return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        return dispatch

    def bare_capi(chanptr: int, *a: str) -> None:
        return None
    capi_measure("C-API trampoline sketch: bare callable (floor)", bare_capi)
    capi_measure("C-API trampoline sketch: -> PyNop", bind_app(reg.apps["pynop"].handler))
    capi_measure("C-API trampoline sketch: -> PySet", bind_app(reg.apps["pyset"].handler))
    capi_measure("C-API trampoline sketch: -> PYLEN", bind_func(reg.functions["PYLEN"].reader))

    ast.encode = orig_encode
    channel_mod.encode = orig_encode

    # the pieces of the shipped path, each timed alone in Python (no C boundary)
    import timeit
    call = ffi.new("struct pyast_call *")
    argv = ffi.new("char *[1]")
    a0 = ffi.new("char[]", b"hello")
    argv[0] = a0
    call.name, call.argc, call.argv = names["PySet"], 1, argv
    call.chan = ffi.cast("struct ast_channel *", 1)
    pieces = {
        "ffi.string(call.name).decode()": lambda: _runtime._ffi.string(call.name).decode("utf-8", "surrogateescape"),
        "registry dict lookup (name.lower())": lambda: reg.apps.get("PySet".lower()),
        "Channel(ptr, call)": lambda: Channel(call.chan, call),
        "_stats(name)": lambda: _runtime._stats("PySet"),
        "_args(call)": lambda: _runtime._args(call),
        "encode(name) as shipped (b'\\0' in)": lambda: orig_encode("PYX"),
        "encode(name) with `0 in`": lambda: encode_fast("PYX"),
        "ffi.from_buffer(bytes)": lambda: ffi.from_buffer(b"PYX\0hello\0"),
        "ffi.new('char[]', bytes)": lambda: ffi.new("char[]", b"PYX\0hello\0"),
        "threading.local attribute store": lambda: setattr(_runtime._tls, "keep", None),
        "call.sets = buf (cdata setattr)": lambda: setattr(call, "nset", 1),
    }
    piece_rows = []
    for label, fn in pieces.items():
        t = min(timeit.repeat(fn, number=100000, repeat=args.reps)) / 100000 * 1e6
        piece_rows.append((label, t))

    print(f"per call, microseconds (N={args.n}, {args.reps} reps): min / median / max")
    for label, lo, med, hi in results:
        print(f"  {label:60s} {lo:6.2f} {med:6.2f} {hi:6.2f}")
    print("pieces of on_app, each alone (best of reps, microseconds):")
    for label, t in piece_rows:
        print(f"  {label:60s} {t:6.3f}")


if __name__ == "__main__":
    main()
