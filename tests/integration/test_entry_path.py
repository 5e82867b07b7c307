"""The entry path under many channels (docs/DESIGN.md, "One call"): the GIL queue, Python stacks
kept for new threads, the name cache, and the gil_spin setting."""
from __future__ import annotations

import re
import time

import pytest

from tests.conftest import PYMODS

pytestmark = pytest.mark.integration

DIALPLAN = """\
[default]
exten => names,1,Set(I=0)
 same => n,Set(OUT=)
 same => n,While($[${I} < 100])
 same => n,Set(OUT=${OUT}${PYNAME${I}()},)
 same => n,Set(I=$[${I} + 1])
 same => n,EndWhile()
 same => n,Verbose(0,RESULT NAMES ${OUT})
exten => sleep,1,PySleepInPython(${ARG})
 same => n,Verbose(0,RESULT SLEPT=${SLEPT})
exten => busy,1,PyBusyThread(${ARG})
 same => n,Verbose(0,RESULT BUSY STARTED)
exten => loop,1,Wait(0.2)
 same => n,Set(I=0)
 same => n,While($[${I} < ${COUNT}])
 same => n,Set(L=${PYLEN2(hello)})
 same => n,Set(I=$[${I} + 1])
 same => n,EndWhile()
 same => n,Set(DB(entry/${CUT(CHANNEL(name),/,2)})=I=${I} L=${L})
exten => deep,1,PyDeep(${ARG})
 same => n,Wait(1)
 same => n,Verbose(0,RESULT DEEP=${DEEP})
exten => one,1,Set(L=${PYLEN2(hello)})
 same => n,Wait(${ARG})
 same => n,Verbose(0,RESULT ONE L=${L})
"""


@pytest.fixture
def node(python_asterisk):
    return python_asterisk(DIALPLAN, modules=("px_entry",), paths=(str(PYMODS),))


