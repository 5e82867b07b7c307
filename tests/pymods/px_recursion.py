"""Recursion bugs a dialplan author could write, for tests/integration/test_recursion.py.

Each shape recurses without end (or nests data deeper than Python handles); inside Asterisk each
must end in a RecursionError (or another Python exception), never in a C stack overflow.
"""
import json
import sys
import threading

import pbx_python as px
from pbx_python import asterisk

SHAPES = {}


def shape(fn):
    SHAPES[fn.__name__] = fn
    return fn


def nested_list(depth):
    """[[[...]]] `depth` deep, built without recursion."""
    value = []
    for _ in range(depth):
        value = [value]
    return value


@shape
def plain():
    def f(n):
        return f(n + 1)
    return f(0)


@shape
def getattr_hook():
    class A:
        def __getattr__(self, name):
            return getattr(self, name)
    return A().x


@shape
def getattribute_hook():
    class A:
        def __getattribute__(self, name):
            return getattr(self, name)
    return A().x


@shape
def property_reads_itself():
    class A:
        @property
        def x(self):
            return self.x
    return A().x


@shape
def repr_of_itself():
    class A:
        def __repr__(self):
            return f"<{self!r}>"
    return repr(A())


@shape
def sort_key():
    def key(x):
        return sorted([x, x], key=key)
    return key(1)


@shape
def sort_compare():
    class A:
        def __lt__(self, other):
            return [A(), A()].sort() or True
    return sorted([A(), A()])


@shape
def map_chain():
    def f(x):
        return list(map(f, [x]))
    return f(1)


@shape
def filter_chain():
    def f(x):
        return list(filter(f, [x]))
    return f(1)


@shape
def repr_nested_list():
    return repr(nested_list(100000))


@shape
def json_nested_list():
    return json.dumps(nested_list(100000))


@shape
def json_nested_list_indented():
    # with indent, json runs its Python encoder: nested generators
    return json.dumps(nested_list(100000), indent=2)


@shape
def eval_nested_expression():
    # Python's parser nests 6000 levels deep before it gives up (about 0.6-0.9 MB of C stack)
    return eval("-" * 5900 + "1")


@shape
def moderate():
    """Legitimate recursion that must keep working: 200 Python frames, JSON 50 levels deep."""
    def depth(n):
        return 0 if n == 0 else 1 + depth(n - 1)
    return f"{depth(200)} {len(json.dumps(nested_list(50)))} {sys.getrecursionlimit()}"


@px.application("PyRecurse", synopsis="Run the recursion shape named by the argument")
def py_recurse(chan, name):
    chan.set_var("RECURSE_RESULT", str(SHAPES[name]()))


@px.function("PYRECURSE", synopsis="Run the recursion shape named by the argument")
def py_recurse_func(chan, name):
    return str(SHAPES[name]())


@px.application("PyThreadRecurse", synopsis="Run the recursion shape named by the argument in "
                "a Python thread; RECURSE_RESULT = how it ended")
def py_thread_recurse(chan, name):
    ended = []

    def body():
        try:
            SHAPES[name]()
        except RecursionError as exc:
            ended.append(type(exc).__name__)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    chan.set_var("RECURSE_RESULT", ended[0] if ended else "no exception")


@px.application("PyExecSelf", synopsis="Run itself again through Asterisk, without end")
def py_exec_self(chan, level="0"):
    chan.set_var("EXEC_SELF_LEVEL", level)
    return chan.exec_app("PyExecSelf", str(int(level) + 1))


@px.function("PYEVALSELF", synopsis="Reads itself again through ${...}, without end")
def py_eval_self(chan, level="0"):
    expr = f"PYEVALSELF({int(level) + 1})"
    if chan is None:   # AMI GetVar without a channel
        return asterisk.func_read(expr) or ""
    return chan.eval("${" + expr + "}")


@px.application("PyExecDepth", synopsis="Run itself through Asterisk `depth` times, then stop")
def py_exec_depth(chan, depth="0"):
    if int(depth) > 0:
        return chan.exec_app("PyExecDepth", str(int(depth) - 1))
    chan.set_var("EXEC_DEPTH_DONE", "yes")
    return 0


@px.cli_command("recursion run", summary="Run the recursion shape named by the argument")
def cli_recurse(argv):
    return str(SHAPES[argv[2]]())
