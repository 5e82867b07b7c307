"""The Python dialplan switch (switch => Python/<name>): Asterisk's own lookups (exists,
matchmore) answered from the table, the dialplan's precedence, bodies run in Python, reloads."""
from __future__ import annotations

import re
import textwrap
import time

import pytest

from tests.conftest import PYMODS, ROOT

pytestmark = pytest.mark.integration

DIALPLAN = """\
[default]
exten => after,1,Verbose(0,RESULT after the Goto, from ${FROM})
 same => n,Hangup()
exten => answer,1,Answer()
 same => n,Wait(0.3)
 same => n,Hangup()
exten => gosub,1,Gosub(office,sub,1)
 same => n,Verbose(0,RESULT back from the Gosub: ${FROM_SUB})
exten => _d.,1,Wait(0.5)
 same => n,SendDTMF(${EXTEN:1},100,100)
 same => n,Wait(15)

[office]
exten => h,1,Verbose(0,RESULT h ran: PYTHON_ERROR=${PYTHON_ERROR} BEFORE_BOOM=${BEFORE_BOOM} SWITCH_SAW=${SWITCH_SAW})
switch => Python/office

[overlap]
exten => s,1,Answer()
 same => n,Set(TIMEOUT(digit)=4)
 same => n,WaitExten(10)
switch => Python/office

[background]
exten => s,1,Answer()
 same => n,Background(silence/10,,,office)
 same => n,Verbose(0,RESULT Background went on without a jump)

[ghost]
switch => Python/nosuch
"""


@pytest.fixture
def node(python_asterisk):
    return python_asterisk(DIALPLAN, modules=("px_switch",), paths=(str(PYMODS),))


def call(ast, exten: str, context: str = "office", marker: str = r"RESULT (?!h ran)",
         timeout: float = 10) -> str:
    """Originate Local/<exten>@<context> (the other side waits) and return the first line
    logged after it that matches `marker` (by default a RESULT line other than the h
    extension's, which an earlier call may still be logging)."""
    since = ast.log_offset()
    ast.cli(f"channel originate Local/{exten}@{context} application Wait 2")
    return ast.wait_for_log(rf"app_verbose\.c: ({marker}.*)$", timeout=timeout,
                            since=since).group(1)


def exists(ast, context: str, exten: str, priority: int = 1) -> str | None:
    return ast.eval_function(f"DIALPLAN_EXISTS({context},{exten},{priority})")


# ---- lookups: exists, precedence, priorities ----

def test_declared_extensions_exist_in_the_context_and_others_do_not(node):
    assert exists(node, "office", "2000") == "1"
    assert exists(node, "office", "2345") == "1"
    assert exists(node, "office", "91234") == "1"
    assert exists(node, "office", "3000") == "0"
    assert exists(node, "office", "9") == "0"      # '.' needs one more character


def test_only_priority_one_of_a_python_extension_exists(node):
    assert exists(node, "office", "2345", 1) == "1"
    assert exists(node, "office", "2345", 2) == "0"


def test_an_exact_extension_beats_the_patterns_that_match_it(node):
    assert call(node, "2000") == "RESULT 2000 ran for 2000"


def test_the_most_specific_pattern_wins_as_in_extensions_conf(node):
    assert call(node, "2001") == "RESULT _20XX ran for 2001"
    assert call(node, "2100") == "RESULT _2XXX ran for 2100"


def test_dialplan_show_lists_the_switch_of_the_context(node):
    assert re.search(r"Alt\. Switch => +'Python/office'", node.cli("dialplan show office"))


def test_an_undeclared_switch_has_no_extensions_and_warns_once(node):
    since = node.log_offset()
    assert exists(node, "ghost", "100") == "0"
    assert exists(node, "ghost", "200") == "0"
    node.wait_for_log(r"no Python switch named 'nosuch' is declared", since=since)
    assert node.log_text(since).count("no Python switch named 'nosuch'") == 1


# ---- overlap dialling: Asterisk's matchmore through the PBX's own digit collection ----

def dialled(ast, digits: str, context: str = "overlap") -> tuple[str, float]:
    """Send `digits` as DTMF to a channel waiting in `context` ([overlap]: digit timeout 4 s);
    return the RESULT line and the seconds from the first digit sent to the body running."""
    since = ast.log_offset()
    ast.cli(f"channel originate Local/s@{context} extension d{digits}@default")
    ast.wait_for_log(r"SendDTMF", since=since)
    start = time.monotonic()
    line = ast.wait_for_log(r"app_verbose\.c: (RESULT\b.*)$", timeout=15, since=since).group(1)
    return line, time.monotonic() - start


