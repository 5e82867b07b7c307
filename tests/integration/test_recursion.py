"""Recursion in Python code ends in RecursionError, never in a C stack overflow that kills Asterisk.

Asterisk's threads have small stacks (AST_STACKSIZE, about 0.5 MB); every shape below overflowed
one before pbx_python ran Python code on a stack of its own with a budget (docs/DESIGN.md,
"Stack depth").
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MODULES = ("px_demo", "px_recursion")
PYMODS = str(Path(__file__).parents[1] / "pymods")

DIALPLAN = """\
[default]
exten => recurse,1,Answer()
 same => n,PyRecurse(${SHAPE})
 same => n,Verbose(0,RESULT CONTINUED RECURSE_RESULT=[${RECURSE_RESULT}] PYTHON_ERROR=[${PYTHON_ERROR}])
 same => n,Hangup()
exten => threcurse,1,Answer()
 same => n,PyThreadRecurse(${SHAPE})
 same => n,Verbose(0,RESULT THREAD ${RECURSE_RESULT})
 same => n,Hangup()
exten => frecurse,1,Answer()
 same => n,Set(X=${PYRECURSE(${SHAPE})})
 same => n,Verbose(0,RESULT READ X=[${X}])
 same => n,Hangup()
exten => execself,1,Answer()
 same => n,PyExecSelf()
 same => n,Verbose(0,RESULT CONTINUED PYTHON_ERROR=[${PYTHON_ERROR}])
 same => n,Hangup()
exten => evalself,1,Answer()
 same => n,Set(X=${PYEVALSELF()})
 same => n,Verbose(0,RESULT READ X=[${X}])
 same => n,Hangup()
exten => execdepth,1,Answer()
 same => n,PyExecDepth(20)
 same => n,Verbose(0,RESULT EXECDEPTH ${EXEC_DEPTH_DONE})
 same => n,Hangup()
exten => hello,1,Answer()
 same => n,PyHello(again)
 same => n,Verbose(0,RESULT HELLO=${HELLO})
 same => n,Hangup()
