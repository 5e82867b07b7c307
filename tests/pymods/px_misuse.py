"""Python dialplan code that misuses pbx_python as a dialplan author might (test_misuse.py)."""
import logging
import threading
import time

import pbx_python as px

log = logging.getLogger("px_misuse")
KEPT: dict = {}
LEGS: dict = {}


def outcome(fn) -> str:
    """What a call gives: 'ok', or the name of the exception it raised."""
    try:
        fn()
        return "ok"
    except BaseException as exc:  # noqa: BLE001 - the point is to see what each use raises
        return type(exc).__name__


def every_use(chan) -> list[tuple[str, object]]:
    """Every way to use a Channel, each as (label, zero-argument callable)."""
    return [
        ("name", lambda: chan.name), ("uniqueid", lambda: chan.uniqueid),
        ("caller_num", lambda: chan.caller_num), ("app_data", lambda: chan.app_data),
        ("get_var", lambda: chan.get_var("X")), ("set_var", lambda: chan.set_var("X", "1")),
        ("set_vars", lambda: chan.set_vars({"X": "1"})), ("eval", lambda: chan.eval("${X}")),
        ("func_read", lambda: chan.func_read("CHANNEL(name)")),
        ("func_write", lambda: chan.func_write("CALLERID(num)", "1")),
        ("exec_app", lambda: chan.exec_app("NoOp", "x")), ("is_hungup", chan.is_hungup),
        ("ref", chan.ref),
    ]


# ---- channel lifetime ----

@px.application("PyKeep", synopsis="Keeps its Channel in a global (a bug)")
def py_keep(chan, *args):
    KEPT["chan"] = chan


@px.application("PyUseKept", synopsis="Uses the Channel a previous call kept; USES = outcomes")
def py_use_kept(chan):
    stale = KEPT["chan"]
    chan.set_var("USES", ",".join(f"{label}={outcome(fn)}" for label, fn in every_use(stale)))
    chan.set_var("KEPT_REPR", repr(stale))


@px.application("PyThreadDuring", synopsis="Uses its Channel and a ChannelRef from a thread "
                "while the call runs; DURING = outcomes")
def py_thread_during(chan):
    ref = chan.ref()
    seen = []

    def work():
        seen.extend(f"{label}={outcome(fn)}" for label, fn in every_use(chan))
        ref.set_var("FROM_THREAD", "set by a ChannelRef")
        seen.append(f"ref.get_var={ref.get_var('FROM_DIALPLAN')}")
        seen.append(f"ref.eval={ref.eval('${FROM_DIALPLAN}-${CHANNEL(state)}')}")
        seen.append(f"ref.is_hungup={ref.is_hungup()}")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    chan.set_var("DURING", ",".join(seen))


@px.application("PyThreadAfter", synopsis="Starts a thread that uses the Channel and a "
                "ChannelRef after the call ended, and logs what each use gave")
def py_thread_after(chan):
    ref = chan.ref()

    def work():
        deadline = time.monotonic() + 20
        while not ref.is_hungup() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)     # the channel is destroyed by now
        uses = [f"{label}={outcome(fn)}" for label, fn in every_use(chan)]
        uses += [f"ref.{label}={outcome(fn)}" for label, fn in (
            ("get_var", lambda: ref.get_var("X")), ("set_var", lambda: ref.set_var("X", "1")),
            ("eval", lambda: ref.eval("${X}")), ("func_read", lambda: ref.func_read("CHANNEL(name)")),
            ("hangup", ref.hangup))]
        log.warning("AFTER-CALL %s is_hungup=%s repr=%r", ",".join(uses), ref.is_hungup(), chan)

    threading.Thread(target=work, daemon=True).start()


@px.application("PyRefHangup", synopsis="Waits 10 s while a thread hangs the call up through a "
                "ChannelRef after 0.3 s")
def py_ref_hangup(chan):
    ref = chan.ref()
    threading.Timer(0.3, ref.hangup).start()
    return chan.exec_app("Wait", "10")


# ---- exceptions ----

class CustomBase(BaseException):
    pass


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ is broken")


class BadStrBase(Exception):
    def __str__(self):
        raise SystemExit("__str__ raises SystemExit")


class BadRepr(Exception):
    def __repr__(self):
        raise RuntimeError("__repr__ is broken")


