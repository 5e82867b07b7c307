"""A dialplan author's Python bugs cost at most their own call: what a user observes.

Each test misuses pbx_python as a user might (a Channel kept after its call or used from a
thread, exceptions of every kind, bad values, names and levels, long identities) and checks the
documented result, that Asterisk logged no memory error and that it keeps serving calls.
"""
from __future__ import annotations

import base64
import re
import textwrap
import time
from pathlib import Path

import pytest

from pbx_python.testing import SippUas, free_loopback_host
from pbx_python.testing.configs import pjsip_conf, pjsip_endpoint
from tests.conftest import PYMODS

pytestmark = pytest.mark.integration

MODULES = ("px_demo", "px_misuse")
LONG_CONTEXT = "c" * 79                       # AST_MAX_CONTEXT - 1
LONG_EXTEN = "e" * 79
LONG_NUM = "5" * 200
LONG_CNAME = "N" * 300
LONG_ENDPOINT = "leg-" + "p" * 75             # 79 characters: the longest pjsip.conf section name

DIALPLAN = f"""\
[default]
exten => hello,1,Answer()
 same => n,PyHello(World)
 same => n,Verbose(0,RESULT HELLO=${{HELLO}})
 same => n,Hangup()
exten => keep,1,Answer()
 same => n,PyKeep(some,data)
 same => n,Verbose(0,RESULT KEPT)
 same => n,Hangup()
exten => usekept,1,Answer()
 same => n,PyUseKept()
 same => n,Verbose(0,RESULT USES=${{USES}} REPR=${{KEPT_REPR}})
 same => n,Hangup()
exten => during,1,Answer()
 same => n,Set(FROM_DIALPLAN=dp)
 same => n,PyThreadDuring()
 same => n,Verbose(0,RESULT DURING=${{DURING}} FROM_THREAD=${{FROM_THREAD}})
 same => n,Hangup()
exten => after,1,Answer()
 same => n,PyThreadAfter()
 same => n,Verbose(0,RESULT AFTER STARTED)
 same => n,Hangup()
exten => refhangup,1,Answer()
 same => n,PyRefHangup()
 same => n,Verbose(0,RESULT NOT HUNG UP)
 same => n,Hangup()
exten => _raise-.,1,Answer()
 same => n,PyRaise(${{EXTEN:6}})
 same => n,Verbose(0,RESULT CONTINUED BEFORE=${{BEFORE}} ERR=${{BASE64_ENCODE(${{PYTHON_ERROR}})}})
 same => n,Hangup()
exten => _fread-.,1,Answer()
 same => n,Set(X=${{PYRAISE(${{EXTEN:6}})}})
 same => n,Verbose(0,RESULT FREAD X=[${{X}}] ERR=${{BASE64_ENCODE(${{PYTHON_ERROR}})}})
 same => n,Hangup()
exten => _fwrite-.,1,Answer()
 same => n,Set(PYRAISE(${{EXTEN:7}})=v)
 same => n,Verbose(0,RESULT FWRITE ERR=${{BASE64_ENCODE(${{PYTHON_ERROR}})}})
 same => n,Hangup()
exten => _bad-.,1,Answer()
 same => n,PySetBad(${{EXTEN:4}})
 same => n,Verbose(0,RESULT BAD=${{BAD}} GOOD=${{GOOD}} SV_A=[${{SV_A}}])
 same => n,Hangup()
exten => vip,1,Answer()
 same => n,GotoIf(${{PYISVIP(no)}}?isvip)
 same => n,Verbose(0,RESULT VIP no=${{PYISVIP(no)}} yes=${{PYISVIP(yes)}})
 same => n,Hangup()
 same => n(isvip),Verbose(0,RESULT VIP BRANCHED)
 same => n,Hangup()
exten => _result-.,1,Answer()
 same => n,PyReturn(${{EXTEN:7}})
 same => n,Verbose(0,RESULT RETURN CONTINUED)
 same => n,Hangup()
exten => _value-.,1,Answer()
 same => n,Set(X=${{PYVALUE(${{EXTEN:6}})}})
 same => n,Verbose(0,RESULT VALUE X=[${{X}}])
 same => n,Hangup()
exten => loglevels,1,Answer()
 same => n,PyLogLevels()
 same => n,Verbose(0,RESULT LOGBAD=${{LOGBAD}})
 same => n,Hangup()
exten => dialcause,1,Answer()
 same => n,PyDialCause(PJSIP/{LONG_ENDPOINT})
 same => n,Verbose(0,RESULT DIALCAUSE NAME=${{LEG_NAME}} CAUSE=${{LEG_CAUSE}})
 same => n,Hangup()
exten => h,1,Verbose(0,RESULT HANGUP BEFORE=${{BEFORE}} ERR=${{BASE64_ENCODE(${{PYTHON_ERROR}})}})

[{LONG_CONTEXT}]
exten => {LONG_EXTEN},1,Set(CALLERID(num)={LONG_NUM})
 same => n,Set(CALLERID(name)={LONG_CNAME})
 same => n,PyIdentity()
 same => n,Verbose(0,RESULT IDENTITY NAME=${{ID_NAME}} NUM=${{ID_NUM}} CNAME=${{ID_CNAME}})
 same => n,Hangup()

[misuse-predial]
exten => s,1,PyLegName(${{ARG1}})
 same => n,Return()
"""


