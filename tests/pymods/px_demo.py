"""Python dialplan code used by the integration tests."""
import pbx_python as px


@px.application("PyHello", synopsis="Set HELLO to a greeting",
                syntax="PyHello(name[,greeting])",
                arguments="name: who to greet\ngreeting: the word to use (default Hello)",
                description="Sets the channel variable HELLO to '<greeting> <name>'.")
def py_hello(chan, name="", greeting="Hello"):
    chan.set_var("HELLO", f"{greeting} {name}")


@px.application("PyArgs", synopsis="Store each argument in ARG<n> and their count in ARGC")
def py_args(chan, *args):
    chan.set_var("ARGC", str(len(args)))
    for i, a in enumerate(args, 1):
        chan.set_var(f"ARG{i}", a)


@px.application("PyFail", synopsis="Always raises")
def py_fail(chan, *args):
    raise RuntimeError("PyFail was asked to fail: " + ",".join(args))


@px.function("PYUPPER", synopsis="Upper-case text", syntax="PYUPPER(text)")
def py_upper(chan, text=""):
    return text.upper()


@px.function("PYFAIL", synopsis="Always raises")
def py_fail_func(chan, *args):
    raise ValueError("PYFAIL read")


@px.function("PYCHAN", synopsis="The channel name, or NOCHANNEL")
def py_chan(chan, *args):
    return chan.name if chan is not None else "NOCHANNEL"