def make_exception(kind: str) -> BaseException:
    return {
        "systemexit": lambda: SystemExit(3),
        "keyboardinterrupt": lambda: KeyboardInterrupt("stop"),
        "generatorexit": lambda: GeneratorExit("gen"),
        "custombase": lambda: CustomBase("custom"),
        "nul": lambda: ValueError("before\0after"),
        "surrogate": lambda: ValueError("high \ud800 low \udfff"),
        "escape": lambda: ValueError("byte \udcff"),
        "badstr": lambda: BadStr("x"),
        "badstrbase": lambda: BadStrBase("x"),
        "badrepr": lambda: BadRepr("fine message"),
        "long": lambda: ValueError("x" * 100_000),
    }[kind]()


@px.application("PyRaise", synopsis="Sets BEFORE, then raises the exception named")
def py_raise(chan, kind=""):
    chan.set_var("BEFORE", "applied")
    raise make_exception(kind)


@px.function("PYRAISE", synopsis="Raises the exception named (read and write)")
def py_raise_read(chan, kind=""):
    raise make_exception(kind)


@py_raise_read.setter
def py_raise_write(chan, value, kind=""):
    raise make_exception(kind)


@px.cli_command("misuse raise", summary="Raises SystemExit")
def misuse_raise(argv):
    raise SystemExit("from a CLI command")


# ---- invalid values ----

class Opaque:
    pass


BAD_USES = {
    "empty-name": lambda chan: chan.set_var("", "x"),
    "surrogate-value": lambda chan: chan.set_var("V", "lone \ud800"),
    "surrogate-name": lambda chan: chan.set_var("V\udfff", "x"),
    "object-value": lambda chan: chan.set_var("V", Opaque()),
    "list-value": lambda chan: chan.set_var("V", ["a"]),
    "set-vars-one-bad": lambda chan: chan.set_vars({"SV_A": "a", "SV_B": "lone \udbff"}),
    "func-write-object": lambda chan: chan.func_write("CALLERID(name)", Opaque()),
    "get-var-empty": lambda chan: chan.get_var(""),
}


@px.application("PySetBad", synopsis="Sets GOOD, then passes a bad name or value; BAD = what "
                "was raised at the call")
def py_set_bad(chan, case=""):
    chan.set_var("GOOD", "kept")
    try:
        BAD_USES[case](chan)
        chan.set_var("BAD", "nothing raised")
    except (ValueError, TypeError) as exc:
        chan.set_var("BAD", type(exc).__name__)


# ---- values ----

@px.function("PYISVIP", synopsis="A bool: True for 'yes'")
def py_is_vip(chan, who=""):
    return who == "yes"


RETURNS = {"big": 2**32, "negbig": -2**40, "true": True, "str": "0", "float": 0.0,
           "list": ["a"]}


@px.application("PyReturn", synopsis="Returns the value named")
def py_return(chan, kind=""):
    return RETURNS[kind]


@px.function("PYVALUE", synopsis="Returns the value named")
def py_value(chan, kind=""):
    return RETURNS[kind]


# ---- names, levels, lengths ----

@px.application("PyLogLevels", synopsis="px.log at each kind of level; LOGBAD = what 99 raised")
def py_log_levels(chan):
    px.log(logging.WARNING, "px.log at logging.WARNING")
    px.log(logging.INFO, "px.log at logging.INFO")
    px.log(logging.CRITICAL, "px.log at logging.CRITICAL")
    px.log(px.LOG_WARNING, "px.log at px.LOG_WARNING")
    chan.set_var("LOGBAD", ",".join(outcome(lambda lv=lv: px.log(lv, "bad level"))
                                    for lv in (99, -1, 1, 5, True, "30", None)))


@px.application("PyIdentity", synopsis="ID_NAME, ID_NUM, ID_CNAME as Python sees them")
def py_identity(chan):
    chan.set_vars({"ID_NAME": chan.name, "ID_NUM": chan.caller_num, "ID_CNAME": chan.caller_name})


@px.application("PyDialCause", synopsis="Dials a target, then sets LEG_NAME to the name the "
                "pre-dial handler saw and LEG_CAUSE to the leg's HANGUPCAUSE(<key>,tech)")
def py_dial_cause(chan, target=""):
    token = chan.uniqueid
    chan.exec_app("Dial", f"{target},5,b(misuse-predial^s^1({token}))")
    leg = LEGS.pop(token, "")
    key = px.hangupcause_key(leg)
    chan.set_vars({"LEG_NAME": leg, "LEG_CAUSE": chan.eval(f"${{HANGUPCAUSE({key},tech)}}")})


@px.application("PyLegName", synopsis="Pre-dial handler: remembers the outgoing channel's name")
def py_leg_name(chan, token=""):
    LEGS[token] = chan.name