def run(ast, exten: str, marker: str = "RESULT", context: str = "default") -> str:
    """Originate a Local channel into `exten` and return the first RESULT line it logs."""
    return ast.run_local(exten, context, marker, timeout=10)


def b64(line: str, key: str = "ERR") -> str:
    """The base64-encoded value `key=...` of a RESULT line, decoded (any bytes shown exactly)."""
    value = re.search(rf"\b{key}=(\S*)", line).group(1)
    return base64.b64decode(value).decode("utf-8", "surrogateescape")


def assert_node_healthy(ast) -> None:
    """No memory error in the log, no internal error, and Asterisk still serves calls."""
    log = ast.log_text()
    assert "FRACK" not in log and "bad magic" not in log
    assert "pbx_python internal error" not in log
    assert ast.running
    assert run(ast, "hello") == "RESULT HELLO=Hello World"


@pytest.fixture
def misuse(python_asterisk):
    def start(**kwargs):
        kwargs.setdefault("modules", MODULES)
        return python_asterisk(DIALPLAN, **kwargs)
    return start


# ---- 1. channel lifetime ----

def test_a_channel_kept_by_a_later_call_raises_channel_gone_on_every_use(misuse):
    ast = misuse()
    assert run(ast, "keep") == "RESULT KEPT"
    line = run(ast, "usekept")
    uses = dict(item.split("=") for item in line.split()[1][len("USES="):].split(","))
    assert uses == dict.fromkeys(
        ["name", "uniqueid", "caller_num", "app_data", "get_var", "set_var", "set_vars", "eval",
         "func_read", "func_write", "exec_app", "is_hungup", "ref"], "ChannelGone")
    assert line.endswith("REPR=<Channel (gone: its call ended)>")
    assert_node_healthy(ast)


def test_a_channel_used_from_another_thread_during_its_call_is_refused(misuse):
    ast = misuse()
    line = run(ast, "during")
    during, from_thread = re.fullmatch(r"RESULT DURING=(.*) FROM_THREAD=(.*)", line).groups()
    items = dict(item.split("=", 1) for item in during.split(","))
    refused = {k: v for k, v in items.items() if not k.startswith("ref.")}
    assert set(refused.values()) == {"ChannelThreadError"} and len(refused) == 13
    assert items["ref.get_var"] == "dp"                    # a ChannelRef works from the thread
    assert items["ref.eval"] == "dp-Up"
    assert items["ref.is_hungup"] == "False"
    assert from_thread == "set by a ChannelRef"            # and its assignment reached the call
    assert_node_healthy(ast)


def test_a_thread_using_the_channel_and_a_channel_ref_after_the_call_gets_channel_gone(misuse):
    ast = misuse()
    since = ast.log_offset()
    assert run(ast, "after") == "RESULT AFTER STARTED"
    line = ast.wait_for_log(r"px_misuse: AFTER-CALL (.*)$", timeout=20, since=since).group(1)
    uses, is_hungup, rep = re.fullmatch(r"(\S+) is_hungup=(\w+) repr=(.*)", line).groups()
    assert set(v for _, v in (u.split("=") for u in uses.split(","))) == {"ChannelGone"}
    assert len(uses.split(",")) == 13 + 5
    assert is_hungup == "True"
    assert re.fullmatch(r"<Channel Local/after@default-\w+;2 \(gone: its call ended\)>", rep)
    assert_node_healthy(ast)


def test_a_channel_ref_hangs_the_call_up_from_another_thread(misuse):
    ast = misuse()
    started = time.monotonic()
    assert run(ast, "refhangup") == "RESULT HANGUP BEFORE= ERR="     # no Python error either
    assert time.monotonic() - started < 5                           # not after Wait(10)
    assert_node_healthy(ast)


# ---- 3. every exception maps to the documented result ----

