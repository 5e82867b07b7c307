"""The Python switch of bench/switch.py: `switch => Python/bench`, the same extensions as its
extensions.conf and extensions.lua contexts (bench/switch.py OTHERS and TARGET)."""
import pbx_python as px

OTHERS = ["100", "101", "200", "_1XX", "_2XX", "_3XXX", "_4XXX", "_51XX", "_52XX", "_6XXX", "_9."]

bench = px.switch("bench")


def other(chan, exten):
    chan.set_var("SWX", "other")
    chan.exec_app("Return")


for pattern in OTHERS:
    bench.extension(pattern)(other)


@bench.extension("_5XXX")
def target(chan, exten):
    chan.set_var("SWX", "hello")
    chan.exec_app("Return")