exten => h,1,Verbose(0,RESULT HANGUP PYTHON_ERROR=[${PYTHON_ERROR}])
"""

# recursion without end in Python frames, through builtins and C slots, through properties and
# attribute hooks, and over data nested deeper than Python handles
SHAPES = ["plain", "getattr_hook", "getattribute_hook", "property_reads_itself", "repr_of_itself",
          "sort_key", "sort_compare", "map_chain", "filter_chain", "repr_nested_list",
          "json_nested_list", "json_nested_list_indented"]


def run(ast, exten: str, timeout: float = 30, marker: str = "RESULT") -> str:
    """Originate a Local channel into `exten` and return the first `marker` line it logs."""
    return ast.run_local(exten, "default", marker, timeout=timeout)


def start(python_asterisk, shape: str = "", **kwargs):
    dialplan = DIALPLAN.replace("${SHAPE}", shape) if shape else DIALPLAN
    kwargs.setdefault("modules", MODULES)
    return python_asterisk(dialplan, **kwargs)


def assert_logged_recursion_error(ast, what: str) -> None:
    """The Asterisk log shows `what` ended in RecursionError, with a Python traceback."""
    # Asterisk's logger writes from its own thread: wait for the entry rather than read at once
    ast.wait_for_log(rf"ERROR\[\d+\].*Python {what}.* raised an exception:", timeout=15)
    ast.wait_for_log(r"^RecursionError: maximum recursion depth exceeded", timeout=15)
    log = ast.log_text()
    assert "Traceback (most recent call last):" in log
    assert re.search(r"^RecursionError: maximum recursion depth exceeded", log, re.M), log[-3000:]


def assert_still_serving(ast) -> None:
    assert ast.running
    # (the previous call's h extension may still be logging its RESULT HANGUP line)
    assert run(ast, "hello", marker="RESULT HELLO") == "RESULT HELLO=Hello again"


@pytest.mark.parametrize("shape", SHAPES)
def test_recursion_in_an_application_ends_in_recursion_error(python_asterisk, shape):
    ast = start(python_asterisk, shape)
    line = run(ast, "recurse")
    assert re.fullmatch(r"RESULT HANGUP PYTHON_ERROR=\[RecursionError: maximum recursion depth "
                        r"exceeded.*\]", line), line
    assert_logged_recursion_error(ast, "application PyRecurse")
    assert_still_serving(ast)


def test_recursion_in_an_application_with_on_exception_continue_goes_on(python_asterisk):
    ast = start(python_asterisk, "getattr_hook", extra_general="on_exception = continue\n")
    line = run(ast, "recurse")
    assert re.fullmatch(r"RESULT CONTINUED RECURSE_RESULT=\[\] PYTHON_ERROR=\[RecursionError: "
                        r"maximum recursion depth exceeded.*\]", line), line
    assert_still_serving(ast)


@pytest.mark.parametrize("shape", ["getattr_hook", "sort_key", "json_nested_list"])
def test_recursion_in_a_function_read_fails_the_read(python_asterisk, shape):
    ast = start(python_asterisk, shape)
    assert run(ast, "frecurse") == "RESULT READ X=[]"
    assert_logged_recursion_error(ast, "function PYRECURSE")
    assert_still_serving(ast)


@pytest.mark.parametrize("shape", ["getattr_hook", "sort_key", "repr_nested_list"])
def test_recursion_in_a_function_read_from_the_cli_thread_fails_the_read(python_asterisk, shape):
    ast = start(python_asterisk)
    assert ast.eval_function(f"PYRECURSE({shape})") is None
    assert_logged_recursion_error(ast, "function PYRECURSE")
    assert_still_serving(ast)


@pytest.mark.parametrize("shape", ["getattr_hook", "sort_key", "repr_nested_list"])
def test_recursion_in_a_function_read_from_ami_getvar_fails_the_read(python_asterisk, shape):
    ast = start(python_asterisk)
    reply = ast.ami().action("GetVar", Variable=f"PYRECURSE({shape})")
    assert reply.get("Value", "") == "", reply
    assert_logged_recursion_error(ast, "function PYRECURSE")
    assert_still_serving(ast)


@pytest.mark.parametrize("shape", ["sort_compare", "repr_nested_list"])
def test_recursion_in_a_thread_python_started_ends_in_recursion_error(python_asterisk, shape):
    # such threads have their own (8 MB) stacks and keep Python's own limits
    ast = start(python_asterisk, shape)
    assert run(ast, "threcurse") == "RESULT THREAD RecursionError"
    assert_still_serving(ast)


def test_deeply_nested_expression_given_to_eval_does_not_crash(python_asterisk):
    # the parser's own recursion is not counted by Python's limits: it needs a large C stack
    ast = start(python_asterisk, "eval_nested_expression")
    line = run(ast, "recurse")
    # Python 3.11/3.12 refuse it (RecursionError "during compilation"); 3.13 evaluates it
    assert (line == "RESULT CONTINUED RECURSE_RESULT=[-1] PYTHON_ERROR=[]"
            or re.fullmatch(r"RESULT HANGUP PYTHON_ERROR=\[RecursionError: .*\]", line)), line
    assert_still_serving(ast)


def test_application_running_itself_through_asterisk_ends_in_recursion_error(python_asterisk):
    ast = start(python_asterisk)
    line = run(ast, "execself", timeout=60)
    assert re.fullmatch(r"RESULT HANGUP PYTHON_ERROR=\[RecursionError: .*\]", line), line
    assert_logged_recursion_error(ast, "application PyExecSelf")
    assert_still_serving(ast)


def test_application_running_itself_with_on_exception_continue_goes_on(python_asterisk):
    ast = start(python_asterisk, extra_general="on_exception = continue\n")
    line = run(ast, "execself", timeout=60)
    assert re.fullmatch(r"RESULT CONTINUED PYTHON_ERROR=\[RecursionError: .*\]", line), line
    assert_still_serving(ast)


def test_function_reading_itself_through_asterisk_ends_in_recursion_error(python_asterisk):
    ast = start(python_asterisk)
    assert run(ast, "evalself", timeout=60) == "RESULT READ X=[]"
    assert_logged_recursion_error(ast, "function PYEVALSELF")
    assert_still_serving(ast)


def test_function_reading_itself_from_the_cli_thread_ends_in_recursion_error(python_asterisk):
    ast = start(python_asterisk)
    assert not ast.eval_function("PYEVALSELF()", timeout=60)
    assert_logged_recursion_error(ast, "function PYEVALSELF")
    assert_still_serving(ast)


def test_function_reading_itself_from_ami_getvar_ends_in_recursion_error(python_asterisk):
    ast = start(python_asterisk)
    reply = ast.ami().action("GetVar", Variable="PYEVALSELF()")
    assert reply.get("Value", "") == "", reply
    assert_logged_recursion_error(ast, "function PYEVALSELF")
    assert_still_serving(ast)


def test_moderate_recursion_still_works(python_asterisk):
    ast = start(python_asterisk, "moderate")
    line = run(ast, "recurse")
    assert re.fullmatch(r"RESULT CONTINUED RECURSE_RESULT=\[200 \d+ \d+\] PYTHON_ERROR=\[\]", line), line
    assert ast.eval_function("PYRECURSE(moderate)").startswith("200 ")


def test_moderate_reentry_through_asterisk_still_works(python_asterisk):
    ast = start(python_asterisk)
    assert run(ast, "execdepth") == "RESULT EXECDEPTH yes"
    assert not re.search(r"ERROR.*Python", ast.log_text())


def test_recursion_in_a_python_cli_command_fails_the_command(python_asterisk):
    ast = start(python_asterisk)
    out = ast.cli("recursion run getattr_hook")
    assert "Error: the command failed; see the Asterisk log" in out
    assert_logged_recursion_error(ast, "CLI command recursion run")
    assert_still_serving(ast)


def test_recursion_in_module_code_run_by_a_reload_from_the_cli_fails_the_reload(python_asterisk,
                                                                                  tmp_path):
    (tmp_path / "px_reloaded.py").write_text("import pbx_python\n")
    ast = start(python_asterisk, modules=(*MODULES, "px_reloaded"), paths=(PYMODS, str(tmp_path)))
    (tmp_path / "px_reloaded.py").write_text(textwrap.dedent("""\
        import px_recursion
        px_recursion.SHAPES["getattr_hook"]()
        """))
    since = ast.log_offset()
    ast.cli("module reload pbx_python.so")   # the module's code runs on the CLI's thread
    ast.wait_for_log(r"pbx_python reload failed \(px_reloaded\)", since=since)
    assert re.search(r"^RecursionError: maximum recursion depth exceeded", ast.log_text(since), re.M)
    assert_still_serving(ast)


def test_status_and_load_message_show_the_stack_and_recursion_budget(python_asterisk):
    ast = start(python_asterisk)
    status = ast.cli("python show status")
    assert re.search(r"^C stack:\s+8192 KB of its own on each Asterisk thread .*recursion budget "
                     r"\d+ .* per call from Asterisk", status, re.M), status
    assert re.search(r"NOTICE.*pbx_python: Python [\d.]+ C stack: 8192 KB of its own", ast.log_text())