RAISED = {
    "systemexit": "SystemExit: 3",
    "keyboardinterrupt": "KeyboardInterrupt: stop",
    "generatorexit": "GeneratorExit: gen",
    "custombase": "px_misuse.CustomBase: custom",
    "nul": "ValueError: before\\0after",
    "surrogate": "ValueError: high \\ud800 low \\udfff",
    "escape": "ValueError: byte \\udcff",
    "badstr": "px_misuse.BadStr: <exception str() failed>",
    "badstrbase": "px_misuse.BadStrBase: <exception str() failed>",
    "badrepr": "px_misuse.BadRepr: fine message",
}


@pytest.mark.parametrize("kind", [k for k in RAISED if k not in ("badstr", "badrepr")])
def test_any_exception_from_an_application_is_logged_sets_python_error_and_hangs_up(misuse, kind):
    ast = misuse()
    line = run(ast, f"raise-{kind}")
    assert line.startswith("RESULT HANGUP BEFORE=applied ERR=")   # earlier assignments applied
    assert b64(line) == RAISED[kind]
    log = ast.log_text()
    assert re.search(rf"ERROR\[\d+\].* Python application PyRaise on Local/raise-{kind}@default"
                     r"-\w+;2 raised an exception:", log)
    assert "Traceback (most recent call last):" in log
    assert_node_healthy(ast)


def test_a_very_long_exception_message_is_cut_in_python_error_and_marked(misuse):
    ast = misuse()
    error = b64(run(ast, "raise-long"))
    assert len(error) == 1024
    assert error.startswith("ValueError: xxx") and error.endswith("x [...]")
    assert_node_healthy(ast)


def test_on_exception_continue_is_honoured_for_a_base_exception(misuse):
    ast = misuse(extra_general="on_exception = continue\n")
    line = run(ast, "raise-systemexit")
    assert line.startswith("RESULT CONTINUED BEFORE=applied ERR=")
    assert b64(line) == "SystemExit: 3"
    assert_node_healthy(ast)


@pytest.mark.parametrize("kind", ["systemexit", "keyboardinterrupt", "surrogate", "badstrbase"])
def test_any_exception_from_a_function_read_fails_the_read_with_python_error(misuse, kind):
    ast = misuse()
    line = run(ast, f"fread-{kind}")
    assert line.startswith("RESULT FREAD X=[] ERR=")
    assert b64(line) == RAISED[kind]
    assert re.search(r"ERROR\[\d+\].* Python function PYRAISE on .* raised an exception",
                     ast.log_text())
    assert_node_healthy(ast)


@pytest.mark.parametrize("kind", ["systemexit", "custombase", "nul"])
def test_any_exception_from_a_function_write_fails_the_write_with_python_error(misuse, kind):
    ast = misuse()
    assert b64(run(ast, f"fwrite-{kind}")) == RAISED[kind]
    assert re.search(r"ERROR\[\d+\].* Python function write PYRAISE on .* raised an exception",
                     ast.log_text())
    assert_node_healthy(ast)


def test_a_cli_command_raising_system_exit_fails_that_command_only(misuse):
    ast = misuse()
    assert "Error: the command failed; see the Asterisk log" in ast.cli("misuse raise")
    ast.wait_for_log(r"ERROR\[\d+\].* Python CLI command misuse raise raised an exception:")
    ast.wait_for_log(r"SystemExit: from a CLI command")
    assert_node_healthy(ast)


def test_an_on_load_hook_raising_keyboard_interrupt_fails_its_module_only(misuse, tmp_path):
    (tmp_path / "px_hook.py").write_text(textwrap.dedent("""\
        import pbx_python as px

        @px.on_load
        def hook(config):
            raise KeyboardInterrupt("from on_load")
        """))
    ast = misuse(modules=(*MODULES, "px_hook"), paths=(str(PYMODS), str(tmp_path)))
    assert "Python module px_hook failed to load" in ast.log_text()
    assert "KeyboardInterrupt: from on_load" in ast.log_text()
    assert "FAILED: KeyboardInterrupt: from on_load" in ast.cli("python show status")
    assert_node_healthy(ast)


@pytest.mark.parametrize("case, raised", [
    ("empty-name", "ValueError"),
    ("surrogate-value", "ValueError"),
    ("surrogate-name", "ValueError"),
    ("object-value", "TypeError"),
    ("list-value", "TypeError"),
    ("get-var-empty", "ValueError"),
])
def test_a_bad_name_or_value_raises_at_the_call_in_the_users_code(misuse, case, raised):
    ast = misuse()
    assert run(ast, f"bad-{case}") == f"RESULT BAD={raised} GOOD=kept SV_A=[]"
    assert_node_healthy(ast)


def test_set_vars_with_one_bad_value_records_none_of_them(misuse):
    ast = misuse()
    assert run(ast, "bad-set-vars-one-bad") == "RESULT BAD=ValueError GOOD=kept SV_A=[]"
    assert_node_healthy(ast)