def test_a_complete_number_runs_at_once_without_waiting_for_more_digits(node):
    line, seconds = dialled(node, "2345")
    assert line == "RESULT _2XXX ran for 2345"
    assert seconds < 3          # not the 4 s digit timeout: nothing longer can match


def test_a_number_that_could_go_on_waits_for_the_digit_timeout(node):
    line, seconds = dialled(node, "9123")
    assert line == "RESULT _9. ran for 9123, trunk gets 123"
    assert seconds > 4          # '_9.' takes more digits: Asterisk waited for them


def test_a_bang_pattern_runs_on_its_first_digit(node):
    line, _ = dialled(node, "712")
    assert line == "RESULT _7! ran for 7"


def test_background_jumps_on_a_digit_the_switch_can_match_and_needs_no_more_for(node):
    # Background(...,office): a single digit that canmatch says can match and matchmore says
    # needs nothing more sends the channel to that extension at once (pbx_builtins.c)
    line, _ = dialled(node, "7", "background")
    assert line == "RESULT _7! ran for 7"


# ---- bodies ----

def test_goto_in_a_body_sends_the_channel_there(node):
    assert call(node, "goto").startswith("RESULT after the Goto")


def test_a_gosub_into_the_switch_returns_to_the_caller(node):
    assert call(node, "gosub", "default") == "RESULT back from the Gosub: sub ran in office"


def test_dial_from_a_body_reaches_the_callee(node):
    assert call(node, "dial") == "RESULT DIALSTATUS=ANSWER"


def test_a_body_that_returns_without_goto_ends_the_call_as_the_dialplan_does(node):
    since = node.log_offset()
    call(node, "vars")
    line = node.wait_for_log(r"app_verbose\.c: (RESULT h ran.*)$", since=since).group(1)
    assert "SWITCH_SAW=vars@office:1" in line     # the body's assignments are applied


def test_a_body_returning_minus_one_hangs_up(node):
    since = node.log_offset()
    assert call(node, "bye") == "RESULT bye returns -1"
    assert "RESULT h ran: PYTHON_ERROR= " in node.wait_for_log(r"(RESULT h ran.*)$",
                                                               since=since).group(1)


def test_an_exception_in_a_body_is_logged_and_hangs_the_call_up(node):
    since = node.log_offset()
    line = call(node, "boom", marker="RESULT h ran")
    assert "PYTHON_ERROR=RuntimeError: boom in the body of boom" in line
    assert "BEFORE_BOOM=set" in line
    log = node.log_text(since)
    assert "Python switch extension office/boom" in log
    assert "Traceback (most recent call last)" in log
    assert call(node, "2000") == "RESULT 2000 ran for 2000"     # the node goes on


# ---- CLI ----

def test_python_show_switches_lists_extensions_in_match_order_with_handlers(node):
    call(node, "2001")
    text = node.cli("python show switches office")
    rows = [ln.split() for ln in text.splitlines() if re.match(r"\d+ +\S+ +\S+ +\d+ +\d+$", ln)]
    assert [r[1] for r in rows] == ["2000", "boom", "bye", "deep", "dial", "goto", "keep",
                                    "sub", "thread", "usekept", "vars",
                                    "_20XX", "_2XXX", "_7!", "_9."]
    near = next(r for r in rows if r[1] == "_20XX")
    assert near[2] == "px_switch.near" and near[3] == "1"
    assert "Switch Python/office (px_switch)" in text


def test_python_show_switches_names_an_unknown_switch(node):
    assert "No Python switch named 'nosuch'" in node.cli("python show switches nosuch")


# ---- reload ----

def write_module(path, extensions: dict[str, str]) -> None:
    body = ["import pbx_python as px", "sw = px.switch('office')"]
    for i, (pattern, text) in enumerate(extensions.items()):
        body += [f"@sw.extension({pattern!r})", f"def ext{i}(chan, exten):",
                 f"    chan.exec_app('Verbose', '0,RESULT {text}')"]
    path.write_text("\n".join(body) + "\n")


def test_reload_swaps_the_table(python_asterisk, tmp_path):
    write_module(tmp_path / "px_sw.py", {"100": "one hundred", "_3XX": "three"})
    ast = python_asterisk(DIALPLAN, modules=("px_sw",), paths=(str(tmp_path),))
    assert exists(ast, "office", "100") == "1"
    write_module(tmp_path / "px_sw.py", {"200": "two hundred", "_3XX": "three again"})
    assert "reloaded successfully" in ast.cli("module reload pbx_python.so")
    assert exists(ast, "office", "200") == "1"
    assert exists(ast, "office", "100") == "0"
    assert call(ast, "300") == "RESULT three again"


