"""Stress and fault suite: a three-SOP CallService cluster under sustained SIPp load, with a node
SIGKILLed and restarted, `module reload pbx_python.so` every few seconds, and fuzzed parameters
checked byte for byte on the receiving SOP.

    make stress                          # full run (about 8 minutes), writes docs/RELIABILITY.md
    make stress STRESS_ARGS=--short      # the CI version (about 2.5 minutes)
    make stress STRESS_ARGS="--seed 42"  # the parameters of an earlier run, call for call

Calls: SIPp (on 127.0.0.199) calls sopA; sopA's dialplan gets the call's four parameters from
bench/stress_px.py (seeded, see bench/stress_params.py: random bytes 0x01-0xFF, UTF-8 text,
ASCII, separators; 0-1024 bytes) and runs CallService(7<idx>,<sop1>,<sop2>): sopB then sopC,
sopC then sopB, or (one call in ten) sopA itself. The service on the SOP that takes the call
reads INITSERVICE(Parameter1..4, origin) into channel variables; StressCheck compares them with
the seed's bytes and logs a line the harness checks again. Only loopback addresses are used,
every run is bounded in calls and time, and only processes started here are signalled.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stress_params as sp  # noqa: E402
from common import (BENCH_DIR, CALLER_HOST, ROOT, Instance, cluster_configs, machine_info,  # noqa: E402
                    pick_host, release_host)
from pbx_python.testing import Sipp, SippResult  # noqa: E402
from pbx_python.testing.cluster import ClusterSpec, wait_qualified  # noqa: E402
from pbx_python.testing.sipmsg import iter_trace, parse_headers, request_method  # noqa: E402

DOC = ROOT / "docs" / "RELIABILITY.md"
RESULTS = BENCH_DIR / "results"


@dataclass(frozen=True)
class Plan:
    """How long and how hard one run pushes."""
    mode: str
    rate: float            # new calls per second
    hold: float            # seconds SIPp holds each answered call before its BYE
    load: float            # seconds during which new calls start
    reload_every: float    # seconds between two reloads (round robin over the running nodes)
    kill_at: float         # seconds into the load when the victim is SIGKILLed
    down_for: float        # seconds before it is started again
    victim: str = "sopC"

    @property
    def calls(self) -> int:
        return int(self.rate * self.load)

    @property
    def concurrent(self) -> int:
        return int(self.rate * self.hold)


PLANS = {
    "full": Plan("full", rate=20, hold=15, load=360, reload_every=2, kill_at=120, down_for=30),
    "short": Plan("short", rate=8, hold=20, load=90, reload_every=2, kill_at=30, down_for=15),
}

#: Log text that means memory was corrupted or a process died, whichever node shows it.
CRASH_SIGNS = ("FRACK!", "bad magic number", "ERROR: AddressSanitizer", "SUMMARY: AddressSanitizer",
               "ERROR: LeakSanitizer", "Segmentation fault", "stack smashing detected",
               "double free or corruption", "malloc(): ", "free(): invalid")
INTERNAL_ERROR = "pbx_python internal error"

TX_RE = re.compile(r"STRESS TX (\d*) \[(.*?)\] \[(.*?)\] \[(.*?)\]\s*$", re.MULTILINE)
RX_RE = re.compile(r"STRESS RX (\d+) (OK|MISMATCH) origin=(.*?) d=(\S+) len=(\S+)\s*$", re.MULTILINE)
DETAIL_RE = re.compile(r"STRESS DETAIL (.*)$", re.MULTILINE)
LEVEL_RE = re.compile(r"^\[[^\]]*\] (WARNING|ERROR)\[\d+\](?:\[[^\]]*\])? (.*)$", re.MULTILINE)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------- dialplan

def extensions(hold: float) -> str:
    """Every node's extensions.conf: the entry in [phones], the checked service in
    [callservice-in]. Parameters reach CallService as CALLSERVICE_PARAM1..4 (any bytes),
    decoded by Asterisk's own BASE64_DECODE (an empty one stays unset)."""
    decode = []
    for i in range(1, 5):
        nxt = f"p{i + 1}" if i < 4 else "route"
        decode.append(f" same => n(p{i}),GotoIf($[\"${{STRESS_B{i}}}\" = \"\"]?{nxt})")
        decode.append(f" same => n,Set(CALLSERVICE_PARAM{i}=${{BASE64_DECODE(${{STRESS_B{i}}})}})")
    reads = [f" same => n,Set(P{i}=${{INITSERVICE(Parameter{i})}})" for i in range(1, 5)]
    return "\n".join([
        "[general]", "static = yes", "writeprotect = yes", "",
        "[phones]",
        "exten => 9,1,Set(CID=${CHANNEL(pjsip,call-id)})",   # SIPp: <call number>-<pid>@<ip>
        " same => n,Set(IDX=${CUT(CID,-,1)})",
        " same => n,StressParams(${IDX})",
        *decode,
        " same => n(route),CallService(7${IDX},${STRESS_ROUTE})",
        " same => n,Hangup()",
        "exten => h,1,Verbose(0,STRESS TX ${IDX} [${CALLSERVICE_STATUS}] [${CALLSERVICE_SOP}] "
        "[${CALLSERVICE_TRIED}])",
        "",
        "[callservice-in]",
        "exten => _7.,1,NoOp()",
        *reads,
        " same => n,Set(ORIGIN=${INITSERVICE(origin)})",
        " same => n,StressCheck(${EXTEN:1})",
        " same => n,Answer()",
        f" same => n,Wait({int(hold) + 60})",     # SIPp hangs up first
        " same => n,Hangup()",
        "",
    ])


