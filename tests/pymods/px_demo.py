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


@px.application("PyEcho", synopsis="ECHO = argument|uniqueid (seen by Python)")
def py_echo(chan, value=""):
    chan.set_var("ECHO", f"{value}|{chan.uniqueid}")


@px.application("PyExec", synopsis="Run another application from Python")
def py_exec(chan, app="", data=""):
    chan.set_var("BEFORE_EXEC", "set-before")
    res = chan.exec_app(app, data)
    chan.set_var("EXEC_RESULT", str(res))
    chan.set_var("SEEN_AFTER", chan.get_var("SET_BY_APP") or "")
    return res


@px.application("PyLog", synopsis="Log through logging and print")
def py_log(chan, text=""):
    import logging
    logging.getLogger("px_demo").warning("logging says %s", text)
    print(f"print says {text}")


@px.application("PyInfo", synopsis="Channel identity into INFO")
def py_info(chan):
    chan.set_var("INFO", "|".join([chan.name, chan.context, chan.exten, str(chan.priority),
                                   chan.caller_num, chan.tech]))


@px.function("PYREVERSE", synopsis="Reverse; writable: stores REVERSED",
             syntax="PYREVERSE(text)")
def py_reverse(chan, text=""):
    return text[::-1]


@py_reverse.setter
def py_reverse_write(chan, value, *args):
    chan.set_var("REVERSED", value[::-1])


@px.function("PYNUL", synopsis="Returns a value with a NUL character (cannot reach Asterisk)")
def py_nul(chan, *args):
    return "before\0after"


@px.function("PYREPEAT", synopsis="The letter x, n times", syntax="PYREPEAT(n)")
def py_repeat(chan, n="0"):
    return "x" * int(n)


@px.application("PyFuncLen", synopsis="FLEN = the length of a dialplan function's value, read "
                "from Python (no 4 kB substitution buffer on the way)")
def py_func_len(chan, expr=""):
    value = chan.func_read(expr)
    chan.set_var("FLEN", "failed" if value is None else str(len(value)))
