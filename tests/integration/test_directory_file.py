"""The cluster directory from its file, in a real Asterisk: GETEXTENSIONINFO() from the dialplan,
the CLI and AMI, precedence as the dialplan's own, reload, and CallService(ext) with its SOPs."""
from __future__ import annotations

import random
import re

import pytest

from pbx_python.testing.cluster import ClusterSpec, start_cluster, wait_qualified
from dialplan_funcs.directory.table import Entry, Table, TableError
from tests.conftest import MODULE_SO, pbx_python_conf
from tests.integration.test_callservice import pick_hosts

pytestmark = pytest.mark.integration

FILE = "cluster_directory.conf"
DIRECTORY = """\
; extension-or-pattern   primary   secondary   attributes
4711                     sopA      sopB        vm_context=default name="Marie Dupont"
_47XX                    sopC      -           vm_context=other
_5XXX                    sopB      sopC        vm_context=default
_6XXX                    sopC      -
"""

DIALPLAN = """\
[default]
exten => fields,1,Verbose(0,RESULT DEFAULT=[${GETEXTENSIONINFO(4711)}] PRIMARY=[${GETEXTENSIONINFO(4711,primary)}] SECONDARY=[${GETEXTENSIONINFO(4711,secondary)}] FOUND=[${GETEXTENSIONINFO(4711,found)}] PATTERN=[${GETEXTENSIONINFO(4711,pattern)}])
exten => attrs,1,Verbose(0,RESULT NAME=[${GETEXTENSIONINFO(4711,name)}] VM=[${GETEXTENSIONINFO(5123,vm_context)}] NOSUCH=[${GETEXTENSIONINFO(4711,nosuch)}])
exten => nosecondary,1,Verbose(0,RESULT [${GETEXTENSIONINFO(6123)}] SECONDARY=[${GETEXTENSIONINFO(6123,secondary)}])
exten => unknown,1,Verbose(0,RESULT DEFAULT=[${GETEXTENSIONINFO(9999)}] FOUND=[${GETEXTENSIONINFO(9999,found)}] PRIMARY=[${GETEXTENSIONINFO(9999,primary)}] ERROR=[${PYTHON_ERROR}])
exten => misuse,1,Verbose(0,RESULT EXTRA=[${GETEXTENSIONINFO(4711,primary,more)}] FIELD=[${GETEXTENSIONINFO(4711,na-me)}])
exten => precedence,1,Verbose(0,RESULT EXACT=[${GETEXTENSIONINFO(4711,pattern)}] PATTERN=[${GETEXTENSIONINFO(4712,pattern)}] PRIMARY=[${GETEXTENSIONINFO(4712)}])
"""


def directory_conf(extra: str = "") -> str:
    return f"[directory]\nfile = {FILE}\n{extra}"


@pytest.fixture
def node(python_asterisk):
    def start(directory: str = DIRECTORY, dialplan: str = DIALPLAN):
        return python_asterisk(dialplan, modules=("dialplan_funcs.directory",),
                               extra_sections=directory_conf(), configs={FILE: directory})
    return start


def reload(ast) -> None:
    assert "reloaded successfully" in ast.cli("module reload pbx_python.so")


# ---------------------------------------------------------------------------- dialplan

def test_dialplan_reads_the_default_value_and_each_field(node):
    ast = node()
    assert ast.run_local("fields") == ("RESULT DEFAULT=[sopA,sopB] PRIMARY=[sopA] "
                                       "SECONDARY=[sopB] FOUND=[1] PATTERN=[4711]")


def test_dialplan_reads_attributes_by_name_and_an_unknown_one_as_empty(node):
    ast = node()
    assert ast.run_local("attrs") == "RESULT NAME=[Marie Dupont] VM=[default] NOSUCH=[]"


def test_entry_without_secondary_reads_primary_and_a_comma(node):
    ast = node()
    assert ast.run_local("nosecondary") == "RESULT [sopC,] SECONDARY=[]"


def test_unknown_extension_reads_empty_and_found_0_without_error(node):
    ast = node()
    since = ast.log_offset()
    assert ast.run_local("unknown") == "RESULT DEFAULT=[] FOUND=[0] PRIMARY=[] ERROR=[]"
    assert not re.search(r"(WARNING|ERROR)\[", ast.log_text(since))


