#!/usr/bin/env python3
"""CallService demo: a three-SOP cluster on loopback, with SIPp playing the phones.

    make demo                       # builds what is missing, then runs this script
    make demo DEMO_ARGS=--directory=file        # only the part with the directory file
    make demo DEMO_ARGS=--directory=postgresql  # only the part with the PostgreSQL directory
    ASTERISK_PREFIX=/path/to/asterisk .venv/bin/python contrib/demo.py [--directory=both|file|postgresql] [--keep] [--verbose]

Three Asterisk processes (sopA, sopB and sopC on 127.0.0.31-33) load build/pbx_python.so with
dialplan_funcs.callservice. Each one has a PJSIP trunk to the other two, qualified every second.
A SIPp phone on 127.0.0.202 (inside the `phones` endpoint's 127.0.0.200/29) calls sopA, and
sopA's dialplan runs CallService. The script prints what each node decided (CALLSERVICE_STATUS,
CALLSERVICE_SOP and CALLSERVICE_TRIED), what the service read with INITSERVICE on the node
that took the call, and how long it took. It ends with a summary table, and exits 1 if any
scenario did not behave as expected.

The voicemail scenarios run the source document's flow with the files users copy from
contrib/cluster/ (the *98 and 8500 dialplan, cluster_directory.conf, voicemail.conf): the phone
keys in the language and the mailbox as DTMF (SIP INFO), sopA finds the mailbox's SOPs with
GETEXTENSIONINFO, CallService takes the call there, and app_voicemail opens the mailbox in that
language. The prompts Asterisk logs (with their language) on the node that took the call show
where and how it was opened; the mailbox holds two messages on sopB and sopC (standing for the
shared voicemail storage contrib/cluster/README.md asks for).

The PostgreSQL part (run after the file part by default) restarts the three SOPs with
`[directory] source = postgresql`: their directory comes from a private PostgreSQL server
(pbx_python/testing/postgres.py: initdb into a temp dir, listening on a loopback address of its
own only), with contrib/directory/schema.sql applied and rows seeded from the same
cluster_directory.conf. A *98 call opens mailbox 4711 on its primary; then one SQL UPDATE moves
the mailbox while the cluster runs, the script measures how long each node's `callservice show
directory 4711` takes to show the move, and the next call opens the mailbox on its new SOP,
without any `module reload`.

Observation: the dialplan writes `DEMO ...` lines with Verbose(0,...), and the script reads them
from each node's log. The service prints its parameters with BASE64_ENCODE, so a value with CR/LF
stays on one log line, and the script decodes them.

Everything the script starts is stopped on exit, including on failure, Ctrl-C and SIGTERM.
Asterisk is stopped through its own PID, SIPp through the PIDs of the script's own children,
PostgreSQL with `pg_ctl stop` on its own data directory (then its own postmaster PID if that
fails). The temp dirs are removed unless you pass --keep.
"""
from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dialplan_funcs.directory.sources.file import parse as parse_directory  # noqa: E402
from pbx_python.testing import AsteriskInstance, Sipp, SippResult, port_is_free  # noqa: E402
from pbx_python.testing.cluster import ClusterSpec, wait_qualified  # noqa: E402
from pbx_python.testing.module import module_so  # noqa: E402
from pbx_python.testing.net import claim_host, free_loopback_host, release_host  # noqa: E402
from pbx_python.testing.postgres import PostgresError, PrivatePostgres, find_bindir  # noqa: E402
from pbx_python.testing.sipp import DTMF_UAC, dtmf_args, sipp_binary  # noqa: E402
from pbx_python.testing.voicemail import Prompt, prompts, seed_messages  # noqa: E402

#: build/pbx_python.so, or the build for this venv's Python (make demo PYTHON=...).
MODULE_SO = module_so(ROOT)
CLUSTER_DIR = ROOT / "contrib" / "cluster"
HOSTS = {"sopA": "127.0.0.31", "sopB": "127.0.0.32", "sopC": "127.0.0.33"}
CALLER_NODE = "sopA"          # the phone calls this node
PHONE_HOST = "127.0.0.202"    # inside the phones endpoint's identify range 127.0.0.200/29

# Scenario 1's four parameters: what the service must read, and how extensions.conf spells them
# (a comma as \, and a semicolon as \; because ';' starts a comment in extensions.conf).
PARAMS = ("4711", "fr_FR", "Dupont, Marie", "café ;-)")
PARAMS_CONF = ("4711", "fr_FR", r"Dupont\, Marie", r"café \;-)")
# A parameter that dialplan arguments cannot carry: it goes through CALLSERVICE_PARAM1.
CRLF_PARAM = 'line one\r\nX-Injected: evil\r\n"quoted", semi;colon\ttab, é 中'


# The voicemail scenarios: mailbox 5001 (cluster_directory.conf: _5XXX on sopB, then sopC), and
# the language digit the phone keys in before it.
MAILBOX = "5001"
MESSAGES = 2                  # seeded into the mailbox on sopB and sopC
LANGUAGES = {"1": ("en", "English"), "2": ("fr", "French")}
VM_HOLD_MS = 4000             # the phone stays in the mailbox this long after its last digit
DIRECTORY = "\n[directory]\nsource = file\nfile = cluster_directory.conf\n"

# The PostgreSQL scenarios: mailbox 4711 (cluster_directory.conf's exact entry: sopA, then sopB),
# moved while the cluster runs with the UPDATE contrib/directory/schema.sql shows.
PG_MAILBOX = "4711"
PG_MOVE = ("sopC", "sopA")            # the mailbox's new primary and secondary
MOVE_SQL = (f"UPDATE cluster_directory SET primary_sop = '{PG_MOVE[0]}', "
            f"secondary_sop = '{PG_MOVE[1]}' WHERE extension = '{PG_MAILBOX}'")
FOLLOW_LIMIT = 2.0                    # seconds every node may take to show the move
SEED_SQL = ("INSERT INTO cluster_directory (extension, primary_sop, secondary_sop, attributes) "
            "VALUES (%s, %s, %s, %s)")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode("utf-8", "replace")


# ============================================================================ the dialplan

def phone_exten(exten: str, *steps: str) -> str:
    """A caller-side extension: a start marker, the steps, then the common outcome branch."""
    lines = [f"exten => {exten},1,Verbose(0,DEMO CALL {exten})"]
    lines += [f" same => n,{step}" for step in steps]
    lines.append(" same => n,Goto(outcome,s,1)")
    return "\n".join(lines)


def inner_service(node: str, exten: str, call: str, answer_if_loop: bool = True) -> str:
    """A service that itself runs CallService again, and logs its own decision."""
    lines = [f"exten => {exten},1,Ringing()",
             f" same => n,{call}",
             f" same => n,Verbose(0,DEMO INNER {exten} NODE={node} "
             "STATUS=${CALLSERVICE_STATUS} SOP=${CALLSERVICE_SOP} TRIED=${CALLSERVICE_TRIED})"]
    if answer_if_loop:   # the callflow goes on locally when its own CallService was refused
        lines += [' same => n,GotoIf($["${CALLSERVICE_STATUS}" != "LOOP"]?done)',
                  " same => n,Answer()",
                  " same => n,Wait(0.3)"]
    lines.append(" same => n(done),Hangup()")
    return "\n".join(lines)