def result_lines(ast, marker: str, count: int, timeout: float) -> list[str]:
    """The lines Verbose() logged starting with `marker` (not the 'Executing' lines)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in ast.log_text().splitlines() if f"app_verbose.c: {marker}" in ln]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def loops_done(ast, count: int, timeout: float) -> list[str]:
    """The results the `loop` channels stored in AstDB (the log may drop lines when 50 channels
    log every priority: Asterisk's logger queue has a limit)."""
    deadline = time.monotonic() + timeout
    while True:
        values = re.findall(r"^/entry/\S+\s*:\s*(.*?)\s*$", ast.cli("database show entry"), re.M)
        if len(values) >= count or time.monotonic() > deadline:
            ast.cli("database deltree entry")
            return values
        time.sleep(0.1)


def stacks(ast) -> tuple[int, int, int]:
    """(in use, kept for new threads, mapped since the start); the thread running the CLI
    command is one of those in use."""
    text = ast.cli("python show status")
    m = re.search(r"\((\d+) in use, (\d+) kept for new threads, (\d+) mapped since the start",
                  text)
    assert m, text
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def test_more_names_than_the_name_cache_holds_each_reach_their_own_code(node):
    expected = ",".join(f"F{i}" for i in range(100)) + ","
    node.cli("dialplan set global ARG 0")
    for _ in range(2):   # the second round meets every name in the cache or evicted from it
        line = node.run_local("names", "default", "RESULT NAMES", timeout=20)
        assert line.split("RESULT NAMES ", 1)[1] == expected


def test_fifty_channels_calling_python_at_once_all_finish_with_their_results(node):
    node.cli("dialplan set global COUNT 400")
    since = len(node.log_text().splitlines())
    for _ in range(50):
        node.cli("channel originate Local/loop@default application Wait 30")
    values = loops_done(node, 50, timeout=120)
    assert values == ["I=400 L=5"] * 50
    assert " ERROR[" not in "\n".join(node.log_text().splitlines()[since:])


def time_ten_loops(node, count: int) -> tuple[list[str], float]:
    """Ten `loop` channels of `count` Python calls each: their results, and the seconds they
    took from the first originate to the last result."""
    node.cli(f"dialplan set global COUNT {count}")
    started = time.monotonic()
    for _ in range(10):
        node.cli("channel originate Local/loop@default application Wait 30")
    values = loops_done(node, 10, timeout=30)
    return values, time.monotonic() - started


def test_a_channel_sleeping_inside_python_does_not_hold_up_other_channels(node):
    node.cli("dialplan set global ARG 3")
    node.cli("channel originate Local/sleep@default application Wait 30")
    time.sleep(0.3)                      # it is inside time.sleep(3) now
    values, took = time_ten_loops(node, 50)
    assert values == ["I=50 L=5"] * 10
    assert took < 2.5, f"the other channels took {took:.1f} s: they waited for the sleeper"
    assert result_lines(node, "RESULT SLEPT=3", 1, timeout=10)    # and the sleeper finished


def test_channels_calling_python_get_through_while_a_python_thread_keeps_the_gil_busy(node):
    node.cli("dialplan set global ARG 3")
    assert "RESULT BUSY STARTED" in node.run_local("busy", "default", "RESULT BUSY", timeout=10)
    values, took = time_ten_loops(node, 20)
    assert values == ["I=20 L=5"] * 10
    assert took < 2.5, f"{took:.1f} s: entries waited for the busy thread to finish"


def test_stacks_of_ended_channel_threads_are_kept_and_reused(node):
    node.cli("dialplan set global ARG 0")
    before = stacks(node)[2]
    for _ in range(10):
        assert node.run_local("one", "default", "RESULT ONE", timeout=10).endswith("L=5")
    # ten channel threads (and the CLI's) one after the other: the same stacks went round
    assert stacks(node)[2] - before <= 2


def test_at_most_64_stacks_are_kept_for_new_threads(node):
    node.cli("dialplan set global ARG 2")
    for _ in range(70):
        node.cli("channel originate Local/one@default application Wait 30")
    assert len(result_lines(node, "RESULT ONE", 70, timeout=60)) == 70
    deadline = time.monotonic() + 20
    while stacks(node)[0] > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    in_use, kept, created = stacks(node)
    assert created >= 70
    assert in_use + kept == 64 and in_use <= 1    # the CLI thread may have taken one of them


def test_status_shows_how_channels_wait_for_the_gil(node):
    assert re.search(r"^GIL wait:\s+queued, the first in line spins up to 20 us \(gil_spin\)$",
                     node.cli("python show status"), re.M)


def test_gil_spin_zero_turns_the_queue_off_and_calls_still_work(python_asterisk):
    ast = python_asterisk(DIALPLAN, modules=("px_entry",), paths=(str(PYMODS),),
                          extra_general="gil_spin = 0\n")
    assert re.search(r"^GIL wait:\s+CPython's own \(gil_spin = 0\)$",
                     ast.cli("python show status"), re.M)
    ast.cli("dialplan set global COUNT 100")
    for _ in range(10):
        ast.cli("channel originate Local/loop@default application Wait 30")
    assert loops_done(ast, 10, timeout=60) == ["I=100 L=5"] * 10


def test_a_gil_spin_out_of_range_is_refused_with_an_error_naming_the_range(python_asterisk):
    ast = python_asterisk(DIALPLAN, modules=("px_entry",), paths=(str(PYMODS),),
                          extra_general="gil_spin = 5000\n")
    assert re.search(r"ERROR.*pbx_python\.conf: \[general\] gil_spin = '5000': expected "
                     r"microseconds, 0 to 1000 \(0: never spin\); no Python module loaded",
                     ast.log_text())


def python_stack_rss_kb(pid: int) -> list[int]:
    """Resident kB of each Python stack: an 8 MB read-write mapping right above a 64 kB guard
    (no access), as pystack_map() makes them (Asterisk's own thread stacks are 496 kB)."""
    rss, previous, current = [], None, None
    for line in open(f"/proc/{pid}/smaps"):
        fields = line.split()
        if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", fields[0]):
            previous, current = current, {"perms": fields[1]}
        elif fields[0] in ("Size:", "Rss:"):
            current[fields[0]] = int(fields[1])
            if (fields[0] == "Rss:" and current["Size:"] == 8192 and current["perms"] == "rw-p"
                    and previous and previous.get("Size:") == 64 and previous["perms"] == "---p"):
                rss.append(current["Rss:"])
    return rss


def test_a_kept_stack_keeps_only_its_top_in_memory_after_a_deep_recursion(node):
    # 600 levels of recursion through C touch megabytes of a stack (3.12's own C recursion limit,
    # 1500 units at 2 a level, allows about 700); kept for the next thread, the stack gives back
    # all but its top 128 kB
    node.cli("dialplan set global ARG 600")
    for _ in range(10):
        node.cli("channel originate Local/deep@default application Wait 30")
    assert len(result_lines(node, "RESULT DEEP=600", 10, timeout=60)) == 10
    deadline = time.monotonic() + 20
    while stacks(node)[0] > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    resident = python_stack_rss_kb(node.pid)
    assert len(resident) >= 10
    assert max(resident) <= 128, resident
