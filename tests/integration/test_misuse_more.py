"""More of a dialplan author's misuse, each of which took Asterisk down or silently lost or
changed a value: huge strings, signals, AMI header injection, stale identity, many arguments,
str subclasses."""
from __future__ import annotations

import re
import textwrap
import time

import pytest

from tests.conftest import PYMODS
from tests.integration.test_misuse import assert_node_healthy, run

pytestmark = pytest.mark.integration

MANY = 200
DIALPLAN = f"""\
[default]
exten => hello,1,Answer()
 same => n,PyHello(World)
 same => n,Verbose(0,RESULT HELLO=${{HELLO}})
 same => n,Hangup()
exten => h,1,Verbose(0,RESULT HANGUP)
exten => huge,1,PyHuge()
 same => n,Verbose(0,RESULT HUGE=${{HUGE}} BIGVAR_LEN=${{BIGVAR_LEN}})
exten => alarm,1,PyAlarm()
 same => n,Wait(2)
 same => n,Verbose(0,RESULT ALARM=${{ALARM}} HANDLER=${{HANDLER}})
exten => ami,1,PyAmiEvent(${{URIDECODE(caller%0D%0AInjected: yes)}})
 same => n,Verbose(0,RESULT AMI=${{AMI}})
exten => callerid,1,Set(CALLERID(num)=5551234)
 same => n,PyCallerId()
 same => n,Verbose(0,RESULT CID=${{CID}} DIALPLAN=${{CALLERID(num)}})
exten => args,1,PyManyArgs({",".join(f"a{i}" for i in range(MANY))})
 same => n,Verbose(0,RESULT ARGS=${{ARGS}} FIRST=${{FIRST}} LAST=${{LAST}})
exten => intsub,1,PyIntSubclass()
 same => n,Verbose(0,RESULT CONTINUED)
exten => make,1,PyMakeChannel()
 same => n,Verbose(0,RESULT MADE=${{MADE}})
exten => getfunc,1,PyGetFunction()
 same => n,Verbose(0,RESULT GOT=${{GOT}})
exten => strsub,1,PyStrSubclass()
 same => n,Verbose(0,RESULT SUB=${{SUB}} INJECTED=${{INJECTED}})
"""


@pytest.fixture
def node(python_asterisk):
    return python_asterisk(DIALPLAN, modules=("px_demo", "px_misuse_more"), paths=(str(PYMODS),))


def test_strings_longer_than_the_dialplan_allows_raise_value_error_instead_of_crashing(node):
    # Asterisk copies expressions, application data and function values onto the channel
    # thread's ~0.5 MB stack; 1 MB from Python overflowed it (SIGSEGV).
    line = run(node, "huge")
    uses = dict(item.split("=") for item in re.search(r"HUGE=(\S+)", line).group(1).split(","))
    assert uses == dict.fromkeys(
        ["exec_app", "func_read", "eval", "func_write", "set_var_function",
         "set_var_function_name", "ref_func_read", "ref_set_var_function"], "ValueError")
    assert line.endswith("BIGVAR_LEN=1000000")
    assert_node_healthy(node)


def test_signal_alarm_and_signal_handlers_are_refused_instead_of_killing_asterisk(node):
    assert run(node, "alarm") == "RESULT ALARM=SignalsRefused HANDLER=SignalsRefused"
    time.sleep(1)                       # an armed SIGALRM would have ended the process by now
    assert_node_healthy(node)


def test_a_manager_event_header_value_with_crlf_is_refused_and_injects_no_header(node):
    with node.ami() as ami:
        line = run(node, "ami")
        event = ami.wait_event("PyMisuseEvent")
    assert line == "RESULT AMI=ValueError"
    assert event == {**event, "Caller": "plain", "Done": "yes"}     # only the second event
    assert "Injected" not in event


def test_the_caller_id_python_sets_is_what_channel_caller_num_reads_next(node):
    assert run(node, "callerid") == \
        "RESULT CID=5551234>+5551234>Set by exec_app DIALPLAN=+5551234"


def test_get_var_of_a_function_name_reads_the_function_that_set_var_wrote(node):
    assert run(node, "getfunc") == "RESULT GOT=Alice,Alice"       # not the default, silently


def test_an_application_given_200_arguments_gets_each_one_on_its_own(node):
    assert run(node, "args") == f"RESULT ARGS={MANY} FIRST=a0 LAST=a{MANY - 1}"


def test_a_str_subclass_value_is_set_as_the_plain_string_it_holds(node):
    assert run(node, "strsub") == "RESULT SUB=plain INJECTED="


def test_an_application_returning_an_int_subclass_gets_the_number_it_holds(node):
    assert run(node, "intsub") == "RESULT HANGUP"           # -1, whatever its int() says


def test_a_cli_command_returning_a_str_subclass_prints_its_text(node):
    assert node.cli("misuse text") == "text from a subclass\n"
    assert_node_healthy(node)                                # no "pbx_python internal error"


def test_a_function_running_an_application_when_read_by_ami_without_a_channel_fails_the_read(node):
    # AMI Getvar without Channel reads the function on Asterisk's dummy channel (no technology),
    # as CDR and CEL templates do: an application there dereferenced it (SIGSEGV).
    with node.ami() as ami:
        reply = ami.action("Getvar", Variable="PYANNOUNCE()")
    assert reply["Response"] == "Success" and reply["Value"] == ""
    # the logger writes from its own thread: wait for the entry
    node.wait_for_log(r"RuntimeError: cannot run Playback here: this function is read without a "
                      r"call")
    assert_node_healthy(node)


def test_making_a_channel_from_a_number_raises_type_error_instead_of_reading_that_address(node):
    assert run(node, "make") == "RESULT MADE=TypeError"
    assert_node_healthy(node)


def test_an_on_unload_hook_that_never_returns_does_not_wedge_reload_or_shutdown(python_asterisk,
                                                                                tmp_path):
    (tmp_path / "px_stuck.py").write_text(textwrap.dedent("""\
        import threading
        import pbx_python as px

        NEVER = threading.Event()

        @px.on_unload
        def stop(reason):
            NEVER.wait()          # joins a worker that never ends
        """))
    node = python_asterisk(DIALPLAN, modules=("px_demo", "px_stuck"),
                           paths=(str(PYMODS), str(tmp_path)))
    node.cli("module reload pbx_python.so", timeout=20)   # held Asterisk's module list forever
    node.wait_for_log(r"on_unload hooks \(reload\) still running after 5 s")
    assert "pbx_python.so" in node.cli("module show like pbx_python", timeout=5)
    assert_node_healthy(node)
