"""Recursion shapes for bench/stack_depth/run.py: each recurses until Python stops it (or not)."""
from __future__ import annotations

import functools
import itertools
import json
from typing import Callable


def nested(depth: int = 100000) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def plain():
    def f(n):
        return f(n + 1)
    return f(0)


def sort_compare():
    class A:
        def __lt__(self, other):
            return [A(), A()].sort() or True
    return sorted([A(), A()])


def sort_key():
    def key(x):
        return sorted([x, x], key=key)
    return key(1)


def descriptor_get():
    class D:
        def __get__(self, obj, owner):
            return obj.d
    class O:  # noqa: E742
        d = D()
    return O().d


def getattr_hook():
    class A:
        def __getattr__(self, name):
            return getattr(self, name)
    return A().x


def property_reads_itself():
    class A:
        @property
        def x(self):
            return self.x
    return A().x


def map_chain():
    def f(x):
        return list(map(f, [x]))
    return f(1)


def filter_chain():
    def f(x):
        return list(filter(f, [x]))
    return f(1)


def repr_of_itself():
    class A:
        def __repr__(self):
            return f"<{self!r}>"
    return repr(A())


def repr_nested():
    return repr(nested())


def json_nested():
    return json.dumps(nested())


def json_nested_indented():
    return json.dumps(nested(), indent=2)


def eq_nested():
    return nested() == nested()


def parser_unary():
    return compile("-" * 5900 + "1", "<x>", "eval")


def parser_not():
    return compile("not " * 5900 + "1", "<x>", "eval")


def nested_map_objects():
    it = iter([1])
    for _ in range(20000):
        it = map(int, it)
    return next(it)


def nested_tuple_hash():
    t: tuple = ()
    for _ in range(20000):
        t = (t,)
    return hash(t)


def chain_objects():
    it = iter([1])
    for _ in range(20000):
        it = itertools.chain(it)
    return next(it)


def partial_self():
    def f():
        return functools.partial(f)()
    return f()


SHAPES: dict[str, Callable[[], object]] = {
    name: fn for name, fn in list(globals().items())
    if callable(fn) and getattr(fn, "__module__", "") == __name__ and name != "nested"}