def rtp_conf() -> str:
    """RTP bound to each node's own 127.x address: a range no other address shares, large
    enough for every channel of the run (two per call on sopA)."""
    return "[general]\nrtpstart = 20000\nrtpend = 29999\nicesupport = no\n"


# ---------------------------------------------------------------------------- cluster

@dataclass
class Node:
    """One Asterisk process of a SOP (a restarted SOP has a second Node)."""
    sop: str
    generation: int
    inst: Instance
    since: int = 0                       # log offset where the measured run starts
    rss_start_kb: Optional[int] = None
    rss_end_kb: Optional[int] = None
    rss_max_kb: int = 0
    rss_series: list[tuple[int, int]] = field(default_factory=list)   # (s into the load, kB)
    killed: bool = False                 # SIGKILLed by this suite
    died: Optional[str] = None           # ended on its own: how
    stop_rc: Optional[int] = None

    @property
    def label(self) -> str:
        return self.sop if self.generation == 1 else f"{self.sop}#{self.generation}"

    @property
    def ast(self) -> Any:
        return self.inst.ast

    def rss(self) -> Optional[int]:
        try:
            kb = self.ast.rss_kb()
        except Exception:  # noqa: BLE001 - process gone
            return None
        self.rss_max_kb = max(self.rss_max_kb, kb)
        return kb


class StressCluster:
    def __init__(self, seed: int, hold: float, profile: str) -> None:
        self.hosts = {sop: pick_host() for sop in sp.SOPS}
        self.spec = ClusterSpec(sops=self.hosts, python=sys.executable,
                                extra_callservice=f"\n[stress]\nseed = {seed}\nprofile = {profile}\n")
        self.files = {}
        for sop in sp.SOPS:
            files = cluster_configs(self.spec, sop, extensions(hold), pymodules=("stress_px",))
            files["rtp.conf"] = rtp_conf()
            self.files[sop] = files
        self.nodes: list[Node] = []

    def start(self) -> None:
        for sop in sp.SOPS:
            self._start(sop)
        wait_qualified({n.sop: n.ast for n in self.current()}, timeout=30)

    def _start(self, sop: str) -> Node:
        gen = 1 + sum(n.sop == sop for n in self.nodes)
        node = Node(sop, gen, Instance(sop if gen == 1 else f"{sop}r{gen}", "", host=self.hosts[sop],
                                        configs=self.files[sop]))
        node.rss_start_kb = node.rss()
        node.since = node.ast.log_offset()      # after its boot (the first ones: after the smoke calls)
        self.nodes.append(node)
        return node

    def current(self) -> list[Node]:
        """The newest Node of each SOP."""
        latest: dict[str, Node] = {}
        for n in self.nodes:
            latest[n.sop] = n
        return list(latest.values())

    def node(self, sop: str) -> Node:
        return next(n for n in reversed(self.nodes) if n.sop == sop)

    def running(self) -> list[Node]:
        return [n for n in self.current() if n.ast.running]

    def kill(self, sop: str) -> Node:
        node = self.node(sop)
        node.rss_end_kb = node.rss()
        node.killed = True
        os.kill(node.ast.pid, signal.SIGKILL)      # exactly the process this suite started
        node.ast.stop(timeout=5)                   # reaps it
        return node

    def restart(self, sop: str) -> Node:
        return self._start(sop)

    def check_alive(self, when: float) -> list[Node]:
        """Nodes found dead that this suite did not kill (recorded once each)."""
        dead = []
        for n in self.nodes:
            if n.killed or n.died or n.ast.proc is None or n.ast.running:
                continue
            rc = n.ast.proc.returncode
            n.died = f"exited rc={rc}" + (f" ({signal.Signals(-rc).name})" if rc is not None and rc < 0 else "") \
                + f" at {when:.0f} s"
            dead.append(n)
        return dead

    def close(self, keep: bool) -> list[str]:
        """Stop everything; keep (and return) the directories of nodes that crashed, or all."""
        kept = []
        for n in self.nodes:
            if n.ast.running:
                n.stop_rc = n.ast.stop(timeout=20)
            if keep or n.died or n.ast.crashed or cores(n):
                kept.append(f"{n.label}: {n.ast.base}")
                continue
            try:
                n.inst.close()
            except Exception as exc:  # noqa: BLE001
                log(f"closing {n.label}: {exc}")
        for host in self.hosts.values():
            release_host(host)
        return kept


