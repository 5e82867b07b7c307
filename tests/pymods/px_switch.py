"""A Python dialplan switch for tests/integration/test_switch.py (switch => Python/office)."""
import pbx_python as px

office = px.switch("office")


def say(chan, text):
    chan.exec_app("Verbose", f"0,RESULT {text}")


@office.extension("2000")
def reception(chan, exten):
    say(chan, f"2000 ran for {exten}")


@office.extension("_2XXX")
def internal(chan, exten):
    say(chan, f"_2XXX ran for {exten}")


@office.extension("_20XX")
def near(chan, exten):
    say(chan, f"_20XX ran for {exten}")


@office.extension("_9.")
def outside(chan, exten):
    say(chan, f"_9. ran for {exten}, trunk gets {exten[1:]}")


@office.extension("_7!")
def seven(chan, exten):
    say(chan, f"_7! ran for {exten}")


@office.extension("goto")
def goto(chan, exten):
    chan.exec_app("Goto", "default,after,1")


@office.extension("sub")
def sub(chan, exten):
    chan.set_var("FROM_SUB", f"sub ran in {chan.context}")
    chan.exec_app("Return", "")


@office.extension("boom")
def boom(chan, exten):
    chan.set_var("BEFORE_BOOM", "set")
    raise RuntimeError("boom in the body of " + exten)


@office.extension("bye")
def bye(chan, exten):
    say(chan, "bye returns -1")
    return -1


@office.extension("dial")
def dial(chan, exten):
    res = chan.exec_app("Dial", "Local/answer@default,5")
    say(chan, f"DIALSTATUS={chan.get_var('DIALSTATUS')}")
    return res


@office.extension("vars")
def variables(chan, exten):
    chan.set_var("SWITCH_SAW", f"{exten}@{chan.context}:{chan.priority}")
    say(chan, "vars set")


# ---- misuse a dialplan author commits (test_switch.py, "misuse") ----

_kept: list = []


@office.extension("keep")
def keep(chan, exten):
    _kept.append(chan)             # kept past the body: the next use must raise, not crash
    say(chan, "kept the channel")


@office.extension("usekept")
def use_kept(chan, exten):
    try:
        _kept[-1].set_var("KEPT", "1")
    except px.ChannelGone:
        say(chan, "kept channel: ChannelGone")
    else:
        say(chan, "kept channel: still usable")


@office.extension("thread")
def from_thread(chan, exten):
    import threading
    seen = []

    def use():
        try:
            chan.get_var("EXTEN")
        except Exception as exc:   # noqa: BLE001 - the test reports what was raised
            seen.append(type(exc).__name__)
        else:
            seen.append("no error")
    worker = threading.Thread(target=use)
    worker.start()
    worker.join()
    say(chan, f"from a thread: {seen[0]}")


@office.extension("deep")
def deep(chan, exten):
    def down(n):
        return down(n + 1)
    down(0)