def test_misuse_reads_empty_with_a_warning_naming_the_mistake(node):
    ast = node()
    since = ast.log_offset()
    assert ast.run_local("misuse") == "RESULT EXTRA=[] FIELD=[]"
    log = ast.log_text(since)
    assert re.search(r"WARNING\[.*GETEXTENSIONINFO: 1 argument\(s\) too many", log)
    assert re.search(r"WARNING\[.*GETEXTENSIONINFO\(4711,na-me\): the field is not", log)


def test_exact_extension_beats_the_pattern_that_also_matches_it(node):
    ast = node()
    assert ast.run_local("precedence") == "RESULT EXACT=[4711] PATTERN=[_47XX] PRIMARY=[sopC,]"


# ---------------------------------------------------------------------------- CLI and AMI

def test_cli_evaluates_the_function(node):
    ast = node()
    assert ast.eval_function("GETEXTENSIONINFO(4711,name)") == "Marie Dupont"


def test_cli_shows_source_location_entries_and_no_error(node):
    ast = node()
    out = ast.cli("callservice show directory")
    assert re.search(r"^Source:\s+file$", out, re.M)
    assert re.search(rf"^Location:\s+{re.escape(str(ast.etc / FILE))}$", out, re.M)
    assert re.search(r"^Entries:\s+4$", out, re.M)
    assert re.search(r"^Loaded:\s+\S+ \S+ \(\d+ s ago\)$", out, re.M)
    assert re.search(r"^Last error:\s+none$", out, re.M)


def test_cli_shows_the_entry_an_extension_gives(node):
    ast = node()
    out = ast.cli("callservice show directory 5123")
    assert re.search(r"^Entry:\s+_5XXX \(pattern\)$", out, re.M)
    assert re.search(r"^Primary:\s+sopB$", out, re.M)
    assert re.search(r"^Secondary:\s+sopC$", out, re.M)
    assert re.search(r"^\s+vm_context = default$", out, re.M)


def test_cli_says_when_an_extension_is_not_in_the_directory(node):
    ast = node()
    assert ast.cli("callservice show directory 9999").strip() == "9999: not in the directory"


def test_function_is_documented_in_core_show(node):
    ast = node()
    out = ast.cli("core show function GETEXTENSIONINFO")
    assert "GETEXTENSIONINFO(extension[,field])" in out
    for word in ("primary", "secondary", "found", "pattern", "attribute"):
        assert word in out


def test_ami_getvar_reads_the_function(node):
    ast = node()
    with ast.ami() as ami:
        reply = ami.action("Getvar", Variable="GETEXTENSIONINFO(5123)")
        assert reply.get("Value") == "sopB,sopC"
        reply = ami.action("Getvar", Variable="GETEXTENSIONINFO(9999,found)")
        assert reply.get("Value") == "0"


# ---------------------------------------------------------------------------- file and reload

def test_reload_picks_up_a_changed_file(node):
    ast = node()
    ast.write_config(FILE, DIRECTORY.replace("4711                     sopA      sopB",
                                             "4711                     sopC      sopA"))
    reload(ast)
    assert ast.eval_function("GETEXTENSIONINFO(4711)") == "sopC,sopA"


def test_bad_line_on_reload_keeps_the_old_directory_and_logs_its_line(node):
    ast = node()
    ast.write_config(FILE, "4711 sopC -\n\n_9[12 sopA -\n")
    since = ast.log_offset()
    reload(ast)
    ast.wait_for_log(r"ERROR\[.*cluster directory .*cluster_directory\.conf not loaded", since=since)
    assert re.search(r"^line 3: pattern '_9\[12': '\[' without '\]'", ast.log_text(since), re.M)
    assert ast.eval_function("GETEXTENSIONINFO(4711)") == "sopA,sopB"
    out = ast.cli("callservice show directory")
    assert re.search(r"^Entries:\s+4$", out, re.M)
    assert re.search(r"^Last error:\s+.*line 3: ", out, re.M)