# ---- 4. values ----

def test_a_function_returning_a_bool_gives_1_or_0_and_gotoif_branches_on_it(misuse):
    ast = misuse()
    assert run(ast, "vip") == "RESULT VIP no=0 yes=1"


@pytest.mark.parametrize("kind, error", [
    ("big", "ValueError: application PyReturn returned 4294967296, outside the range of a C int"),
    ("negbig", "ValueError: application PyReturn returned -1099511627776, outside the range"),
    ("true", "TypeError: application PyReturn returned True; expected None or 0"),
    ("str", "TypeError: application PyReturn returned '0'; expected None or 0"),
])
def test_an_application_result_that_is_not_a_c_int_is_logged_and_hangs_up(misuse, kind, error):
    ast = misuse()
    line = run(ast, f"result-{kind}")
    assert line.startswith("RESULT HANGUP BEFORE= ERR=")
    assert b64(line).startswith(error)
    assert re.search(r"ERROR\[\d+\].* Python application PyReturn on .* raised", ast.log_text())


def test_a_function_returning_a_list_fails_the_read_with_a_type_error(misuse):
    ast = misuse()
    assert run(ast, "value-list") == "RESULT VALUE X=[]"
    assert "TypeError: function PYVALUE returned ['a']: a function returns str, bytes, int, " \
        "float, bool or None" in ast.log_text()


# ---- 5. names, levels, lengths ----

def test_a_non_ascii_application_name_is_refused_when_declared(misuse, tmp_path):
    (tmp_path / "px_accent.py").write_text(textwrap.dedent("""\
        import pbx_python as px

        @px.application("PyCaf\u00e9")
        def cafe(chan):
            pass
        """))
    ast = misuse(modules=(*MODULES, "px_accent"), paths=(str(PYMODS), str(tmp_path)))
    assert "ValueError: invalid dialplan name 'PyCaf\u00e9': use ASCII letters, digits, '_' and " \
        "'-'" in ast.log_text()
    assert "FAILED: ValueError: invalid dialplan name" in ast.cli("python show status")
    assert "PyCaf" not in ast.cli("python show applications")
    assert_node_healthy(ast)


def test_px_log_takes_logging_levels_and_refuses_others(misuse):
    ast = misuse()
    assert run(ast, "loglevels") == "RESULT LOGBAD=" + ",".join(["ValueError"] * 7)
    log = ast.log_text()
    assert re.search(r"WARNING\[\d+\].*: px\.log at logging\.WARNING$", log, re.M)
    assert re.search(r"NOTICE\[\d+\].*: px\.log at logging\.INFO$", log, re.M)
    assert re.search(r"ERROR\[\d+\].*: px\.log at logging\.CRITICAL$", log, re.M)
    assert re.search(r"WARNING\[\d+\].*: px\.log at px\.LOG_WARNING$", log, re.M)
    assert "bad level" not in log
    assert_node_healthy(ast)


def test_channel_name_and_caller_id_reach_python_whole(misuse):
    ast = misuse()
    line = run(ast, LONG_EXTEN, context=LONG_CONTEXT)
    name, num, cname = re.fullmatch(r"RESULT IDENTITY NAME=(\S+) NUM=(\S+) CNAME=(\S+)", line).groups()
    assert re.fullmatch(rf"Local/{LONG_EXTEN}@{LONG_CONTEXT}-\w{{8}};2", name)   # 176 characters
    assert (num, cname) == (LONG_NUM, LONG_CNAME)


def test_a_leg_with_a_long_pjsip_endpoint_name_has_its_whole_name_and_its_hangupcause(misuse):
    # The outgoing channel is PJSIP/<79 characters>-<8 hex> (94 characters; pjsip.conf allows no
    # longer endpoint name). Python sees it whole; Asterisk files the leg's cause under the name
    # cut to 79 bytes, which px.hangupcause_key() gives, so classification still finds it.
    peer = free_loopback_host(udp_ports=(5060,), tcp_ports=(), candidates=range(140, 190))
    host = free_loopback_host(candidates=range(60, 140))
    pjsip = pjsip_conf(host) + "\n" + pjsip_endpoint(LONG_ENDPOINT, peer)
    with SippUas(peer, scenario="busy"):
        ast = misuse(host=host, configs={"pjsip.conf": pjsip})
        line = run(ast, "dialcause")
    name, cause = re.fullmatch(r"RESULT DIALCAUSE NAME=(\S+) CAUSE=(.*)", line).groups()
    assert re.fullmatch(rf"PJSIP/{LONG_ENDPOINT}-\w{{8}}", name)
    assert cause == "SIP 486 Busy Here"