def cores(node: Node) -> list[str]:
    return sorted(p.name for p in Path(node.ast.base).glob("core*"))


# ---------------------------------------------------------------------------- load

class Load(threading.Thread):
    """One SIPp UAC run in a thread: ``calls`` calls at ``rate``, each held ``hold`` s."""

    def __init__(self, sipp: Sipp, target: str, plan: Plan) -> None:
        super().__init__(name="sipp", daemon=True)
        self.sipp, self.target, self.plan = sipp, target, plan
        self.result: Optional[SippResult] = None
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        p = self.plan
        try:
            self.result = self.sipp.run_uac(
                self.target, local_host=CALLER_HOST, service="9", calls=p.calls, rate=p.rate,
                concurrent=max(2 * p.concurrent, 50), duration_ms=int(p.hold * 1000),
                timeout=p.load + p.hold + 90, extra_args=["-max_socket", "4096"])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc


def kill_own_sipp() -> None:
    """SIGKILL SIPp processes that are children of this process (on Ctrl-C or a timeout)."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        if ppid == me and comm == "sipp":
            os.kill(int(stat.parent.name), signal.SIGKILL)


def channel_counts(node: Node) -> tuple[int, int]:
    out = node.ast.cli("core show channels count", timeout=10)
    ch = re.search(r"(\d+) active channels?", out)
    calls = re.search(r"(\d+) active calls?", out)
    return int(ch.group(1)) if ch else -1, int(calls.group(1)) if calls else -1


@dataclass
class Timeline:
    events: list[str] = field(default_factory=list)
    reloads: Counter = field(default_factory=Counter)        # (node, outcome) -> count
    max_channels: dict[str, int] = field(default_factory=dict)
    max_calls_entry: int = 0
    crashes: list[str] = field(default_factory=list)

    def event(self, t: float, text: str) -> None:
        self.events.append(f"{t:6.1f} s  {text}")
        log(text)


def drive(cluster: StressCluster, plan: Plan, load: Load) -> Timeline:
    """Run the faults while SIPp runs: reloads, the kill and the restart; sample the nodes."""
    tl = Timeline()
    start = time.monotonic()
    next_reload, next_sample, turn = 3.0, 0.0, 0
    killed = restarted = False
    deadline = plan.load + plan.hold + 150
    load.start()
    while load.is_alive():
        t = time.monotonic() - start
        if t > deadline:
            tl.event(t, "SIPp still running past the time bound: killing it")
            kill_own_sipp()
            load.join(15)
            break
        if not killed and t >= plan.kill_at:
            node = cluster.kill(plan.victim)
            tl.event(t, f"SIGKILL {node.label} (pid {node.ast.pid})")
            killed = True
        elif killed and not restarted and t >= plan.kill_at + plan.down_for:
            try:
                node = cluster.restart(plan.victim)
                tl.event(time.monotonic() - start, f"{node.label} restarted (pid {node.ast.pid})")
            except Exception as exc:  # noqa: BLE001
                tl.crashes.append(f"{plan.victim} did not start again: {exc}")
                tl.event(t, f"restart of {plan.victim} FAILED: {exc}")
            restarted = True
        if t >= next_reload and t < plan.load:
            nodes = cluster.running()
            if nodes:
                node = nodes[turn % len(nodes)]
                turn += 1
                try:
                    out = node.ast.cli("module reload pbx_python.so", timeout=30).strip()
                    outcome = "ok" if "reloaded" in out.lower() or not out else out.splitlines()[-1][:80]
                except Exception as exc:  # noqa: BLE001
                    outcome = f"{type(exc).__name__}"
                tl.reloads[(node.label, outcome)] += 1
            next_reload = t + plan.reload_every
        if t >= next_sample:
            for node in cluster.running():
                kb = node.rss()
                if kb:
                    node.rss_series.append((int(t), kb))
                try:
                    chans, calls = channel_counts(node)
                except Exception:  # noqa: BLE001
                    continue
                tl.max_channels[node.label] = max(tl.max_channels.get(node.label, 0), chans)
                if node.sop == sp.ENTRY:
                    tl.max_calls_entry = max(tl.max_calls_entry, calls)
            next_sample = t + 5
        for node in cluster.check_alive(t):
            tl.crashes.append(f"{node.label} {node.died}")
            tl.event(t, f"!! {node.label} died: {node.died}")
        time.sleep(0.25)
    tl.event(time.monotonic() - start, "SIPp finished")
    return tl


def drain(cluster: StressCluster, timeout: float = 60) -> dict[str, int]:
    """Wait for every running node to have no channel; the ones left over, per node."""
    deadline = time.monotonic() + timeout
    left: dict[str, int] = {}
    for node in cluster.running():
        while True:
            try:
                chans = channel_counts(node)[0]
            except Exception:  # noqa: BLE001 - died meanwhile: check_alive() reports it
                chans = 0
            if chans == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if chans:
            left[node.label] = chans
    return left


# ---------------------------------------------------------------------------- analysis

def sipp_calls(res: Optional[SippResult]) -> dict[int, Optional[int]]:
    """Call index -> final INVITE status SIPp got (None: no final response)."""
    out: dict[int, Optional[int]] = {}
    if res is None:
        return out
    for entry in iter_trace(res.messages):
        if entry.direction != "sent" or request_method(entry.text) != "INVITE":
            continue
        cid = parse_headers(entry.text).first("Call-ID") or ""
        head = cid.split("-", 1)[0]
        if head.isdigit():
            out.setdefault(int(head), None)
    for cid, status in res.statuses.items():
        head = cid.split("-", 1)[0]
        if head.isdigit() and int(head) in out:
            out[int(head)] = status
    return out


@dataclass
class Rx:
    node: str
    node_ok: bool
    origin: str
    digests: list[str]
    lengths: list[int]


def analyse(cluster: StressCluster, plan: Plan, seed: int, profile: str, res: Optional[SippResult],
            tl: Timeline, leftover: dict[str, int]) -> dict[str, Any]:
    texts = {n.label: n.ast.log_text(n.since) for n in cluster.nodes}
    raw = {n.label: (n.ast.stdout_path.read_text(errors="replace") if n.ast.stdout_path.exists() else "")
           for n in cluster.nodes}
    entry = texts[sp.ENTRY]
    tx: dict[int, tuple[str, str, str]] = {}
    for m in TX_RE.finditer(entry):
        if m.group(1):
            tx[int(m.group(1))] = (m.group(2), m.group(3), m.group(4))
    rx: dict[int, list[Rx]] = {}
    for label, text in texts.items():
        for m in RX_RE.finditer(text):
            rx.setdefault(int(m.group(1)), []).append(Rx(
                label, m.group(2) == "OK", m.group(3), m.group(4).split(","),
                [int(x) for x in m.group(5).split(",")]))
    calls = sipp_calls(res)

    # --- calls: placed / answered / failed with their reasons
    answered = [i for i, s in calls.items() if s == 200]
    failed = {i: s for i, s in calls.items() if s != 200}
    reasons = Counter()
    for i, status in failed.items():
        cs = tx.get(i)
        what = f"{cs[0] or '(no status)'} tried={cs[2] or '-'}" if cs else "no CallService result logged"
        reasons[f"SIP {status or 'no final response'}; {what}"] += 1
    failed_examples = sorted(failed)[:10]
    outcomes = Counter(f"{s or '(none)'} {t or '-'}" for s, _, t in tx.values())

    # --- parameters: every received set against the seed
    mismatched, disagree, unchecked, unverifiable, dup, stray = [], [], [], [], [], []
    lost_by_trait: Counter = Counter()
    altered_by_trait: Counter = Counter()
    sent_by_trait: Counter = Counter()
    kinds_bad: Counter = Counter()
    kinds_all: Counter = Counter()
    shapes: Counter = Counter()
    for i in sorted(calls):
        for kind, data in sp.call(seed, i, profile):
            kinds_all[kind] += 1
            for tr in sp.traits(data):
                sent_by_trait[tr] += 1
    by_class: dict[str, list[int]] = {c: [0, 0] for c in sp.CALL_CLASSES}   # class -> [checked, bad]
    for i, got in sorted(rx.items()):
        if i not in calls:
            stray.append(i)
            continue
        want = sp.call(seed, i, profile)
        if len(got) > 1:
            dup.append((i, [g.node for g in got]))
        cls = by_class[sp.call_class([data for _, data in want])]
        cls[0] += 1
        if any(g.origin != sp.ENTRY or g.digests != [sp.digest(d) for _, d in want] for g in got):
            cls[1] += 1
        for g in got:
            bad = [n for n, (kind, data) in enumerate(want)
                   if g.digests[n] != sp.digest(data) or g.lengths[n] != len(data)]
            ok = not bad and g.origin == sp.ENTRY
            if ok != g.node_ok:
                disagree.append(i)
            if ok:
                continue
            mismatched.append(i)
            empty = all(n == 0 for n in g.lengths)
            shapes["origin and all 4 parameters empty (no CallService data)" if empty and not g.origin
                   else f"origin {g.origin!r} instead of {sp.ENTRY!r}" if g.origin != sp.ENTRY
                   else f"{len(bad)} of 4 parameters differ"] += 1
            for n in bad:
                kind, data = want[n]
                kinds_bad[kind] += 1
                into = lost_by_trait if g.lengths[n] == 0 and data else altered_by_trait
                for tr in sp.traits(data):
                    into[tr] += 1
    victims = {n.label for n in cluster.nodes if n.killed}
    for i in answered:
        if i in rx:
            continue
        cs = tx.get(i)
        if cs and cs[1] == plan.victim and victims:
            unverifiable.append(i)       # answered by the node killed mid-call: its log may stop short
        else:
            unchecked.append(i)

    # --- crashes and log health
    crashes = list(tl.crashes)
    signs: Counter = Counter()
    internal: Counter = Counter()
    warnings: dict[str, Counter] = {}
    for n in cluster.nodes:
        text, out = texts[n.label], raw[n.label]
        for sign in CRASH_SIGNS:
            hits = text.count(sign) + out.count(sign)
            if hits:
                signs[f"{n.label}: {sign!r} in its log or output"] += hits
        if n.ast.crashed and not n.killed and not n.died:
            crashes.append(f"{n.label} ended rc={n.ast.returncode} when stopped")
        if n.stop_rc is not None and n.stop_rc < 0 and not n.ast.crashed:
            crashes.append(f"{n.label} did not stop on 'core stop now' (needed SIGKILL)")
        for core in cores(n):
            crashes.append(f"{n.label}: core file {core}")
        internal[n.label] = text.count(INTERNAL_ERROR)
        warnings[n.label] = Counter(_norm(m.group(1), m.group(2)) for m in LEVEL_RE.finditer(text))
    crashes += [f"{k} x{v}" for k, v in signs.items()]
    crashed_nodes = sorted({c.split()[0].rstrip(":") for c in crashes})   # each entry starts with it

    reload_ok = sum(1 for n in cluster.nodes for _ in re.finditer(r"pbx_python reload: ", texts[n.label]))
    reload_failed = sum(texts[n.label].count("pbx_python reload failed") for n in cluster.nodes)
    details = [d for n in cluster.nodes for d in DETAIL_RE.findall(texts[n.label])][:6]
    return {
        "placed": len(calls), "answered": len(answered), "failed": len(failed),
        "sipp": {"rc": res.returncode if res else None, "successful": res.successful if res else 0,
                 "failed": res.failed if res else 0, "timed_out": res.timed_out if res else None},
        "failure_reasons": dict(reasons.most_common()), "failed_examples": failed_examples,
        "outcomes": dict(outcomes.most_common()),
        "tx_lines": len(tx), "rx_calls": len(rx),
        "mismatched_calls": len(set(mismatched)), "mismatch_examples": sorted(set(mismatched))[:10],
        "mismatch_shapes": dict(shapes.most_common()),
        "mismatches_by_call_class": {k: f"{v[1]}/{v[0]}" for k, v in by_class.items()},
        "mismatched_params_by_kind": {k: f"{kinds_bad[k]}/{kinds_all[k]}" for k in sp.KINDS},
        "lost_params_by_trait": dict(lost_by_trait.most_common()),
        "altered_params_by_trait": dict(altered_by_trait.most_common()),
        "sent_params_by_trait": dict(sent_by_trait.most_common()),
        "mismatch_details": details,
        "checker_disagreements": len(disagree),
        "unchecked": len(unchecked), "unchecked_examples": unchecked[:10],
        "unverifiable_killed_node": len(unverifiable),
        "delivered_twice": len(dup), "delivered_twice_examples": dup[:5],
        "stray_rx": len(stray),
        "crashes": crashes, "crashed_nodes": crashed_nodes,
        "internal_errors": {k: v for k, v in internal.items() if v},
        "leftover_channels": leftover,
        "reloads": {f"{k[0]}: {k[1]}": v for k, v in sorted(tl.reloads.items())},
        "reloads_logged_ok": reload_ok, "reloads_logged_failed": reload_failed,
        "warnings": {k: dict(v.most_common(10)) for k, v in warnings.items() if v},
        "rss_kb": {n.label: {"start": n.rss_start_kb, "end": n.rss_end_kb, "max": n.rss_max_kb,
                             "killed": n.killed, "series": n.rss_series} for n in cluster.nodes},
        "max_channels": tl.max_channels, "max_calls_entry": tl.max_calls_entry,
        "timeline": tl.events,
    }


def _norm(level: str, msg: str) -> str:
    msg = re.sub(r"PJSIP/([A-Za-z]+)-[0-9a-f]{8}", r"PJSIP/\1-X", msg)
    msg = re.sub(r"Local/[^ ;,]+", "Local/X", msg)
    msg = re.sub(r"\d+", "N", msg)
    return f"{level} {msg[:150]}"


def checks(r: dict[str, Any], allow_failed: int) -> list[tuple[str, str, bool]]:
    """Every pass criterion of a run: (criterion, what was measured, met)."""
    internal, left = sum(r["internal_errors"].values()), sum(r["leftover_channels"].values())
    return [
        ("no crash", f"{len(r['crashed_nodes'])} node(s) crashed", not r["crashes"]),
        ("calls were placed", f"{r['placed']} placed", r["placed"] > 0),
        (f"at most {allow_failed} failed call(s)", f"{r['failed']} failed", r["failed"] <= allow_failed),
        ("no parameter mismatch", f"{r['mismatched_calls']} call(s) with mismatches",
         not r["mismatched_calls"]),
        ("receivers and harness agree", f"{r['checker_disagreements']} disagreement(s)",
         not r["checker_disagreements"]),
        ("every answered call checked by its receiver", f"{r['unchecked']} unchecked", not r["unchecked"]),
        ("no service run for a call never placed", f"{r['stray_rx']}", not r["stray_rx"]),
        ("no pbx_python internal error", f"{internal}", not internal),
        ("no channel left after the run", f"{left}", not left),
        ("no failed reload", f"{r['reloads_logged_failed']}", not r["reloads_logged_failed"]),
    ]


def verdict(r: dict[str, Any], allow_failed: int) -> list[str]:
    """Why the run failed (empty: it passed)."""
    return [f"{what}: NOT met ({value})" for what, value, ok in checks(r, allow_failed) if not ok]


# ---------------------------------------------------------------------------- output

def print_report(r: dict[str, Any], why: list[str]) -> None:
    p = lambda s="": print(s, flush=True)  # noqa: E731
    p("\n== Stress result " + "=" * 60)
    p(f"seed {r['seed']}  mode {r['plan']['mode']}  parameters {r['profile']}  {r['plan']['calls']} calls at {r['plan']['rate']:g}/s, "
      f"hold {r['plan']['hold']:g} s  ({r['elapsed_s']:.0f} s in all)")
    p(f"calls placed {r['placed']}   answered {r['answered']}   failed {r['failed']}   "
      f"(SIPp: {r['sipp']['successful']} successful, {r['sipp']['failed']} failed, rc {r['sipp']['rc']})")
    p(f"concurrency: up to {r['max_calls_entry']} calls on {sp.ENTRY}; channels per node at most "
      + ", ".join(f"{k} {v}" for k, v in r["max_channels"].items()))
    if r["failure_reasons"]:
        p("failed calls by reason:")
        for k, v in r["failure_reasons"].items():
            p(f"  {v:6d}  {k}")
        p(f"  (calls {r['failed_examples']}...)")
    p("CALLSERVICE_STATUS / TRIED on the entry SOP (every call):")
    for k, v in r["outcomes"].items():
        p(f"  {v:6d}  {k}")
    p(f"parameter mismatches: {r['mismatched_calls']} call(s) of {r['rx_calls']} checked "
      f"(receiver vs harness disagreements: {r['checker_disagreements']}; answered but unchecked: "
      f"{r['unchecked']}; answered by the killed node, unverifiable: {r['unverifiable_killed_node']})")
    for k, v in r["mismatch_shapes"].items():
        p(f"  {v:6d}  {k}")
    p("  mismatched/checked calls, by what their parameters held: " + ", ".join(
        f"{k}: {v}" for k, v in r["mismatches_by_call_class"].items()))
    if r["mismatched_calls"]:
        p("  mismatched parameters by kind (bad/sent): " + ", ".join(
            f"{k} {v}" for k, v in r["mismatched_params_by_kind"].items()))
        p("  parameters received EMPTY, by what they held (other parameters of the call may be the cause): " + _pairs(r["lost_params_by_trait"]))
        p("  parameters received ALTERED, by what they held: " + _pairs(r["altered_params_by_trait"]))
        p("  (all parameters sent, by what they held: " + _pairs(r["sent_params_by_trait"]) + ")")
        for d in r["mismatch_details"]:
            p(f"  e.g. call {d}")
    if r["delivered_twice"]:
        p(f"services run twice for one call: {r['delivered_twice']} (e.g. {r['delivered_twice_examples']})")
    p(f"crashes: {len(r['crashed_nodes'])} {r['crashed_nodes'] or ''}" + "".join(f"\n  !! {c}" for c in r["crashes"]))
    p("reloads: " + ", ".join(f"{k} x{v}" for k, v in r["reloads"].items())
      + f"  (logged: {r['reloads_logged_ok']} ok, {r['reloads_logged_failed']} failed)")
    if r["internal_errors"]:
        p(f"pbx_python internal errors: {r['internal_errors']}")
    if r["leftover_channels"]:
        p(f"channels left after the run: {r['leftover_channels']}")
    p("RSS (kB) at start / end (max); samples during the load (s: kB):")
    for k, v in r["rss_kb"].items():
        series = v["series"]
        some = series[::max(1, len(series) // 6)] + series[-1:] if series else []
        p(f"  {k:8s} {v['start']} / {v['end']} ({v['max']})" + ("  SIGKILLed here" if v["killed"] else "")
          + "   " + " ".join(f"{t}:{kb}" for t, kb in some))
    for node, counts in r["warnings"].items():
        p(f"log warnings/errors on {node}:")
        for k, v in counts.items():
            p(f"  {v:6d}  {k}")
    p("timeline: " + "; ".join(e.strip() for e in r["timeline"]))
    p(f"\nRESULT: {'PASS' if not why else 'FAIL: ' + '; '.join(why)}")
    total = len(r["checks"])
    p(f"stress: {total - len(why)} passed, {len(why)} failed")   # one line per criterion above


def _pairs(c: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.items()) or "none"


def smoke(sipp: Sipp, cluster: StressCluster) -> None:
    """Three calls before the load: the dialplan and the modules work at all (each call gets a
    CallService result; whether it is right is for the load to count)."""
    res = sipp.run_uac(cluster.hosts[sp.ENTRY], local_host=CALLER_HOST, service="9", calls=3,
                       rate=3, duration_ms=500, timeout=30)
    entry = cluster.node(sp.ENTRY).ast
    results = lambda: re.findall(r"STRESS TX \d+ \[[A-Z]+\]", entry.log_text())  # noqa: E731
    deadline = time.monotonic() + 10
    while len(results()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    if len(res.statuses) != 3 or len(results()) < 3:
        raise RuntimeError(f"smoke calls failed ({res}); {sp.ENTRY} log tail:\n{entry.log_text()[-3000:]}")


def report_key(report: dict[str, Any]) -> str:
    """full, short, full-text, short-text: one page section and one JSON file each."""
    return report["plan"]["mode"] + ("-text" if report["profile"] == "text" else "")


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI version (about 2.5 minutes)")
    ap.add_argument("--seed", type=int, help="parameter seed (default: random, printed)")
    ap.add_argument("--rate", type=float, help="new calls per second")
    ap.add_argument("--hold", type=float, help="seconds each call is held")
    ap.add_argument("--load", type=float, help="seconds during which calls start")
    ap.add_argument("--text-only", action="store_true",
                    help="parameters of valid UTF-8 text without 0x1F only (diagnosis: loads the "
                         "cluster with calls that do not hit the byte-level defects)")
    ap.add_argument("--allow-failed", type=int, default=0, help="failed calls tolerated (default 0)")
    ap.add_argument("--doc", default=str(DOC), help="page to update ('' for none)")
    ap.add_argument("--keep", action="store_true", help="keep every node's directory")
    ap.add_argument("--report-only", action="store_true",
                    help="only rebuild --doc from bench/results/stress-*.json")
    args = ap.parse_args(argv)
    if args.report_only:
        import stress_report
        for path in sorted(RESULTS.glob("stress-*.json")):
            stress_report.update(Path(args.doc), json.loads(path.read_text()))
            print(f"{args.doc}: section from {path}")
        return 0
    base = PLANS["short" if args.short else "full"]
    plan = Plan(base.mode, rate=args.rate or base.rate, hold=args.hold or base.hold,
                load=args.load or base.load, reload_every=base.reload_every,
                kill_at=min(base.kill_at, (args.load or base.load) / 3),
                down_for=base.down_for)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    profile = "text" if args.text_only else "bytes"
    command = "make stress STRESS_ARGS=\"" + " ".join(
        (["--short"] if args.short else []) + (["--text-only"] if args.text_only else []) + [f"--seed {seed}"]
        + [f"--{k} {v:g}" for k, v in (("rate", args.rate), ("hold", args.hold), ("load", args.load)) if v]) + "\""
    print(f"pbx_python stress suite: seed {seed} (reproduce: {command})", flush=True)
    print(f"plan: {plan}", flush=True)

    # Children inherit these: a crashing node leaves a core in its directory; many sockets.
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)

    began = time.monotonic()
    info = machine_info()
    sipp = Sipp()
    cluster = StressCluster(seed, plan.hold, profile)
    report: dict[str, Any] = {}
    why = ["did not finish"]
    kept: list[str] = []
    try:
        log(f"starting {', '.join(f'{s} {h}' for s, h in cluster.hosts.items())}")
        cluster.start()
        log("running: " + ", ".join(f"{n.label} pid {n.ast.pid}" for n in cluster.nodes))
        smoke(sipp, cluster)
        for n in cluster.nodes:
            n.since = n.ast.log_offset()
            n.rss_start_kb = n.rss()
        log(f"load: {plan.calls} calls, {plan.rate:g}/s, held {plan.hold:g} s (~{plan.concurrent} at once); "
            f"reload every {plan.reload_every:g} s; SIGKILL {plan.victim} at {plan.kill_at:g} s for "
            f"{plan.down_for:g} s")
        load = Load(sipp, cluster.hosts[sp.ENTRY], plan)
        tl = drive(cluster, plan, load)
        if load.error:
            raise load.error
        leftover = drain(cluster)
        for node in cluster.check_alive(time.monotonic() - began):
            tl.crashes.append(f"{node.label} {node.died} (after the load)")
        for n in cluster.running():
            n.rss_end_kb = n.rss()
        for n in cluster.running():
            n.stop_rc = n.ast.stop(timeout=20)
        report = analyse(cluster, plan, seed, profile, load.result, tl, leftover)
        report.update(seed=seed, command=command, profile=profile, plan=dict(plan.__dict__, calls=plan.calls),
                      machine=info, elapsed_s=time.monotonic() - began,
                      finished=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
        report["checks"] = checks(report, args.allow_failed)
        why = report["verdict"] = verdict(report, args.allow_failed)
        print_report(report, why)
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc or 'SIGINT'}): stopping what the suite started", flush=True)
        why = ["interrupted"]
    finally:
        kill_own_sipp()
        kept = cluster.close(args.keep)
        sipp.cleanup()
    if kept:
        print("kept node directories: " + "; ".join(kept), flush=True)
    if report:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"stress-{report_key(report)}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        if args.doc:
            import stress_report
            stress_report.update(Path(args.doc), report)
            print(f"wrote {args.doc} and {RESULTS / f'stress-{report_key(report)}.json'}", flush=True)
    return 0 if not why else 1


if __name__ == "__main__":
    sys.exit(main())