LOOKUP_LOOP = DIALPLAN + """
[lookups]
exten => s,1,Set(I=0)
 same => n,Set(MISSED=0)
 same => n,While($[${I} < 150])
 same => n,Set(MISSED=$[${MISSED} + ! ${DIALPLAN_EXISTS(office,100,1)}])
 same => n,Set(I=$[${I} + 1])
 same => n,EndWhile()
 same => n,Verbose(0,RESULT lookups done, missed ${MISSED})
"""


def test_lookups_during_reloads_see_a_whole_table_every_time(python_asterisk, tmp_path):
    write_module(tmp_path / "px_sw.py", {"100": "one", "_3XX": "three"})
    ast = python_asterisk(LOOKUP_LOOP, modules=("px_sw",), paths=(str(tmp_path),))
    since = ast.log_offset()
    ast.cli("channel originate Local/s@lookups application Wait 30")
    for i in range(6):    # every generation has 100: a lookup never finds it missing
        write_module(tmp_path / "px_sw.py", {"100": f"one {i}", f"_{4 + i}XX": "other"})
        assert "reloaded successfully" in ast.cli("module reload pbx_python.so")
    line = ast.wait_for_log(r"app_verbose\.c: (RESULT lookups done.*)$", timeout=30,
                            since=since).group(1)
    assert line == "RESULT lookups done, missed 0"
    assert call(ast, "100") == "RESULT one 5"


def test_a_failed_reload_keeps_the_old_table(python_asterisk, tmp_path):
    write_module(tmp_path / "px_sw.py", {"100": "one hundred"})
    ast = python_asterisk(DIALPLAN, modules=("px_sw",), paths=(str(tmp_path),))
    (tmp_path / "px_sw.py").write_text("import pbx_python as px\nsw = px.switch('office')\n"
                                       "@sw.extension('_2[')\ndef bad(chan, exten):\n    pass\n")
    since = ast.log_offset()
    ast.cli("module reload pbx_python.so")
    ast.wait_for_log(r"pbx_python reload failed \(px_sw\)", since=since)
    log = ast.log_text(since)
    assert "pattern '_2[': '[' without ']'" in log
    assert re.search(r"switch office, extension declared at \S*px_sw\.py:\d+", log)
    assert exists(ast, "office", "100") == "1"
    assert call(ast, "100") == "RESULT one hundred"


def test_a_duplicate_extension_fails_the_load_with_both_places(python_asterisk, tmp_path):
    (tmp_path / "px_sw.py").write_text(textwrap.dedent("""\
        import pbx_python as px
        sw = px.switch('office')
        @sw.extension('_2XXX')
        def a(chan, exten):
            pass
        @sw.extension('_2xxx')
        def b(chan, exten):
            pass
        """))
    ast = python_asterisk(DIALPLAN, modules=("px_sw",), paths=(str(tmp_path),))
    ast.wait_for_log(r"Python module px_sw failed to load")
    assert "extension '_2xxx' (at " in ast.log_text() and "is declared twice" in ast.log_text()
    assert exists(ast, "office", "2345") == "0"


# ---- the example in contrib/switch ----

def test_the_contrib_office_switch_loads_and_serves_its_extensions(python_asterisk):
    ast = python_asterisk("[office]\nswitch => Python/office\n", modules=("office",),
                          paths=(str(ROOT / "contrib" / "switch"),))
    assert exists(ast, "office", "2001") == "1"
    assert exists(ast, "office", "900441234567") == "1"
    assert exists(ast, "office", "3000") == "0"
    assert "_2XXX" in ast.cli("python show switches office")


# ---- misuse: a body's bugs cost its own call, never the node ----

def test_a_channel_kept_past_its_body_raises_channel_gone_in_a_later_call(node):
    assert call(node, "keep") == "RESULT kept the channel"
    time.sleep(2.5)                       # the Local channel of that call has ended
    assert call(node, "usekept") == "RESULT kept channel: ChannelGone"


def test_a_channel_used_from_another_thread_raises_channel_thread_error(node):
    assert call(node, "thread") == "RESULT from a thread: ChannelThreadError"


def test_a_body_recursing_without_end_is_a_recursion_error_and_the_node_goes_on(node):
    line = call(node, "deep", marker="RESULT h ran")
    assert "PYTHON_ERROR=RecursionError" in line
    assert call(node, "2000") == "RESULT 2000 ran for 2000"
