"""Where a Python application/function call spends its time, measured outside Asterisk.

    .venv/bin/python bench/profile_dispatch.py [--n 200000] [--reps 5]

Builds a small cffi module (in a temp dir) with the same `struct pyast_call` and `extern "Python"`
callback shape as pbx_python.so, and a C driver that calls a callback N times from C with the GIL
released -- the path a channel thread takes (cffi: PyEval_RestoreThread, call, PyEval_SaveThread;
the thread state persists). Then it times, per call:

  bare        an extern "Python" callback that returns 0 (the cffi + GIL floor)
  on_app      pbx_python._runtime.on_app dispatching to px_bench's PyNop / PySet (the real code)
  on_func     pbx_python._runtime.on_func_read dispatching to px_bench's PYLEN
  C-API       what-if: a trampoline that takes the GIL and calls a per-name Python callable with
              the C API (PyUnicode_DecodeUTF8 arguments, a bytes result), no cffi callback

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

def _call_struct() -> str:
    """`struct pyast_call {...};` exactly as csrc/build_module.py declares it (it changes)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_pxb_build_module", ROOT / "csrc" / "build_module.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)   # type: ignore[union-attr]
    cdef = mod.CDEF
    i = cdef.index("struct pyast_call {")
    return cdef[i:cdef.index("};", i) + 2]


STRUCT = _call_struct()
HAS_PACKED = "packed" in STRUCT

CDEF = "struct ast_channel;\n" + STRUCT + """
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
""" + STRUCT + r"""
static int cb_bare(struct pyast_call *call);
static int cb_app(struct pyast_call *call);
static int cb_func(struct pyast_call *call);
static struct ast_channel fake_chan;
static volatile size_t sink;

/* n calls from C; returns seconds. which: 0 bare, 1 app, 2 func read. Fills the call the way
 * the module's trampolines do (argv, and the packed "name\0arg" buffer when the struct has it). */
static double drive(int which, int n, const char *name)
{
    struct timespec a, b;
    char arg0[] = "hello";
    char *argv[1] = { arg0 };
    char packed[64];
    size_t plen = strlen(name);
    int i;
    memcpy(packed, name, plen);
    packed[plen] = 0;
    memcpy(packed + plen + 1, "hello", 6);
    plen += 6;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (i = 0; i < n; i++) {
        struct pyast_call call;
        int res;
        memset(&call, 0, sizeof(call));
        call.chan = &fake_chan;
        call.name = name;
        call.data = "hello";
        call.argc = 1;
        call.argv = argv;
""" + ("""        call.packed = packed;
        call.packed_len = plen;
""" if HAS_PACKED else "") + r"""
        res = which == 0 ? cb_bare(&call) : which == 1 ? cb_app(&call) : cb_func(&call);
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
    import atexit
    import shutil
    tmp = Path(tempfile.mkdtemp(prefix="pxbprof"))
    atexit.register(shutil.rmtree, tmp, True)
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
    if hasattr(_runtime.state, "apps_exact"):      # newer runtimes index the exact names too
        try:
            _runtime.state.apps_exact = {spec.name: spec for spec in reg.apps.values()}
        except Exception:  # noqa: BLE001
            pass
    Channel = channel_mod.Channel
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

    # what-if: the C-API trampoline sketched in drive_capi
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


    # some pieces of a call, each timed alone in Python (no C boundary)
    import timeit
    call = ffi.new("struct pyast_call *")
    packed = ffi.new("char[]", b"PySet\0hello")
    if HAS_PACKED:
        call.packed, call.packed_len = packed, 11
    call.name = names["PySet"]
    call.chan = ffi.cast("struct ast_channel *", 1)
    handler = reg.apps["pyset"].handler
    pieces = {
        "ffi.unpack(call.packed, n).decode().split('\\0')": (lambda: ffi.unpack(call.packed, call.packed_len)
                                                          .decode("utf-8", "surrogateescape").split("\0"))
        if HAS_PACKED else (lambda: None),
        "ffi.string(call.name).decode()": lambda: ffi.string(call.name).decode("utf-8", "surrogateescape"),
        "call.chan (cdata field read)": lambda: call.chan,
        "Channel(ptr, call)": lambda: Channel(call.chan, call),
        "PySet handler on a Channel (deferred set_var)": lambda: handler(Channel(call.chan, call), "hello"),
        "ffi.from_buffer(bytes)": lambda: ffi.from_buffer(b"PYX\0hello\0"),
        "threading.local attribute store": lambda: setattr(_runtime._tls, "keep", None),
        "cdata int field store (call.nset = 1)": lambda: setattr(call, "nset", 1),
        "empty Python function call": lambda: None,
        "on_app(call) -> PySet, called from Python (no C boundary)": lambda: _runtime.on_app(call),
    }
    piece_rows = []
    for label, fn in pieces.items():
        t = min(timeit.repeat(fn, number=100000, repeat=args.reps)) / 100000 * 1e6
        piece_rows.append((label, t))

    print(f"per call, microseconds (N={args.n}, {args.reps} reps): min / median / max")
    for label, lo, med, hi in results:
        print(f"  {label:60s} {lo:6.2f} {med:6.2f} {hi:6.2f}")
    print("pieces, each alone in Python (best of reps, microseconds):")
    for label, t in piece_rows:
        print(f"  {label:60s} {t:6.3f}")


if __name__ == "__main__":
    main()
