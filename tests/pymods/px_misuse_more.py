"""More misuse a dialplan author might commit, each found to take Asterisk down or lose a value
(test_misuse_more.py)."""
import signal

import pbx_python as px

HUGE = 1_000_000      # far beyond what the dialplan can pass (8191 bytes)


def outcome(fn) -> str:
    """'ok', or the name of the exception fn() raised."""
    try:
        fn()
        return "ok"
    except BaseException as exc:  # noqa: BLE001 - the point is to see what each use raises
        return type(exc).__name__


@px.application("PyHuge", synopsis="Passes huge strings to Asterisk; HUGE = outcomes")
def py_huge(chan):
    big, ref = "a" * HUGE, chan.ref()
    uses = [
        ("exec_app", lambda: chan.exec_app("Set", f"X={big}")),
        ("func_read", lambda: chan.func_read(f"LEN({big})")),
        ("eval", lambda: chan.eval(f"${{LEN({big})}}")),
        ("func_write", lambda: chan.func_write("CALLERID(all)", big)),
        ("set_var_function", lambda: chan.set_var("CALLERID(all)", big)),
        ("set_var_function_name", lambda: chan.set_var(f"CALLERID({big})", "x")),
        ("ref_func_read", lambda: ref.func_read(f"LEN({big})")),
        ("ref_set_var_function", lambda: ref.set_var("CALLERID(all)", big)),
    ]
    chan.set_var("HUGE", ",".join(f"{label}={outcome(fn)}" for label, fn in uses))
    chan.set_var("BIGVAR", big)                  # a plain variable's value has no limit
    chan.set_var("BIGVAR_LEN", len(chan.get_var("BIGVAR")))


@px.application("PyAlarm", synopsis="Arms a SIGALRM as a naive timeout")
def py_alarm(chan):
    chan.set_var("ALARM", outcome(lambda: signal.alarm(1)))
    chan.set_var("HANDLER", outcome(lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)))


@px.application("PyAmiEvent", synopsis="Sends an AMI event with a header value from the caller")
def py_ami_event(chan, value):
    chan.set_var("AMI", outcome(lambda: px.manager_event("PyMisuseEvent", {"Caller": value})))
    px.manager_event("PyMisuseEvent", {"Caller": "plain", "Done": "yes"})


@px.application("PyCallerId", synopsis="Normalises the caller number, then reads it back")
def py_caller_id(chan):
    before = chan.caller_num
    chan.set_var("CALLERID(num)", "+" + before)
    after_set = chan.caller_num
    chan.exec_app("Set", "CALLERID(name)=Set by exec_app")
    chan.set_var("CID", f"{before}>{after_set}>{chan.caller_name}")


@px.application("PyManyArgs", synopsis="ARGS = how many arguments it got, FIRST/LAST = the ends")
def py_args(chan, *args):
    chan.set_vars({"ARGS": len(args), "FIRST": args[0], "LAST": args[-1]})


class Sneaky(str):
    """A str subclass whose own methods do not tell the truth."""

    def __contains__(self, item):
        return False

    def encode(self, *args, **kwargs):
        return b"sneaky\0INJECTED"


@px.application("PyStrSubclass", synopsis="Sets a variable to a str subclass")
def py_str_subclass(chan):
    chan.set_var("SUB", Sneaky("plain"))


class Minus(int):
    """An int subclass whose int() is not its value."""

    def __int__(self):
        return 0


@px.application("PyIntSubclass", synopsis="Returns an int subclass holding -1 (hang up)")
def py_int_subclass(chan):
    return Minus(-1)


class Text(str):
    """A str subclass whose methods fail."""

    def endswith(self, *args):
        raise RuntimeError("Text.endswith")

    def replace(self, *args):
        raise RuntimeError("Text.replace")


@px.cli_command("misuse text", summary="Returns a str subclass")
def cli_text(argv):
    return Text("text from a subclass")


@px.function("PYANNOUNCE", synopsis="Plays a prompt to its caller, then gives a value")
def py_announce(chan):
    chan.exec_app("Playback", "beep")
    return "announced"


@px.application("PyMakeChannel", synopsis="Makes a Channel from a number")
def py_make_channel(chan):
    chan.set_var("MADE", outcome(lambda: px.Channel(64).name))


@px.application("PyGetFunction", synopsis="Reads a function with get_var, as it set it")
def py_get_function(chan):
    chan.set_var("CALLERID(name)", "Alice")
    got = chan.get_var("CALLERID(name)", "unset")
    from_ref = chan.ref().get_var("CALLERID(name)", "unset")
    chan.set_var("GOT", f"{got},{from_ref}")
