"""pbx_python.so inside a real Asterisk: what a dialplan author and an administrator observe."""
from __future__ import annotations

import re
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DIALPLAN = """\
[default]
exten => hello,1,Answer()
 same => n,PyHello(World)
 same => n,Verbose(0,RESULT HELLO=${HELLO})
 same => n,Hangup()
exten => args,1,Answer()
 same => n,PyArgs(${ARGSTR})
 same => n,Verbose(0,RESULT ARGC=${ARGC} [${ARG1}] [${ARG2}] [${ARG3}] [${ARG4}] [${ARG5}])
 same => n,Hangup()
exten => func,1,Answer()
 same => n,Verbose(0,RESULT UP=${PYUPPER(abc def)})
 same => n,Set(PYREVERSE()=olleh)
 same => n,Verbose(0,RESULT REVERSED=${REVERSED} REV=${PYREVERSE(abc)})
 same => n,Hangup()
exten => fail,1,Answer()
 same => n,PyFail(boom)
 same => n,Verbose(0,RESULT AFTER-FAIL)
 same => n,Hangup()
exten => ffail,1,Answer()
 same => n,Set(X=${PYFAIL()})
 same => n,Verbose(0,RESULT FFAIL X=[${X}])
 same => n,Hangup()
exten => exec,1,Answer()
 same => n,PyExec(Set,SET_BY_APP=from-set)
 same => n,Verbose(0,RESULT EXEC ${EXEC_RESULT} ${SEEN_AFTER} ${BEFORE_EXEC})
 same => n,Hangup()
exten => log,1,Answer()
 same => n,PyLog(hi)
 same => n,Hangup()
exten => info,1,Answer()
 same => n,Set(CALLERID(num)=5551234)
 same => n,PyInfo()
 same => n,Verbose(0,RESULT INFO ${INFO})
 same => n,Hangup()
exten => case,1,Answer()
 same => n,pyhello(Case)
 same => n,Verbose(0,RESULT CASE HELLO=${HELLO})
 same => n,Hangup()
exten => nul,1,Answer()
 same => n,Set(X=${PYNUL()})
 same => n,Verbose(0,RESULT NUL X=[${X}])
 same => n,Hangup()
exten => long,1,Answer()
 same => n,PyFuncLen(PYREPEAT(100000))
 same => n,Verbose(0,RESULT LONG ${FLEN})
 same => n,Hangup()
exten => rowrite,1,Answer()
 same => n,Set(PYUPPER()=x)
 same => n,Verbose(0,RESULT ROWRITE)
 same => n,Hangup()
exten => h,1,Verbose(0,RESULT HANGUP PYTHON_ERROR=[${PYTHON_ERROR}])
"""


def run(ast, exten: str, marker: str = "RESULT", timeout: float = 10, setvars: str = "") -> str:
    """Originate a Local channel into `exten` and return the first RESULT line it logs."""
    return ast.run_local(exten, "default", marker, timeout=timeout)