def reading_service(node: str, exten: str) -> str:
    """A service that logs what INITSERVICE gives (base64: CR/LF stays on one line), answers."""
    read = " ".join(f"P{i}=[${{BASE64_ENCODE(${{INITSERVICE(Parameter{i})}})}}]" for i in range(1, 5))
    return "\n".join([
        f"exten => {exten},1,Verbose(0,DEMO SERVICE {exten} NODE={node} "
        f"ORIGIN=[${{INITSERVICE(origin)}}] {read})",
        " same => n,Answer()",
        " same => n,Wait(0.3)",
        " same => n,Hangup()"])


def contrib_exten(text: str, exten: str) -> str:
    """The lines of extension ``exten`` in contrib/cluster/extensions.conf text (comments kept)."""
    m = re.search(rf"^exten => {re.escape(exten)},1,.*?(?=^\s*$|^exten => (?!{re.escape(exten)},))",
                  text, re.M | re.S)
    if not m:
        raise SystemExit(f"demo: no extension {exten} in contrib/cluster/extensions.conf")
    return m.group(0).rstrip() + "\n"


def contrib_context(text: str, context: str) -> str:
    """Context ``[context]`` of contrib/cluster/extensions.conf text, header included."""
    m = re.search(rf"^\[{re.escape(context)}\]\n.*?(?=^\[|\Z)", text, re.M | re.S)
    if not m:
        raise SystemExit(f"demo: no context [{context}] in contrib/cluster/extensions.conf")
    return m.group(0).rstrip() + "\n"


def extensions(node: str) -> str:
    """extensions.conf of one node (all three get the same callflows). The voicemail flow is
    contrib/cluster/extensions.conf's, as users copy it."""
    contrib = (CLUSTER_DIR / "extensions.conf").read_text()
    params = ",".join(PARAMS_CONF)
    phones = "\n".join([
        phone_exten("remote", f"CallService(2000,sopB,sopC,{params})"),
        phone_exten("local", f"CallService(2000,sopA,sopB,{params})"),
        phone_exten("crlf", f"Set(CALLSERVICE_PARAM1=${{BASE64_DECODE({b64(CRLF_PARAM)})}})",
                    "CallService(2000,sopB)"),
        phone_exten("pingpong", "CallService(2100,sopB)"),
        phone_exten("triangle", "CallService(2110,sopB)"),
        phone_exten("voicemail", "CallService(2003,sopB,sopC,4711,fr_FR)"),
    ])
    services = "\n".join([
        *(reading_service(node, exten) for exten in ("2000", "2200", "2310")),
        inner_service(node, "2100", "CallService(2200,sopA)"),
        inner_service(node, "2110", "CallService(2210,sopC)", answer_if_loop=False),
        inner_service(node, "2210", "CallService(2310,sopA,sopB)"),
        inner_service(node, "2003", "CallService(2003,sopB,sopC,4711,fr_FR)"),
    ])
    return f"""\
[general]
static = yes
writeprotect = yes

; What the phones dial (the demo's phone calls {CALLER_NODE}).
[phones]
{phones}

; The caller's callflow branches on the outcome, as a real one would.
[outcome]
exten => s,1,Verbose(0,DEMO RESULT STATUS=${{CALLSERVICE_STATUS}} SOP=${{CALLSERVICE_SOP}} TRIED=${{CALLSERVICE_TRIED}})
 same => n,GotoIf($["${{CALLSERVICE_STATUS}}" = "ANSWER"]?answered)
 same => n,GotoIf($["${{CALLSERVICE_STATUS}}" = "BUSY"]?busy)
 same => n,Hangup(34)
 same => n(busy),Hangup(17)
 same => n(answered),Hangup()

; The services CallService reaches, on this SOP.
[callservice-in]
{services}

; ---- from contrib/cluster/extensions.conf: the voicemail flow
[phones]
{contrib_exten(contrib, "*98")}
[callservice-in]
{contrib_exten(contrib, "8500")}
{contrib_context(contrib, "voicemail-report")}"""


def node_configs(spec: ClusterSpec, node: str) -> dict[str, str]:
    files = spec.configs(node, extensions(node))
    # Put the checkout on sys.path too, so the embedded Python finds dialplan_funcs even when
    # this project is not installed into the interpreter it embeds.
    files["pbx_python.conf"] = files["pbx_python.conf"].replace(
        "[general]\n", f"[general]\npath = {ROOT}\n", 1)
    return files


# ============================================================================ output

def say(text: str = "", indent: int = 2) -> None:
    print(" " * indent + text if text else "", flush=True)


def section(text: str) -> None:
    print(f"\n══ {text} " + "═" * max(3, 77 - len(text)), flush=True)


def title(number: int, text: str) -> None:
    print(f"\n── {number}. {text} " + "─" * max(3, 74 - len(text)), flush=True)


# ============================================================================ the cluster

LOG_TS = r"^\[(?P<ts>[^\]]+)\][^\n]*app_verbose\.c: "
RESULT_RE = LOG_TS + r"DEMO RESULT STATUS=(?P<status>\S*) SOP=(?P<sop>\S*) TRIED=(?P<tried>\S*)$"
CALL_RE = LOG_TS + r"DEMO CALL (?P<exten>\S+)$"
SERVICE_RE = (LOG_TS + r"DEMO SERVICE (?P<exten>\S+) NODE=(?P<node>\S+) ORIGIN=\[(?P<origin>[^\]]*)\] "
              r"P1=\[(?P<p1>[^\]]*)\] P2=\[(?P<p2>[^\]]*)\] P3=\[(?P<p3>[^\]]*)\] P4=\[(?P<p4>[^\]]*)\]$")
INNER_RE = (LOG_TS + r"DEMO INNER (?P<exten>\S+) NODE=(?P<node>\S+) STATUS=(?P<status>\S*) "
            r"SOP=(?P<sop>\S*) TRIED=(?P<tried>\S*)$")
VM_REPORT_RE = (LOG_TS + r"voicemail: mailbox \[[^\]]*\] language \[[^\]]*\] directory "
                r"\[(?P<directory>[^\]]*)\] status=(?P<status>\S*) sop=(?P<sop>\S*) tried=(?P<tried>\S*)$")
VM_SERVICE_RE = r"app_verbose\.c: voicemail service: (.*)$"
RELEVANT = re.compile(r"app_verbose|CallService|WARNING|ERROR|Executing \[[^\]]*@callservice-in:1\]"
                      r"| is ringing| answered |Everyone is busy|Nobody picked up| Playing '")