def test_bad_file_at_first_load_gives_an_empty_directory_and_shows_the_error(node):
    ast = node(directory="4711 sopA -\n4712\n")
    assert ast.eval_function("GETEXTENSIONINFO(4711,found)") == "0"
    out = ast.cli("callservice show directory")
    assert re.search(r"^Entries:\s+0$", out, re.M)
    assert re.search(r"^Last error:\s+.*line 2: expected", out, re.M)
    assert re.search(r"ERROR\[.*line 2: expected", ast.log_text(), re.S)


# ---------------------------------------------------------------------------- Asterisk's own matching

def random_patterns(rng: random.Random, count: int) -> Table:
    """Exact extensions and patterns of every kind, as a valid Table."""
    elements = ["1", "2", "5", "7", "0", "X", "Z", "N", "[1-3]", "[05]", "[2-6]", "[0-9]", "-",
                "[4-8]"]
    entries: dict[str, Entry] = {}
    while len(entries) < count:
        if rng.random() < 0.2:
            pattern = "".join(rng.choice("0125") for _ in range(rng.randint(1, 4)))
        else:
            pattern = "_" + "".join(rng.choice(elements) for _ in range(rng.randint(1, 4)))
            pattern += rng.choice(["", "", "", ".", "!"])
        candidate = {**entries, pattern: Entry(pattern, "sopA", "", {})}
        try:
            Table(candidate.values())
        except TableError:
            continue      # invalid, or the same pattern spelt another way
        entries = candidate
    return Table(entries.values())


def test_lookup_agrees_with_asterisks_own_matching(python_asterisk):
    """Each pattern becomes an extension of a context whose body returns the pattern: Asterisk
    finds the extension for each number as a call would, and the directory must agree."""
    rng = random.Random(9)
    table = random_patterns(rng, 60)
    numbers = sorted({"".join(rng.choice("0123456789") for _ in range(rng.randint(1, 5)))
                      for _ in range(400)})
    lines = ["[xc]"] + [f"exten => {e.pattern},1,Return({e.pattern})" for e in table.entries]
    lines += ["[default]", "exten => run,1,NoOp()"]
    for i, number in enumerate(numbers):
        lines += [" same => n,Set(GOSUB_RETVAL=NONE)",
                  f" same => n,GotoIf($[${{DIALPLAN_EXISTS(xc,{number},1)}}]?:s{i})",
                  f" same => n,Gosub(xc,{number},1)",
                  f" same => n(s{i}),Verbose(0,XC {number} ${{GOSUB_RETVAL}})"]
    lines += [" same => n,Verbose(0,XC DONE END)"]
    ast = python_asterisk("\n".join(lines) + "\n", modules=("dialplan_funcs.directory",),
                          extra_sections=directory_conf(), configs={FILE: ""}, verbose=0)
    since = ast.log_offset()
    ast.cli("channel originate Local/run@default application Wait 1")
    ast.wait_for_log(r"XC DONE END", since=since, timeout=60)
    asterisk = dict(re.findall(r"app_verbose\.c: XC (\S+) (\S+)$", ast.log_text(since), re.M))
    python = {n: (table.lookup(n).pattern if table.lookup(n) else "NONE") for n in numbers}
    assert len(asterisk) == len(numbers) + 1          # every number, and DONE
    del asterisk["DONE"]
    assert sum(v != "NONE" for v in python.values()) > 100   # the check is not vacuous
    assert asterisk == python


# ---------------------------------------------------------------------------- CallService(ext)

CS_DIRECTORY = """\
2000   sopB   sopA
_21XX  sopA   -
"""


def cs_extensions(node: str) -> str:
    result = "Verbose(0,RESULT STATUS=${CALLSERVICE_STATUS} SOP=${CALLSERVICE_SOP} " \
             "TRIED=${CALLSERVICE_TRIED})"
    return f"""\
[general]
static = yes

[phones]
exten => directory,1,CallService(2000,,,alpha)
 same => n,{result}
exten => pattern,1,CallService(2105)
 same => n,{result}
exten => notfound,1,CallService(2999)
 same => n,{result}

[callservice-in]
exten => _2XXX,1,Answer()
 same => n,Verbose(0,SERVICE ${{EXTEN}} NODE={node} P1=[${{INITSERVICE(Parameter1)}}])
 same => n,Wait(0.2)
 same => n,Hangup()
"""