def test_application_sets_a_variable_the_dialplan_reads(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    assert run(ast, "hello") == "RESULT HELLO=Hello World"


@pytest.mark.parametrize("argstr, expected", [
    ('a,b', "ARGC=2 [a] [b] [] [] []"),
    ('a,"b,c",d', "ARGC=3 [a] [b,c] [d] [] []"),
    ('x\\,y,z', "ARGC=2 [x,y] [z] [] [] []"),
    ('a,,c', "ARGC=3 [a] [] [c] [] []"),
    ('f(1,2),g', "ARGC=2 [f(1,2)] [g] [] [] []"),
])
def test_arguments_are_split_by_asterisks_own_parser(python_asterisk, argstr, expected):
    dialplan = DIALPLAN.replace("PyArgs(${ARGSTR})", f"PyArgs({argstr})")
    ast = python_asterisk(dialplan)
    assert run(ast, "args") == f"RESULT {expected}"


def test_function_read_and_write_from_the_dialplan(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    assert run(ast, "func") == "RESULT UP=ABC DEF"
    line = ast.wait_for_log(r"app_verbose\.c: (RESULT REVERSED=.*)$").group(1)
    assert line == "RESULT REVERSED=hello REV=cba"


def test_function_read_from_the_cli_thread(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    assert ast.eval_function("PYUPPER(from cli)") == "FROM CLI"
    # the CLI evaluates on a dummy channel, in the CLI's own thread
    assert ast.eval_function("PYCHAN()").startswith("CLIEval/")


def test_function_read_from_ami_getvar_without_a_channel(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    reply = ast.ami().action("GetVar", Variable="PYUPPER(via ami)")
    assert reply.get("Response") == "Success", reply
    assert reply.get("Value") == "VIA AMI"


def test_application_names_are_case_insensitive_in_the_dialplan(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    assert run(ast, "case") == "RESULT CASE HELLO=Hello Case"


def test_function_value_with_a_nul_fails_the_read_with_a_log_line(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    assert run(ast, "nul") == "RESULT NUL X=[]"
    assert re.search(r"ERROR.*Python function PYNUL on .*raised an exception", ast.log_text())
    assert "returned a value with a NUL character" in ast.log_text()


def test_long_function_value_is_returned_whole(python_asterisk):
    # the dialplan's ${} substitution caps values at 4 kB (Asterisk's own limit); a read2
    # caller (here Python, through ast_func_read2) gets the whole value
    ast = python_asterisk(DIALPLAN)
    assert run(ast, "long") == "RESULT LONG 100000"


def test_writing_a_read_only_function_is_refused_with_a_log_line(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    assert run(ast, "rowrite") == "RESULT ROWRITE"
    assert re.search(r"ERROR.*Function PYUPPER is read-only: write refused", ast.log_text())


def _thread_states(ast) -> int:
    return int(re.search(r"^Thread states:\s+(\d+)", ast.cli("python show status"), re.M).group(1))


def test_python_thread_states_end_with_their_channel_threads(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    baseline = _thread_states(ast)
    for i in range(20):
        assert run(ast, "hello") == "RESULT HELLO=Hello World"
    deadline = time.monotonic() + 10
    while _thread_states(ast) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _thread_states(ast) == baseline
    assert re.search(r"^PyHello\s+px_demo\s+20\s+0$", ast.cli("python show applications"), re.M)


@pytest.mark.parametrize("first", ["function", "cli"])
def test_one_thread_using_python_functions_and_python_cli_commands_ends_cleanly(python_asterisk, first):
    # an AMI session is one Asterisk thread: GetVar reads a Python function (C-API path) and
    # Command runs a Python CLI command (cffi path); either may create the thread's Python state
    ast = python_asterisk(DIALPLAN)
    baseline = _thread_states(ast)
    for _ in range(3):
        with ast.ami() as ami:
            steps = [lambda: ami.action("GetVar", Variable="PYUPPER(x)").get("Value"),
                     lambda: ami.action("Command", Command="python show status").get("Response")]
            if first == "cli":
                steps.reverse()
            assert sorted(step() for step in steps) == ["Success", "X"]
    deadline = time.monotonic() + 10
    while _thread_states(ast) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _thread_states(ast) == baseline
    assert ast.eval_function("PYUPPER(still up)") == "STILL UP"


def test_core_show_application_shows_the_python_docs(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    out = ast.cli("core show application PyHello")
    assert "Set HELLO to a greeting" in out
    assert "Syntax: PyHello(name[,greeting])" in out
    assert "greeting: the word to use (default Hello)" in out


def test_core_show_function_shows_the_python_docs(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    out = ast.cli("core show function PYUPPER")
    assert "Upper-case text" in out
    assert "PYUPPER(text)" in out


def test_exception_in_application_logs_traceback_and_hangs_up(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    line = run(ast, "fail")
    assert line == "RESULT HANGUP PYTHON_ERROR=[RuntimeError: PyFail was asked to fail: boom]"
    log = ast.log_text()
    assert re.search(r"ERROR\[\d+\].* px_demo\.py: Python application PyFail on Local/fail@default", log)
    assert "Traceback (most recent call last):" in log
    assert "RESULT AFTER-FAIL" not in log


def test_exception_with_on_exception_continue_goes_on_in_the_dialplan(python_asterisk):
    ast = python_asterisk(DIALPLAN, extra_general="on_exception = continue\n")
    assert run(ast, "fail") == "RESULT AFTER-FAIL"
    assert "RuntimeError: PyFail was asked to fail: boom" in ast.log_text()


def test_exception_in_function_read_fails_the_read_with_a_log_line(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    assert run(ast, "ffail") == "RESULT FFAIL X=[]"
    assert re.search(r"ERROR.*Python function PYFAIL on .*raised an exception", ast.log_text())
    assert ast.eval_function("PYFAIL()") is None


def test_python_can_run_another_application_on_its_channel(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    assert run(ast, "exec") == "RESULT EXEC 0 from-set set-before"


def test_channel_identity_is_visible_to_python(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    line = run(ast, "info")
    assert re.fullmatch(r"RESULT INFO Local/info@default-\w+;2\|default\|info\|3\|5551234\|Local", line)


def test_logging_and_print_go_to_the_asterisk_log(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    run(ast, "log", marker="RESULT HANGUP")
    log = ast.log_text()
    assert re.search(r"WARNING\[\d+\]\[C-\w+\] px_demo\.py: px_demo: logging says hi", log)
    assert re.search(r"NOTICE\[\d+\]\[C-\w+\] python-stdout: print says hi", log)


def test_python_show_commands_list_apps_functions_and_status(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    run(ast, "hello")
    apps = ast.cli("python show applications")
    assert re.search(r"^PyHello\s+px_demo\s+1\s+0$", apps, re.M)
    funcs = ast.cli("python show functions")
    assert re.search(r"^PYREVERSE\s+px_demo\s+yes\s+0\s+0$", funcs, re.M)
    status = ast.cli("python show status")
    assert re.search(rf"Virtual env:\s+{re.escape(sys.prefix)}$", status, re.M)  # the tests' venv
    assert "px_demo" in status and "ok" in status
    assert re.search(r"Last load:\s+load at .*: 1 module\(s\) ok", status)


def test_unload_is_refused_with_a_clear_message(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    out = ast.cli("module unload pbx_python.so")
    assert "Unable to unload resource pbx_python.so" in out
    assert "pbx_python cannot be unloaded while Asterisk runs" in ast.log_text()
    assert run(ast, "hello") == "RESULT HELLO=Hello World"   # still serving


def test_graceful_stop_ends_cleanly(python_asterisk):
    ast = python_asterisk(DIALPLAN)
    run(ast, "hello")
    assert ast.stop(graceful=True) == 0
    assert "pbx_python: Asterisk is shutting down" in ast.log_text()


def test_missing_config_makes_the_module_decline_and_asterisk_runs_on(asterisk_factory):
    from tests.conftest import MODULE_SO  # noqa: PLC0415
    ast = asterisk_factory(modules=[MODULE_SO], configs={"extensions.conf": "[default]\n"})
    ast.start()
    assert "Cannot read pbx_python.conf: pbx_python will not load" in ast.log_text()
    assert "Not Running" in ast.cli("module show like pbx_python")
    assert "Asterisk" in ast.cli("core show version")


def test_broken_module_is_logged_and_the_others_are_served(python_asterisk, tmp_path):
    (tmp_path / "px_broken.py").write_text("import pbx_python\nraise ImportError('deliberately broken')\n")
    ast = python_asterisk(DIALPLAN, modules=("px_demo", "px_broken"),
                          paths=(str(Path(__file__).parents[1] / "pymods"), str(tmp_path)))
    log = ast.log_text()
    assert "Python module px_broken failed to load" in log
    assert "ImportError: deliberately broken" in log
    assert run(ast, "hello") == "RESULT HELLO=Hello World"
    assert "FAILED: ImportError: deliberately broken" in ast.cli("python show status")


def _write_module(path: Path, greeting: str, extra: str = "") -> None:
    path.write_text(textwrap.dedent(f"""\
        import pbx_python as px

        @px.application("PyGreet", synopsis="greet")
        def greet(chan):
            chan.set_var("GREET", "{greeting}")
        """) + extra)


GREET_DIALPLAN = """\
[default]
exten => greet,1,Answer()
 same => n,PyGreet()
 same => n,Verbose(0,RESULT GREET=${GREET})
 same => n,Hangup()
exten => slow,1,Answer()
 same => n,PySlow()
 same => n,Verbose(0,RESULT SLOW=${SLOW})
 same => n,Hangup()
exten => gone,1,Answer()
 same => n,PyGone()
 same => n,Hangup()
exten => h,1,Verbose(0,RESULT HANGUP)
"""


def test_reload_replaces_the_python_code(python_asterisk, tmp_path):
    _write_module(tmp_path / "px_greet.py", "one")
    ast = python_asterisk(GREET_DIALPLAN, modules=("px_greet",), paths=(str(tmp_path),))
    assert run(ast, "greet") == "RESULT GREET=one"
    _write_module(tmp_path / "px_greet.py", "two")
    assert "reloaded successfully" in ast.cli("module reload pbx_python.so")
    assert run(ast, "greet") == "RESULT GREET=two"


def test_failed_reload_keeps_the_old_code_and_logs_why(python_asterisk, tmp_path):
    _write_module(tmp_path / "px_greet.py", "one")
    ast = python_asterisk(GREET_DIALPLAN, modules=("px_greet",), paths=(str(tmp_path),))
    (tmp_path / "px_greet.py").write_text("import pbx_python as px\ndef broken(:\n")
    since = ast.log_offset()
    ast.cli("module reload pbx_python.so")
    log = ast.wait_for_log(r"pbx_python reload failed \(px_greet\)", since=since)
    assert "SyntaxError" in ast.log_text(since)
    assert run(ast, "greet") == "RESULT GREET=one"
    assert "reload failed" in ast.cli("python show status")
    assert log


def test_application_removed_by_reload_answers_with_a_logged_error(python_asterisk, tmp_path):
    _write_module(tmp_path / "px_greet.py", "one", extra=textwrap.dedent("""
        @px.application("PyGone", synopsis="removed later")
        def gone(chan):
            pass
        """))
    ast = python_asterisk(GREET_DIALPLAN, modules=("px_greet",), paths=(str(tmp_path),))
    _write_module(tmp_path / "px_greet.py", "two")
    ast.cli("module reload pbx_python.so")
    assert run(ast, "gone") == "RESULT HANGUP"
    assert "Application PyGone is no longer provided by any Python module" in ast.log_text()


CONCURRENT_DIALPLAN = """\
[default]
exten => conc,1,Answer()
 same => n,Set(I=0)
 same => n,Set(ME=${CHANNEL(uniqueid)})
 same => n,While($[${I} < 300])
 same => n,PyEcho(${ME}-${I})
 same => n,GotoIf($["${ECHO}" != "${ME}-${I}|${ME}"]?bad)
 same => n,GotoIf($["${PYUPPER(${ME}-${I})}" != "${TOUPPER(${ME}-${I})}"]?bad)
 same => n,Set(I=$[${I} + 1])
 same => n,EndWhile()
 same => n,Verbose(0,CONC-OK ${ME})
 same => n,Hangup()
 same => n(bad),Verbose(0,CONC-MIXUP ${ME} at ${I}: ${ECHO})
 same => n,Hangup()
"""


def test_fifty_concurrent_channels_run_python_without_mixups(python_asterisk):
    ast = python_asterisk(CONCURRENT_DIALPLAN, verbose=0)
    for _ in range(50):
        ast.cli("channel originate Local/conc@default application Wait 5")
    log = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        log = ast.log_text()
        if len(re.findall(r"app_verbose\.c: CONC-", log)) >= 50:
            break
        time.sleep(0.2)
    assert re.findall(r"app_verbose\.c: (CONC-MIXUP .*)", log) == []
    assert len(re.findall(r"app_verbose\.c: CONC-OK ", log)) == 50
    assert not re.search(r"ERROR.*Python", log)
    assert re.search(r"^PyEcho\s+px_demo\s+15000\s+0$", ast.cli("python show applications"), re.M)


def test_channel_inside_an_application_during_a_reload_finishes_with_its_code(python_asterisk, tmp_path):
    slow = textwrap.dedent("""
        @px.application("PySlow", synopsis="waits, then sets SLOW")
        def slow(chan):
            chan.exec_app("Wait", "1.5")
            chan.set_var("SLOW", "{version}")
        """)
    _write_module(tmp_path / "px_greet.py", "one", extra=slow.format(version="one"))
    ast = python_asterisk(GREET_DIALPLAN, modules=("px_greet",), paths=(str(tmp_path),))
    since = ast.log_offset()
    ast.cli("channel originate Local/slow@default application Wait 5")
    ast.wait_for_log(r"Executing \[slow@default:2\] PySlow", since=since)
    _write_module(tmp_path / "px_greet.py", "two", extra=slow.format(version="two"))
    assert "reloaded successfully" in ast.cli("module reload pbx_python.so")
    line = ast.wait_for_log(r"app_verbose\.c: (RESULT SLOW=.*)$", since=since).group(1)
    assert line == "RESULT SLOW=one"
    since = ast.log_offset()
    ast.cli("channel originate Local/slow@default application Wait 5")
    assert ast.wait_for_log(r"app_verbose\.c: (RESULT SLOW=.*)$", since=since).group(1) == \
        "RESULT SLOW=two"
    assert not re.search(r"ERROR.*python", ast.log_text(since), re.I)