def log_time(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f")


@dataclass
class Service:
    """A DEMO SERVICE line: what a service read with INITSERVICE."""
    node: str
    exten: str
    origin: str
    params: tuple[str, str, str, str]
    at: datetime


@dataclass
class Inner:
    """A DEMO INNER line: the decision of a CallService run by a service."""
    node: str
    exten: str
    status: str
    sop: str
    tried: str


@dataclass
class Call:
    """One phone call into the caller node, and what was logged while it ran."""
    exten: str
    phone: SippResult
    seconds: float
    status: str
    sop: str
    tried: str
    started: datetime            # the call entered the caller's dialplan
    decided: datetime            # CallService returned on the caller
    logs: dict[str, str]         # node -> log text written during the call

    @property
    def decision(self) -> str:
        return (f"CALLSERVICE_STATUS={self.status}  CALLSERVICE_SOP={self.sop or '(empty)'}  "
                f"CALLSERVICE_TRIED={self.tried or '(empty)'}")

    def services(self) -> list[Service]:
        found = []
        for node, text in self.logs.items():
            for m in re.finditer(SERVICE_RE, text, re.M):
                params = tuple(unb64(m.group(f"p{i}")) for i in range(1, 5))
                found.append(Service(m.group("node"), m.group("exten"), m.group("origin"),
                                     params, log_time(m.group("ts"))))  # type: ignore[arg-type]
        return sorted(found, key=lambda s: s.at)

    def inners(self) -> list[Inner]:
        return [Inner(m.group("node"), m.group("exten"), m.group("status"), m.group("sop"),
                      m.group("tried"))
                for text in self.logs.values() for m in re.finditer(INNER_RE, text, re.M)]

    def count(self, pattern: str) -> int:
        return sum(len(re.findall(pattern, text)) for text in self.logs.values())


@dataclass
class Row:
    scenario: str
    expected: str
    observed: str
    ok: bool


class Stopped(Exception):
    """SIGTERM or SIGHUP: leave like on Ctrl-C."""


@dataclass
class Demo:
    prefix: Path
    keep: bool = False
    verbose: bool = False
    nodes: dict[str, AsteriskInstance] = field(default_factory=dict)
    retired: list[AsteriskInstance] = field(default_factory=list)   # stopped by a restart
    pg: Optional[PrivatePostgres] = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pxdemo", dir="/tmp")))
    spec: ClusterSpec = field(default_factory=lambda: ClusterSpec(
        sops=dict(HOSTS), python=sys.executable, modules=["dialplan_funcs.directory"],
        extra_callservice=DIRECTORY,
        extra_configs={name: (CLUSTER_DIR / name).read_text()
                       for name in ("cluster_directory.conf", "voicemail.conf")}))
    # The PostgreSQL part: no cluster_directory.conf on the nodes; [directory] is added per
    # node (its snapshot lives in the node's own dir), see pg_directory().
    pg_spec: ClusterSpec = field(default_factory=lambda: ClusterSpec(
        sops=dict(HOSTS), python=sys.executable, modules=["dialplan_funcs.directory"],
        extra_configs={"voicemail.conf": (CLUSTER_DIR / "voicemail.conf").read_text()}))

    def __post_init__(self) -> None:
        self.sipp = Sipp(workdir=self.workdir / "sipp")

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, source: str = "file") -> None:
        """Start the three SOPs with the directory ``source`` (file or postgresql)."""
        spec = self.spec if source == "file" else self.pg_spec
        for node, host in HOSTS.items():
            started = time.monotonic()
            files = node_configs(spec, node)
            inst = AsteriskInstance(self.prefix, host=host, name=node, modules=[MODULE_SO],
                                    configs=files)
            self.nodes[node] = inst          # tracked before start, so cleanup always sees it
            if source == "postgresql":
                block = self.pg_directory(inst)
                inst.write_config("pbx_python.conf", files["pbx_python.conf"] + block)
                if node == CALLER_NODE:
                    say(f"each SOP's pbx_python.conf ends with (the snapshot in the node's own dir), "
                        f"on {node}:")
                    for line in block.strip().splitlines():
                        say(line, indent=6)
            inst.start()
            say(f"{node}: Asterisk pid {inst.pid} on {host}:5060, up in "
                f"{time.monotonic() - started:.1f} s  (logs: {inst.logdir})")
        mailbox, holders = (MAILBOX, ("sopB", "sopC")) if source == "file" else (PG_MAILBOX, tuple(HOSTS))
        for node in holders:
            folder = seed_messages(self.nodes[node], mailbox, MESSAGES)
            say(f"{node}: {MESSAGES} messages put into mailbox {mailbox} ({folder})")
        started = time.monotonic()
        wait_qualified(self.nodes, timeout=15)
        say(f"all 6 trunks qualified (SIP OPTIONS every {spec.qualify_frequency:g} s) in "
            f"{time.monotonic() - started:.1f} s")

    def restart(self, source: str) -> None:
        """Stop the SOPs still running (if any) and start three new ones with the directory
        ``source``, on the same addresses."""
        for node, inst in self.nodes.items():
            if inst.running:
                self.stop_node(node)
        self.retired += self.nodes.values()
        self.nodes = {}
        self.start(source)

    def pg_directory(self, inst: AsteriskInstance) -> str:
        """The [directory] block of a node reading the private PostgreSQL."""
        assert self.pg is not None
        return (f"\n[directory]\nsource = postgresql\ndsn = {self.pg.dsn}\n"
                f"snapshot = {inst.base / 'directory.json'}\n")

    def start_postgres(self) -> None:
        """Start the private PostgreSQL (schema applied) and seed it from cluster_directory.conf."""
        import psycopg
        from psycopg.types.json import Jsonb
        started = time.monotonic()
        self.pg = PrivatePostgres()          # tracked before start, so cleanup always sees it
        self.pg.start()
        version = self.pg.execute("SHOW server_version")[0][0]
        say(f"private PostgreSQL {version}: pid {self.pg.pid}, listening on {self.pg.host}:"
            f"{self.pg.port} only, up in {time.monotonic() - started:.1f} s  (data: {self.pg.data})")
        say("database pbx, user pbx; contrib/directory/schema.sql applied (table cluster_directory, "
            "NOTIFY trigger)")
        table = parse_directory((CLUSTER_DIR / "cluster_directory.conf").read_text())
        with psycopg.connect(self.pg.dsn, autocommit=True, connect_timeout=5) as conn:
            with conn.transaction():
                for e in table.entries:
                    conn.execute(SEED_SQL, (e.pattern, e.primary, e.secondary, Jsonb(dict(e.attrs))))
            rows = conn.execute("SELECT extension, primary_sop, secondary_sop, attributes::text "
                                "FROM cluster_directory ORDER BY extension").fetchall()
        say(f"seeded from contrib/cluster/cluster_directory.conf ({len(rows)} rows):")
        say(f"{'extension':<10} {'primary_sop':<12} {'secondary_sop':<14} attributes", indent=6)
        for ext, primary, secondary, attrs in rows:
            say(f"{ext:<10} {primary:<12} {secondary:<14} {attrs}", indent=6)

    def cleanup(self) -> None:
        stop_sipp_children()
        instances = [*self.retired, *self.nodes.values()]
        for inst in instances:
            if inst.running:
                inst.stop(timeout=10)
            if inst.crashed:
                say(f"WARNING: {inst.name} ended with signal {-(inst.returncode or 0)}; its files: {inst.base}")
        if self.pg is not None:
            pid = self.pg.pid or self.pg.leftover_pid()
            try:
                self.pg.cleanup(keep=self.keep)
            except PostgresError as exc:
                say(f"WARNING: stopping PostgreSQL: {exc}")
            if pid is not None and process_alive(pid):
                say(f"WARNING: PostgreSQL pid {pid} is still running")
        if self.keep:
            kept = [f"{i.name} {i.base}" for i in instances]
            if self.pg is not None:
                kept.append(f"PostgreSQL {self.pg.base}")
            say("kept (--keep): " + ", ".join(kept) + f", SIPp {self.workdir}", indent=0)
            return
        for inst in instances:
            if not inst.crashed:
                shutil.rmtree(inst.base, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_node(self, node: str) -> None:
        inst = self.nodes[node]
        started = time.monotonic()
        pid = inst.pid
        inst.stop(timeout=10)
        say(f"stopped {node} (pid {pid}) in {time.monotonic() - started:.2f} s")

    def wait_known_down(self, node: str, sop: str, timeout: float = 10) -> float:
        """Wait until `node`'s qualify marks the trunk to `sop` UNAVAILABLE; the seconds it took."""
        started = time.monotonic()
        while self.nodes[node].eval_function(f"DEVICE_STATE(PJSIP/{sop})") != "UNAVAILABLE":
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{node} still sees {sop} as available after {timeout} s")
            time.sleep(0.1)
        seconds = time.monotonic() - started
        say(f"{node} sees the trunk to {sop} as UNAVAILABLE (qualify) after {seconds:.1f} s")
        return seconds

    # -- calls ---------------------------------------------------------------------------------

    def running(self) -> dict[str, AsteriskInstance]:
        return {n: i for n, i in self.nodes.items() if i.running}

    def call(self, exten: str) -> Call:
        """The phone calls `exten` on the caller node; returns what happened."""
        nodes = self.running()
        since = {n: inst.log_offset() for n, inst in nodes.items()}
        caller = self.nodes[CALLER_NODE]
        say(f"phone {PHONE_HOST} dials '{exten}' on {CALLER_NODE}")
        started = time.monotonic()
        phone = self.sipp.run_uac(caller.host, local_host=PHONE_HOST, service=exten,
                                  duration_ms=5000, timeout=20)
        seconds = time.monotonic() - started
        result = caller.wait_for_log(RESULT_RE, timeout=10, since=since[CALLER_NODE])
        entered = caller.wait_for_log(CALL_RE, timeout=1, since=since[CALLER_NODE])
        time.sleep(0.2)   # let the other nodes' loggers write the call's last lines
        logs = {n: inst.log_text(since[n]) for n, inst in nodes.items()}
        call = Call(exten, phone, seconds, result.group("status"), result.group("sop"),
                    result.group("tried"), log_time(entered.group("ts")),
                    log_time(result.group("ts")), logs)
        if self.verbose:
            dump_logs(call)
        return call


    def call_voicemail(self, digits: str) -> VoicemailCall:
        """The phone dials *98 on the caller node and keys in ``digits`` (SIP INFO DTMF)."""
        nodes = self.running()
        since = {n: inst.log_offset() for n, inst in nodes.items()}
        caller = self.nodes[CALLER_NODE]
        started = time.monotonic()
        phone = self.sipp.run_uac(caller.host, local_host=PHONE_HOST, service="*98",
                                  scenario=DTMF_UAC, extra_args=dtmf_args(digits),
                                  duration_ms=VM_HOLD_MS, timeout=30)
        seconds = time.monotonic() - started
        report = caller.wait_for_log(VM_REPORT_RE, timeout=10, since=since[CALLER_NODE])
        time.sleep(0.2)   # let the other nodes' loggers write the call's last lines
        logs = {n: inst.log_text(since[n]) for n, inst in nodes.items()}
        call = VoicemailCall(phone, seconds, report.group("status"), report.group("sop"),
                             report.group("tried"), report.group("directory"), logs)
        if self.verbose:
            dump_logs(call)
        return call

    def update_and_follow(self, sql: str, exten: str, primary: str, secondary: str,
                          timeout: float = 5.0) -> Follow:
        """Run ``sql`` on the directory database; meanwhile one thread per node polls
        ``callservice show directory <exten>`` until it shows ``primary``/``secondary``."""
        import psycopg
        assert self.pg is not None
        second = re.escape(secondary) if secondary else r"\(none\)"
        want = re.compile(rf"^Primary:\s+{re.escape(primary)}\s*\n^Secondary:\s+{second}\s*$", re.M)
        go, t0 = threading.Event(), [0.0]
        seen: dict[str, tuple[Optional[float], str]] = {}

        def watch(node: str, inst: AsteriskInstance) -> None:
            go.wait()
            while True:
                out = inst.cli(f"callservice show directory {exten}", timeout=5)
                now = time.monotonic() - t0[0]
                if want.search(out) or now > timeout:
                    seen[node] = (now if want.search(out) else None, out)
                    return
                time.sleep(0.02)

        threads = [threading.Thread(target=watch, args=item, daemon=True,
                                    name=f"watch-{item[0]}") for item in self.nodes.items()]
        for thread in threads:
            thread.start()
        with psycopg.connect(self.pg.dsn, autocommit=True, connect_timeout=5) as conn:
            t0[0] = time.monotonic()
            rows = conn.execute(sql).rowcount
            committed = time.monotonic() - t0[0]
        go.set()
        for thread in threads:
            thread.join(timeout + 10)
        return Follow(rows, committed, {n: seen.get(n, (None, "")) for n in self.nodes})


@dataclass
class Follow:
    """What update_and_follow saw: rows changed, the commit's time, and per node the seconds
    from the statement until its CLI showed the change (None: not within the timeout) with the
    CLI output."""
    rows: int
    committed: float
    nodes: dict[str, tuple[Optional[float], str]]


@dataclass
class VoicemailCall:
    """A call to *98, as the caller's [voicemail-report] line and the nodes' logs show it."""
    phone: SippResult
    seconds: float
    status: str
    sop: str
    tried: str
    directory: str               # GETEXTENSIONINFO(<mailbox>) on the caller's SOP
    logs: dict[str, str]         # node -> log text written during the call

    def service(self, node: str) -> Optional[str]:
        """The 8500 service's line on ``node`` (mailbox, language, context, origin), if it ran."""
        m = re.search(VM_SERVICE_RE, self.logs.get(node, ""), re.M)
        return m.group(1) if m else None

    def prompts(self, node: str, channel: str) -> list[Prompt]:
        """The prompts ``node`` played to channels named ``channel``-..."""
        return [p for p in prompts(self.logs.get(node, "")) if p.channel.startswith(channel + "-")]


def dump_logs(call: Call | VoicemailCall) -> None:
    """The call's relevant log lines of every node, as one timeline."""
    say("log lines written during the call, all nodes by time (--verbose):")
    lines = [(line[1:24], node, line) for node, text in call.logs.items()
             for line in text.splitlines() if RELEVANT.search(line)]
    for _, node, line in sorted(lines, key=lambda item: item[0]):
        say(f"{node} | {line[:200]}", indent=4)


def stop_sipp_children(grace: float = 3) -> None:
    """Stop SIPp processes that are children of this script (by their PIDs), if any are left."""
    me = os.getpid()
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if comm == "sipp" and int(rest[1]) == me:
            pids.append(int(stat.parent.name))
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid in pids:
        while _reap(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _reap(pid):
            _signal(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def process_alive(pid: int, grace: float = 2.0) -> bool:
    """True if ``pid`` still runs after ``grace`` seconds (a zombie waiting for init to reap
    it, like a stopped postmaster, does not count)."""
    deadline = time.monotonic() + grace
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1][:1] == "Z":
                    return False
        except (OSError, IndexError):
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> bool:
    """True while the child `pid` is still running."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


# ============================================================================ reporting helpers

def show_decision(call: Call, node: str = CALLER_NODE) -> None:
    say(f"{node} decided:  {call.decision}")


def show_service(service: Optional[Service], call: Call) -> None:
    if service is None:
        say("no service ran on any SOP")
        return
    delay = (service.at - call.started).total_seconds() * 1000
    say(f"service {service.exten} ran on {service.node}, {delay:.0f} ms after the call entered "
        f"{CALLER_NODE}; it read with INITSERVICE:")
    say(f"INITSERVICE(origin)     = {service.origin!r}", indent=6)
    for i, value in enumerate(service.params, 1):
        say(f"INITSERVICE(Parameter{i}) = {value!r}", indent=6)


def show_inner(inner: Inner) -> None:
    say(f"{inner.node}'s service {inner.exten} ran CallService itself, which decided: "
        f"STATUS={inner.status} SOP={inner.sop or '(empty)'} TRIED={inner.tried or '(empty)'}")


def show_phone(call: Call) -> None:
    status = call.phone.final_status
    what = "answered (200 OK), then hung up by the cluster" if status == 200 else \
        f"got SIP {status}" if status else "got no final response"
    say(f"phone: {what}; the call took {call.seconds:.2f} s "
        f"(CallService returned {(call.decided - call.started).total_seconds() * 1000:.0f} ms "
        "after the call entered the dialplan)")


def outcome(call: Call) -> str:
    return f"{call.status} via {call.sop}" if call.sop else call.status


def verdict(checks: Iterable[tuple[str, bool]]) -> bool:
    failed = [what for what, ok in checks if not ok]
    for what in failed:
        say(f"!! NOT AS EXPECTED: {what}")
    say("=> as expected" if not failed else "=> FAILED")
    return not failed


def service_on(call: Call, node: str) -> Optional[Service]:
    return next((s for s in call.services() if s.node == node), None)


def inner_on(call: Call, node: str, exten: str) -> Optional[Inner]:
    return next((i for i in call.inners() if i.node == node and i.exten == exten), None)


# ============================================================================ scenarios

def scenario_remote(demo: Demo, n: int) -> Row:
    title(n, "Remote routing: the service lives on another SOP")
    say(f"sopA runs CallService(2000,sopB,sopC,{','.join(PARAMS_CONF)})")
    call = demo.call("remote")
    show_decision(call)
    service = service_on(call, "sopB")
    show_service(service, call)
    show_phone(call)
    ok = verdict([
        ("sopA: ANSWER by sopB, tried sopB:ANSWER",
         (call.status, call.sop, call.tried) == ("ANSWER", "sopB", "sopB:ANSWER")),
        ("sopB read origin sopA and the four parameters unchanged",
         service is not None and service.origin == "sopA" and service.params == PARAMS),
        ("the phone was answered", call.phone.final_status == 200),
    ])
    intact = "4 params intact" if service and service.params == PARAMS else "params differ"
    return Row("remote SOP, 4 parameters", "ANSWER via sopB, 4 params intact",
               f"{outcome(call)}, {intact}", ok)


def scenario_local(demo: Demo, n: int) -> Row:
    title(n, "Local routing: the service is on the caller's own SOP")
    say(f"sopA runs CallService(2000,sopA,sopB,{','.join(PARAMS_CONF)})")
    call = demo.call("local")
    show_decision(call)
    service = service_on(call, "sopA")
    show_service(service, call)
    show_phone(call)
    others = [s.node for s in call.services() if s.node != "sopA"]
    ok = verdict([
        ("sopA: ANSWER by sopA, tried sopA:ANSWER",
         (call.status, call.sop, call.tried) == ("ANSWER", "sopA", "sopA:ANSWER")),
        ("the service on sopA read the same values as the remote one did",
         service is not None and service.origin == "sopA" and service.params == PARAMS),
        ("no other SOP ran the service", not others),
        ("the phone was answered", call.phone.final_status == 200),
    ])
    intact = "4 params intact" if service and service.params == PARAMS else "params differ"
    return Row("local SOP, same INITSERVICE", "ANSWER via sopA, 4 params intact",
               f"{outcome(call)}, {intact}", ok)


def scenario_crlf(demo: Demo, n: int) -> Row:
    title(n, "A parameter with CR/LF, quotes, commas and a semicolon")
    say("sopA sets CALLSERVICE_PARAM1 (a variable, since a dialplan argument cannot hold CR/LF),")
    say("then runs CallService(2000,sopB): the empty Parameter1 argument is taken from the variable")
    say(f"sent:     {CRLF_PARAM!r}  ({len(CRLF_PARAM.encode())} bytes)")
    call = demo.call("crlf")
    show_decision(call)
    service = service_on(call, "sopB")
    received = service.params[0] if service else ""
    say(f"received: {received!r}  ({len(received.encode())} bytes)")
    identical = received.encode() == CRLF_PARAM.encode()
    say("byte-identical: " + ("yes" if identical else "NO"))
    show_phone(call)
    ok = verdict([
        ("sopA: ANSWER by sopB", (call.status, call.sop) == ("ANSWER", "sopB")),
        ("sopB read Parameter1 byte-identical", identical),
    ])
    return Row("CR/LF parameter", "ANSWER via sopB, byte-identical",
               f"{outcome(call)}, {'byte-identical' if identical else 'DIFFERENT'}", ok)


def scenario_pingpong(demo: Demo, n: int) -> Row:
    title(n, "Loop: a service on sopB routes the call back to sopA, where it came from")
    say("sopA runs CallService(2100,sopB); sopB's service 2100 runs CallService(2200,sopA)")
    call = demo.call("pingpong")
    show_decision(call)
    inner = inner_on(call, "sopB", "2100")
    if inner:
        show_inner(inner)
    back = call.count(r"Executing \[2200@callservice-in")
    say(f"service 2200 ran {back} time(s) (0: the call was not sent back to sopA)")
    show_phone(call)
    ok = verdict([
        ("sopA: ANSWER by sopB", (call.status, call.sop, call.tried) == ("ANSWER", "sopB", "sopB:ANSWER")),
        ("sopB's CallService: LOOP, sopA refused as CAME_FROM",
         inner is not None and (inner.status, inner.tried) == ("LOOP", "sopA:CAME_FROM")),
        ("no INVITE went back to sopA", back == 0),
    ])
    observed = f"inner {inner.status} ({inner.tried})" if inner else "no inner decision"
    return Row("loop: B routes back to A", "inner LOOP (sopA:CAME_FROM)", observed, ok)


def scenario_triangle(demo: Demo, n: int) -> Row:
    title(n, "Loop: A -> B -> C, and C's service routes to A or B")
    say("sopA runs CallService(2110,sopB); sopB's 2110 runs CallService(2210,sopC);")
    say("sopC's 2210 runs CallService(2310,sopA,sopB): both SOPs are already on the call's path")
    call = demo.call("triangle")
    show_decision(call)
    on_b, on_c = inner_on(call, "sopB", "2110"), inner_on(call, "sopC", "2210")
    for inner in (on_b, on_c):
        if inner:
            show_inner(inner)
    again = call.count(r"Executing \[2310@callservice-in")
    say(f"service 2310 ran {again} time(s)")
    show_phone(call)
    ok = verdict([
        ("sopA: ANSWER by sopB", (call.status, call.sop) == ("ANSWER", "sopB")),
        ("sopB's CallService: ANSWER by sopC",
         on_b is not None and (on_b.status, on_b.tried) == ("ANSWER", "sopC:ANSWER")),
        ("sopC's CallService: LOOP, sopA VISITED and sopB CAME_FROM",
         on_c is not None and (on_c.status, on_c.tried) == ("LOOP", "sopA:VISITED,sopB:CAME_FROM")),
        ("service 2310 never ran", again == 0),
    ])
    observed = f"C: {on_c.status} ({on_c.tried})" if on_c else "no decision on sopC"
    return Row("loop: A->B->C->(A|B)", "C: LOOP (sopA:VISITED,sopB:CAME_FROM)", observed, ok)


def scenario_failover(demo: Demo, n: int) -> Row:
    title(n, "Failover: the primary SOP is stopped, the secondary takes the call")
    demo.stop_node("sopB")
    detect = demo.wait_known_down("sopA", "sopB")
    say(f"sopA runs the same CallService(2000,sopB,sopC,...) as in scenario 1")
    call = demo.call("remote")
    show_decision(call)
    service = service_on(call, "sopC")
    show_service(service, call)
    show_phone(call)
    ok = verdict([
        ("sopA: ANSWER by sopC after skipping sopB",
         (call.status, call.sop, call.tried) == ("ANSWER", "sopC", "sopB:KNOWN_DOWN,sopC:ANSWER")),
        ("sopC read origin sopA and the four parameters unchanged",
         service is not None and service.origin == "sopA" and service.params == PARAMS),
        ("the phone was answered", call.phone.final_status == 200),
    ])
    return Row("primary down -> secondary", "ANSWER via sopC (sopB:KNOWN_DOWN)",
               f"{outcome(call)} ({call.tried}); down seen in {detect:.1f} s", ok)


def scenario_bounce(demo: Demo, n: int) -> Row:
    title(n, "Loop (the vendor's 1.02 bug): primary down, the secondary runs CallService again")
    say("the seed's voicemail flow: service 2003 runs CallService(2003,sopB,sopC,4711,fr_FR) on")
    say("every node, to send the caller to the mailbox's SOP. sopB is still stopped.")
    call = demo.call("voicemail")
    show_decision(call)
    inner = inner_on(call, "sopC", "2003")
    if inner:
        show_inner(inner)
    runs = call.count(r"Executing \[2003@callservice-in:1\]")
    say(f"service 2003 started {runs} time(s) in the whole cluster (1: no bounce, no re-entry)")
    show_phone(call)
    ok = verdict([
        ("sopA: ANSWER by sopC",
         (call.status, call.sop, call.tried) == ("ANSWER", "sopC", "sopB:KNOWN_DOWN,sopC:ANSWER")),
        ("sopC's CallService: LOOP (already delivered here), the callflow went on locally",
         inner is not None and (inner.status, inner.tried) == ("LOOP", "sopB:DELIVERED,sopC:DELIVERED")),
        ("service 2003 started exactly once", runs == 1),
    ])
    observed = f"inner {inner.status}, service ran {runs}x" if inner else f"service ran {runs}x"
    return Row("loop: secondary re-routes", "inner LOOP, service ran 1x", observed, ok)


def scenario_all_down(demo: Demo, n: int) -> Row:
    title(n, "Both SOPs down: UNAVAILABLE")
    demo.stop_node("sopC")
    demo.wait_known_down("sopA", "sopC")
    say("sopA runs CallService(2000,sopB,sopC,...) once more")
    call = demo.call("remote")
    show_decision(call)
    show_phone(call)
    ok = verdict([
        ("sopA: UNAVAILABLE, both SOPs skipped as known down",
         (call.status, call.sop, call.tried) == ("UNAVAILABLE", "", "sopB:KNOWN_DOWN,sopC:KNOWN_DOWN")),
        ("no service ran", not call.services()),
        ("the phone was rejected (503 from Hangup(34))", call.phone.final_status == 503),
    ])
    return Row("both down", "UNAVAILABLE (no SOP)", f"{outcome(call)} ({call.tried})", ok)


def voicemail_scenario(demo: Demo, choice: str, sop: str, tried: str, mailbox: str = MAILBOX,
                       entry: str = "sopB,sopC", source: str = "cluster_directory.conf",
                       label: str = "") -> Row:
    """The phone keys ``choice`` (language) and ``mailbox``; the directory must give ``entry``
    and the mailbox must open on ``sop``."""
    lang, language = LANGUAGES[choice]
    directory = demo.nodes[CALLER_NODE].eval_function(f"GETEXTENSIONINFO({mailbox})")
    context = demo.nodes[CALLER_NODE].eval_function(f"GETEXTENSIONINFO({mailbox},vm_context)")
    say(f"directory on {CALLER_NODE} ({source}): GETEXTENSIONINFO({mailbox}) = "
        f"{directory}, vm_context = {context}")
    say(f"phone {PHONE_HOST} dials '*98' on {CALLER_NODE}, keys {choice} ({language}) and mailbox "
        f"{mailbox} (SIP INFO DTMF)")
    call = demo.call_voicemail(choice + mailbox)
    asked = [(p.file, p.language) for p in call.prompts(CALLER_NODE, "PJSIP/phones")]
    say(f"{CALLER_NODE} asked for the mailbox with: "
        + (", ".join(f"'{f}' ({lg})" for f, lg in asked) or "(no prompt)"))
    say(f"{CALLER_NODE} decided:  CALLSERVICE_STATUS={call.status}  CALLSERVICE_SOP="
        f"{call.sop or '(empty)'}  CALLSERVICE_TRIED={call.tried or '(empty)'}")
    service = call.service(sop)
    say(f"{sop}'s 8500 service: {service}" if service else f"the 8500 service did not run on {sop}")
    # A remote SOP plays to the trunk's channel; the caller's own SOP to the Local channel
    # CallService delivers the call through.
    channel = "Local/8500@callservice-in" if sop == CALLER_NODE else f"PJSIP/{CALLER_NODE}"
    played = [(p.file, p.language) for p in call.prompts(sop, channel)]
    say(f"{sop}'s app_voicemail played: "
        + (", ".join(f"'{f}' ({lg})" for f, lg in played[:6]) or "nothing"))
    elsewhere = [n for n in call.logs if n != sop and call.service(n)]
    expected_intro = [("vm-youhave", lang), (f"digits/{MESSAGES}", lang)]
    opened = played[:2] == expected_intro
    if opened:
        say(f"=> mailbox {mailbox} ({MESSAGES} messages) was opened on {sop} in {language}")
    show_phone_vm(call)
    ok = verdict([
        (f"{CALLER_NODE}: the directory gives {entry}", directory == entry),
        (f"{CALLER_NODE}: 'Mailbox?' asked in {language}", asked[:1] == [("vm-login", lang)]),
        (f"{CALLER_NODE}: ANSWER by {sop}, tried {tried}",
         (call.status, call.sop, call.tried) == ("ANSWER", sop, tried)),
        (f"{sop}'s service read mailbox {mailbox} and language {lang} from {CALLER_NODE}",
         service == f"mailbox [{mailbox}] language [{lang}] context [default] from [{CALLER_NODE}]"),
        (f"{sop}'s app_voicemail announced the {MESSAGES} messages in {language}", opened),
        ("no other SOP ran the service", not elsewhere),
    ])
    observed = (f"{outcome_vm(call)}, {played[0][0]} ({played[0][1]})" if played
                else f"{outcome_vm(call)}, no prompt on {sop}")
    return Row(label or f"voicemail {mailbox}, {language}", f"ANSWER via {sop}, vm-youhave ({lang})",
               observed, ok)


def outcome_vm(call: VoicemailCall) -> str:
    return f"{call.status} via {call.sop}" if call.sop else call.status or "(no call)"


def show_phone_vm(call: VoicemailCall) -> None:
    status = call.phone.final_status
    what = f"answered (200 OK), hung up {VM_HOLD_MS / 1000:g} s after its last digit" if status == 200 else \
        f"got SIP {status}" if status else "got no final response"
    say(f"phone: {what}; the call took {call.seconds:.2f} s")


def scenario_voicemail_primary(demo: Demo, n: int) -> Row:
    title(n, "Voicemail (the seed's flow): the mailbox opens on its primary SOP")
    say("contrib/cluster/extensions.conf: *98 reads the language and the mailbox, GETEXTENSIONINFO")
    say("finds the mailbox's SOPs, CallService(8500,<primary>,<secondary>,,<language>) with the")
    say("mailbox in CALLSERVICE_PARAM1; the 8500 service runs VoiceMailMain(<mailbox>@<context>,s)")
    return voicemail_scenario(demo, "2", "sopB", "sopB:ANSWER")


def scenario_voicemail_secondary(demo: Demo, n: int) -> Row:
    title(n, "Voicemail: the mailbox's primary SOP is down, the secondary opens it")
    say("sopB (the primary of mailbox 5001) is still stopped; this time the caller chooses English")
    demo.wait_known_down("sopA", "sopB")
    return voicemail_scenario(demo, "1", "sopC", "sopB:KNOWN_DOWN,sopC:ANSWER")


def scenario_pg_voicemail(demo: Demo, n: int) -> Row:
    title(n, f"Voicemail, PostgreSQL directory: mailbox {PG_MAILBOX} opens on its primary SOP")
    say(f"the same *98 flow; the directory row of {PG_MAILBOX} says sopA, then sopB: sopA, the "
        "caller's own SOP, opens it")
    return voicemail_scenario(demo, "2", "sopA", "sopA:ANSWER", mailbox=PG_MAILBOX,
                              entry="sopA,sopB", source="PostgreSQL",
                              label=f"PG: voicemail {PG_MAILBOX}, French")


def scenario_pg_move(demo: Demo, n: int) -> Row:
    title(n, f"PostgreSQL: mailbox {PG_MAILBOX} moved with one UPDATE while the cluster runs")
    before = {node: inst.eval_function(f"GETEXTENSIONINFO({PG_MAILBOX})")
              for node, inst in demo.nodes.items()}
    say("before: " + ", ".join(f"{node} GETEXTENSIONINFO({PG_MAILBOX}) = {value}"
                               for node, value in before.items()))
    say(f"an administrator moves the mailbox to {PG_MOVE[0]} (fallback {PG_MOVE[1]}); nothing is "
        "sent to the nodes:")
    say(f"psql> {MOVE_SQL};", indent=6)
    since = {node: inst.log_offset() for node, inst in demo.nodes.items()}
    follow = demo.update_and_follow(MOVE_SQL, PG_MAILBOX, *PG_MOVE)
    say(f"UPDATE {follow.rows} (committed {follow.committed * 1000:.0f} ms after it was sent); "
        "the trigger's NOTIFY reaches every node's LISTEN")
    say(f"each node's 'callservice show directory {PG_MAILBOX}', polled every 20 ms from the "
        "moment the UPDATE was sent (the delay includes the CLI's round trip):")
    for node, (delay, out) in follow.nodes.items():
        when = f"after {delay * 1000:.0f} ms" if delay is not None else \
            f"NOT within {FOLLOW_LIMIT:g} s; it shows"
        say(f"{node}, {when}:", indent=4)
        for line in out.strip().splitlines():
            say(line, indent=8)
    reloads = sum(inst.log_text(since[node]).count("Reloading module '")
                  for node, inst in demo.nodes.items())
    say(f"'module reload' run on the nodes meanwhile: {reloads} (Asterisk logs 'Reloading "
        "module ...' for each)")
    status = demo.nodes[CALLER_NODE].cli("callservice show directory")
    say(f"{CALLER_NODE}'s 'callservice show directory' now:")
    for line in status.strip().splitlines():
        say(line, indent=6)
    delays = {node: delay for node, (delay, _) in follow.nodes.items()}
    ok = verdict([
        (f"every node had {PG_MAILBOX} on sopA,sopB before", set(before.values()) == {"sopA,sopB"}),
        ("the UPDATE changed one row", follow.rows == 1),
        (f"every node shows {PG_MOVE[0]},{PG_MOVE[1]} within {FOLLOW_LIMIT:g} s",
         all(d is not None and d <= FOLLOW_LIMIT for d in delays.values())),
        ("no module reload", reloads == 0),
        (f"{CALLER_NODE} still reads PostgreSQL, connected and listening",
         "postgresql" in status and "connected, listening" in status),
    ])
    observed = ", ".join(f"{node} {d:.2f} s" if d is not None else f"{node} NOT" for node, d in delays.items())
    return Row(f"PG: {PG_MAILBOX} moved by UPDATE", f"3 nodes follow in <= {FOLLOW_LIMIT:g} s",
               observed, ok)


def scenario_pg_follow(demo: Demo, n: int) -> Row:
    title(n, f"Voicemail, PostgreSQL directory: the next call follows mailbox {PG_MAILBOX} to "
          f"{PG_MOVE[0]}")
    say("no reload, no restart: the same cluster, the same *98 flow; this time in English")
    return voicemail_scenario(demo, "1", PG_MOVE[0], f"{PG_MOVE[0]}:ANSWER", mailbox=PG_MAILBOX,
                              entry=",".join(PG_MOVE), source="PostgreSQL",
                              label=f"PG: voicemail {PG_MAILBOX} moved, English")


#: The scenarios with the directory file (the cluster as contrib/cluster configures it).
SCENARIOS: list[Callable[[Demo, int], Row]] = [
    scenario_remote, scenario_local, scenario_crlf, scenario_pingpong, scenario_triangle,
    scenario_voicemail_primary,
    scenario_failover, scenario_voicemail_secondary, scenario_bounce, scenario_all_down,
]
#: The scenarios with the PostgreSQL directory (three new SOPs, all up).
PG_SCENARIOS: list[Callable[[Demo, int], Row]] = [
    scenario_pg_voicemail, scenario_pg_move, scenario_pg_follow,
]


def summary(rows: list[Row]) -> None:
    header = Row("scenario", "expected", "observed", True)
    widths = [max(len(getattr(r, f)) for r in [header, *rows])
              for f in ("scenario", "expected", "observed")]
    print("\n── Summary " + "─" * 70)
    line = "  {:<%d}  {:<%d}  {:<%d}  {}" % tuple(widths)
    print(line.format(header.scenario, header.expected, header.observed, "OK"))
    for r in rows:
        print(line.format(r.scenario, r.expected, r.observed, "yes" if r.ok else "NO"))


# ============================================================================ main

def asterisk_prefix() -> Path:
    value = os.environ.get("ASTERISK_PREFIX")
    if not value:
        out = subprocess.run(["bash", str(ROOT / "contrib" / "build-asterisk.sh"), "--print"],
                             capture_output=True, text=True, cwd=ROOT, check=False)
        lines = out.stdout.strip().splitlines()
        value = lines[-1] if out.returncode == 0 and lines else ""
    prefix = Path(value)
    if not value or not (prefix / "sbin" / "asterisk").is_file():
        raise SystemExit(f"demo: no Asterisk at {value!r}: set ASTERISK_PREFIX or run 'make asterisk'")
    return prefix


def preflight(postgresql: bool) -> None:
    if not MODULE_SO.is_file():
        raise SystemExit(f"demo: {MODULE_SO} is missing: run 'make module'")
    sipp_binary()
    if postgresql:
        try:
            find_bindir()
            import psycopg  # noqa: F401
        except (PostgresError, ImportError) as exc:
            raise SystemExit(f"demo: the PostgreSQL part cannot run: {exc} (run 'make deps', "
                             "or pass --directory=file)") from None


def host_free(host: str) -> bool:
    return port_is_free(host, 5060) and port_is_free(host, 5038, socket.SOCK_STREAM)


def choose_hosts() -> dict[str, str]:
    """The SOPs' addresses: 127.0.0.31-33, or, when one of them is in use (a test run of the
    helpers, another demo), free loopback addresses. Claimed like the test helpers' instances
    (pbx_python.testing.net), so a test run started meanwhile does not take them."""
    if all(claim_host(h) for h in HOSTS.values()) and all(host_free(h) for h in HOSTS.values()):
        return dict(HOSTS)
    for host in HOSTS.values():
        release_host(host)
    chosen: dict[str, str] = {}
    try:
        for sop in HOSTS:
            chosen[sop] = free_loopback_host(candidates=range(31, 190), shuffle=True,
                                             exclude=chosen.values())
    except Exception as exc:
        raise SystemExit(f"demo: no free loopback address for the SOPs: {exc}") from None
    say(f"{', '.join(HOSTS.values())} are in use (a test run?): the SOPs use "
        f"{', '.join(chosen.values())}", indent=0)
    return chosen


def _raise_stopped(signum: int, frame: Optional[FrameType]) -> None:
    raise Stopped(signal.Signals(signum).name)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the instances' temp dirs")
    parser.add_argument("--verbose", action="store_true", help="dump the relevant log lines of each call")
    parser.add_argument("--directory", choices=("both", "file", "postgresql"), default="both",
                        help="which cluster directory to show: the file scenarios, then the "
                             "PostgreSQL ones (both, the default), or one of them")
    args = parser.parse_args(argv)
    parts = ("file", "postgresql") if args.directory == "both" else (args.directory,)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stopped)
    prefix = asterisk_prefix()
    preflight("postgresql" in parts)
    HOSTS.update(choose_hosts())
    began = time.monotonic()
    print("CallService demo: three SOPs (Asterisk + pbx_python) on loopback, SIPp as the phone")
    say(f"Asterisk {prefix}")
    say(f"module   {MODULE_SO}")
    demo = Demo(prefix, keep=args.keep, verbose=args.verbose)
    rows: list[Row] = []
    code = 1
    try:
        if "file" in parts:
            section("The directory file: contrib/cluster/cluster_directory.conf on every SOP")
            demo.start("file")
            for scenario in SCENARIOS:
                rows.append(scenario(demo, len(rows) + 1))
        if "postgresql" in parts:
            section("The directory in PostgreSQL: [directory] source = postgresql on every SOP")
            demo.start_postgres()
            demo.restart("postgresql")
            for scenario in PG_SCENARIOS:
                rows.append(scenario(demo, len(rows) + 1))
        summary(rows)
        code = 0 if all(r.ok for r in rows) else 1
        failed = sum(not r.ok for r in rows)
        print(f"\n{len(rows) - failed}/{len(rows)} scenarios as expected, in "
              f"{time.monotonic() - began:.1f} s")
    except (KeyboardInterrupt, Stopped) as exc:
        print(f"\ninterrupted ({str(exc) or 'SIGINT'}): stopping everything the demo started",
              flush=True)
        code = 130
    except Exception as exc:  # a scenario could not even run: say why, then clean up
        print(f"\ndemo failed: {type(exc).__name__}: {exc}", flush=True)
        print("(run again with --keep --verbose to look at the nodes' logs)", flush=True)
        if rows:
            summary(rows)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)   # a second Ctrl-C must not cut the cleanup short
        demo.cleanup()
        leftover = [f"{n} pid {i.pid}" for n, i in demo.nodes.items() if i.running]
        if leftover:
            print(f"WARNING: still running: {', '.join(leftover)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