@pytest.fixture
def cs_cluster(asterisk_factory):
    def start(modules=("dialplan_funcs.directory",)):
        spec = ClusterSpec(sops=pick_hosts(("sopA", "sopB")), modules=list(modules),
                           extra_callservice=directory_conf(),
                           extra_configs={FILE: CS_DIRECTORY})
        nodes = start_cluster(spec, cs_extensions, MODULE_SO, asterisk_factory)
        wait_qualified(nodes)
        return nodes
    return start


def call(node, exten: str, timeout: float = 15) -> str:
    since = node.log_offset()
    node.cli(f"channel originate Local/{exten}@phones application Wait 5")
    return node.wait_for_log(r"app_verbose\.c: (RESULT .*)$", timeout=timeout, since=since).group(1)


def test_callservice_without_sops_routes_to_the_directory_primary(cs_cluster):
    nodes = cs_cluster()
    b_since = nodes["sopB"].log_offset()
    assert call(nodes["sopA"], "directory") == "RESULT STATUS=ANSWER SOP=sopB TRIED=sopB:ANSWER"
    nodes["sopB"].wait_for_log(r"SERVICE 2000 NODE=sopB P1=\[alpha\]", since=b_since)


def test_callservice_without_sops_follows_a_directory_pattern(cs_cluster):
    nodes = cs_cluster()
    assert call(nodes["sopA"], "pattern") == "RESULT STATUS=ANSWER SOP=sopA TRIED=sopA:ANSWER"


def test_callservice_for_an_extension_not_in_the_directory_is_notfound(cs_cluster):
    nodes = cs_cluster()
    since = nodes["sopA"].log_offset()
    assert call(nodes["sopA"], "notfound") == "RESULT STATUS=NOTFOUND SOP= TRIED="
    assert re.search(r"WARNING\[.*CallService on .*extension 2999 is not in the cluster "
                     r"directory; no call placed", nodes["sopA"].log_text(since))
    assert "SERVICE" not in nodes["sopB"].log_text()


def test_callservice_without_sops_and_without_directory_is_invalidargs(cs_cluster):
    nodes = cs_cluster(modules=())
    since = nodes["sopA"].log_offset()
    assert call(nodes["sopA"], "directory") == "RESULT STATUS=INVALIDARGS SOP= TRIED="
    assert re.search(r"WARNING\[.*the cluster directory is not loaded",
                     nodes["sopA"].log_text(since))


def test_show_directory_and_show_sops_work_side_by_side(cs_cluster):
    nodes = cs_cluster()
    sops = nodes["sopA"].cli("callservice show sops")
    directory = nodes["sopA"].cli("callservice show directory")
    assert re.search(r"^sopB\s+remote", sops, re.M)
    assert re.search(r"^Entries:\s+2$", directory, re.M)


def test_a_reload_rolled_back_by_another_module_keeps_the_old_directory(node):
    # the directory loads its new file, then another listed module fails: the whole reload is
    # undone, and the directory in service is the one from before the reload
    ast = node()
    ast.write_config(FILE, DIRECTORY.replace("4711                     sopA      sopB",
                                             "4711                     sopC      sopA"))
    ast.write_config("pbx_python.conf", pbx_python_conf(
        ("dialplan_funcs.directory", "no_such_module_for_this_test"),
        extra_sections=directory_conf()))
    ast.cli("module reload pbx_python.so")
    assert ast.eval_function("GETEXTENSIONINFO(4711)") == "sopA,sopB"
    assert re.search(r"^Entries:\s+4$", ast.cli("callservice show directory"), re.M)
    ast.write_config("pbx_python.conf", pbx_python_conf(("dialplan_funcs.directory",),
                                                        extra_sections=directory_conf()))
    reload(ast)                             # the next good reload takes the new file
    assert ast.eval_function("GETEXTENSIONINFO(4711)") == "sopC,sopA"
