"""Python dialplan code the benchmarks call (loaded by pbx_python from bench/).

Each callable does the same work as the native anchor it is compared with:
  PYLEN(text)   like ${LEN(text)}: returns the length as a string   (no C call inside)
  PyNop()       like NoOp(): nothing                                  (no C call inside)
  PySet(value)  like Set(PYX=value): one channel variable (deferred, applied by the trampoline)
  PySetNow(v)   one channel variable applied at once (set_var + a get_var: two C calls inside),
                the cost of a Python app that talks to Asterisk while it runs
"""
import pbx_python as px


@px.function("PYLEN", synopsis="Length of the argument (benchmark)", syntax="PYLEN(text)")
def pylen(chan, text=""):
    return str(len(text))


@px.application("PyNop", synopsis="Does nothing (benchmark)")
def pynop(chan, *args):
    return None


@px.application("PySet", synopsis="Sets PYX to the argument (benchmark)")
def pyset(chan, value=""):
    chan.set_var("PYX", value)


@px.application("PySetNow", synopsis="Sets PYX and reads it back (benchmark)")
def pysetnow(chan, value=""):
    chan.set_var("PYX", value)
    chan.get_var("PYX")


@px.cli_command("bench python memory", summary="Python object count and allocator stats (benchmark)",
                usage="Usage: bench python memory\n")
def bench_memory(argv):
    import gc
    import sys
    return (f"objects={len(gc.get_objects())} blocks={sys.getallocatedblocks()} "
            f"gc_counts={','.join(map(str, gc.get_count()))}\n")
