#!/usr/bin/env python3
"""Shutdown-abort probe: does Asterisk 22 abort in `core stop` with pjproject's
"Assert failed: endpt && rdata" + "free(): invalid next size" with and without pbx_python?

Each iteration starts a 3-node PJSIP cluster (trunks between all nodes with qualify, exactly the
pjsip.conf cluster.py generates), waits until every trunk is qualified, places a few
PJSIP calls between nodes, then stops all nodes and inspects exit status and logs.

  variant A: pbx_python.so not in the module dir at all (plain pjsip.conf + extensions.conf)
  variant B: pbx_python.so loaded with dialplan_funcs.callservice, as cluster.py does

  stop modes: simul     -> AsteriskInstance.stop() (gracefully, then now) on all nodes at once
              simul-now -> `core stop now` on all nodes at once
              seq       -> AsteriskInstance.stop() one node after the other (as the pytest
                           asterisk_factory teardown does)

  --flood R [--flood-kind resp|req]: from --flood-lead s before the stop until all nodes
             exited, send R/s stray "200 OK"s to OPTIONS from 127.0.0.230 (resp), or OPTIONS
             requests from the peer nodes' IPs (req), to the nodes (see class Flood).
  --extra-aors N: N more AORs per peer on every node, contact = the peer, qualify_frequency=1.
  --burn N: N busy-looping processes while the nodes stop (a loaded 2-core CI machine).
  --freeze S: before stopping, SIGSTOP sopB for S seconds while sopA calls it, then SIGCONT
             (what test_silent_primary_is_abandoned_after_the_progress_timeout does).
  --peer-down S: stop sopA first, wait S seconds (sopB/sopC's qualify marks it down), then
             stop sopB and sopC with --stop (a test that stopped a SOP, then the fixture teardown).
  --frozen-peer S: SIGSTOP sopA, wait S s, stop sopB/sopC (their qualify OPTIONS to sopA may be
             outstanding), then SIGCONT and stop sopA.
  --cores:   allow core dumps; a gdb backtrace of each core is added to the record.

Only 127.0.0.220-250 are used. Results are appended as JSON lines to results.jsonl; base dirs of
nodes that crashed or logged "Assert failed" are kept (path in the record).

Usage: .venv/bin/python bench/abort_probe/probe.py --variant A --stop simul -n 40
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The runs of 2026-11-29 used a frozen copy of the checkout in snap/ (pbx_python/, dialplan_funcs/
# and pbx_python.so: the checkout was being edited). Without one, the checkout itself is used.
SNAP = HERE / "snap" if (HERE / "snap").is_dir() else ROOT
sys.path.insert(0, str(SNAP))

from pbx_python.testing.cluster import ClusterSpec, wait_qualified  # noqa: E402
from pbx_python.testing.instance import AsteriskInstance  # noqa: E402

PREFIX = Path(subprocess.run(["bash", str(ROOT / "contrib" / "build-asterisk.sh"), "--print"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()[-1])
MODULE_SO = SNAP / "pbx_python.so" if SNAP != ROOT else ROOT / "build" / "pbx_python.so"
SOPS = ("sopA", "sopB", "sopC")
BAD = re.compile(r"Assert failed.*|Cleanup incomplete.*|free\(\).*|double free.*|corrupted.*|malloc\(\).*|"
                 r"Segmentation fault.*|Aborted.*|FRACK.*")


def hosts_for(base_octet: int) -> dict[str, str]:
    hosts = {name: f"127.0.0.{base_octet + i}" for i, name in enumerate(SOPS)}
    for h in hosts.values():
        assert 220 <= int(h.rsplit(".", 1)[1]) <= 250, h
    return hosts


def extensions(node: str) -> str:
    return f"""\
[general]
static = yes

[phones]

[callservice-in]
exten => 2000,1,Answer()
 same => n,Verbose(0,SERVICE 2000 NODE={node})
 same => n,Wait(0.3)
 same => n,Hangup()
"""


def extra_aors(spec: ClusterSpec, node: str, per_peer: int) -> str:
    """`per_peer` additional AORs per other node, contact = that node, qualified every second
    (more qualify pings/responses in flight, and a longer options cleanup at unload)."""
    out = []
    for sop, peer in spec.sops.items():
        if sop == node:
            continue
        for k in range(per_peer):
            # AORs are only qualified when an endpoint references them
            out.append(f"[x{sop}{k}]\ntype = endpoint\ntransport = transport-udp\n"
                       f"context = callservice-in\ndisallow = all\nallow = ulaw\naors = x{sop}{k}\n\n"
                       f"[x{sop}{k}]\ntype = aor\ncontact = sip:{peer}:5060\n"
                       f"qualify_frequency = 1\nqualify_timeout = 0.5\n")
    return "\n".join(out)


def make_nodes(variant: str, spec: ClusterSpec, per_peer: int = 0) -> dict[str, AsteriskInstance]:
    nodes = {}
    for node, host in spec.sops.items():
        pjsip = spec.pjsip_conf(node) + "\n" + extra_aors(spec, node, per_peer)
        if variant == "A":
            configs = {"pjsip.conf": pjsip, "extensions.conf": extensions(node)}
            inst = AsteriskInstance(PREFIX, host, name=node, configs=configs)
            assert not (inst.moddir / "pbx_python.so").exists()
        else:
            configs = spec.configs(node, extensions(node))
            configs["pjsip.conf"] = pjsip
            inst = AsteriskInstance(PREFIX, host, name=node, modules=[MODULE_SO],
                                    configs=configs, env={"PYTHONPATH": str(SNAP)})
        nodes[node] = inst
    return nodes


def stop_all(nodes: dict[str, AsteriskInstance], mode: str) -> None:
    insts = list(nodes.values())
    if mode == "seq":
        for inst in insts:
            inst.stop()
        return
    if mode == "simul":
        fn = lambda inst: inst.stop()  # noqa: E731
    else:  # simul-now
        def fn(inst: AsteriskInstance) -> None:
            try:
                inst._rx("core stop now", timeout=5)
            except subprocess.TimeoutExpired:
                pass
            inst.stop()  # waits / escalates if still running
    threads = [threading.Thread(target=fn, args=(i,)) for i in insts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


FLOOD_SRC = "127.0.0.230"   # inside the allowed 127.0.0.220-250 range


class Flood(threading.Thread):
    """Stray SIP traffic at every node, `rate` messages per second in total (as fast as Python
    can when the rate is too high). kind="resp": "SIP/2.0 200 OK" responses to OPTIONS from
    FLOOD_SRC (random Call-IDs); kind="req": OPTIONS requests sent from the *other nodes'* IPs
    (ephemeral ports), so they are identified as the peer trunk like real qualify pings.
    Every message is cloned by res_pjsip's distributor and queued on a serializer (the path of
    a qualify ping/response arriving during shutdown); requests are also costly enough to
    leave a backlog in those serializers when Asterisk starts unloading res_pjsip."""

    def __init__(self, hosts: list[str], rate: int, kind: str = "resp") -> None:
        super().__init__(daemon=True)
        for h in hosts:
            assert h.startswith("127.0.0."), h
        self.hosts, self.rate, self.kind = hosts, rate, kind
        self.stop_evt = threading.Event()
        self.sent = 0

    def _socks(self) -> dict[str, socket.socket]:
        srcs = self.hosts if self.kind == "req" else [FLOOD_SRC]
        socks = {}
        for src in srcs:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((src, 0))
            s.setblocking(False)
            socks[src] = s
        return socks

    def _msg(self, host: str, src: str, port: int) -> bytes:
        tag = "%016x" % random.getrandbits(64)
        if self.kind == "req":
            return (f"OPTIONS sip:{host}:5060 SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {src}:{port};rport;branch=z9hG4bKfl{tag}\r\n"
                    f"From: <sip:flood@{src}>;tag={tag}\r\n"
                    f"To: <sip:{host}>\r\n"
                    f"Call-ID: fl{tag}-{self.sent}\r\n"
                    f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                    f"Content-Length: 0\r\n\r\n").encode()
        return (f"SIP/2.0 200 OK\r\n"
                f"Via: SIP/2.0/UDP {host}:5060;rport={port};received={src};"
                f"branch=z9hG4bKPj{tag}\r\n"
                f"From: <sip:{host}>;tag={tag}\r\n"
                f"To: <sip:{src}>;tag=t{tag}\r\n"
                f"Call-ID: {tag}-{self.sent}\r\n"
                f"CSeq: {self.sent % 60000 + 1} OPTIONS\r\n"
                f"Content-Length: 0\r\n\r\n").encode()

    def run(self) -> None:
        socks = self._socks()
        interval = 1.0 / self.rate
        nxt = time.monotonic()
        while not self.stop_evt.is_set():
            host = self.hosts[self.sent % len(self.hosts)]
            if self.kind == "req":
                others = [h for h in self.hosts if h != host]
                src = others[(self.sent // len(self.hosts)) % len(others)]
            else:
                src = FLOOD_SRC
            sock = socks[src]
            try:
                sock.sendto(self._msg(host, src, sock.getsockname()[1]), (host, 5060))
                while True:        # drain answers (401/200) so the socket buffer never fills
                    sock.recv(65535)
            except OSError:
                pass
            self.sent += 1
            nxt += interval
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)
            elif d < -0.5:
                nxt = time.monotonic()
        for sock in socks.values():
            sock.close()


def inspect(inst: AsteriskInstance) -> dict:
    out = inst.stdout_path.read_text(errors="replace") if inst.stdout_path.exists() else ""
    log = inst.log_text()
    bad_out = [m.group(0).strip() for m in BAD.finditer(out)]
    bad_log = [ln for ln in log.splitlines() if BAD.search(ln)]
    rc = inst.returncode
    crashed = rc is not None and rc < 0 and rc != -signal.SIGKILL
    # did the crash come after "Asterisk cleanly ending"?  (stdout has both, in order)
    clean_end = "Asterisk cleanly ending" in out or "Asterisk cleanly ending" in log
    abort_after_clean = None
    if crashed and bad_out:
        i_clean = out.find("Asterisk cleanly ending")
        i_bad = min(out.find(b) for b in bad_out if out.find(b) >= 0)
        abort_after_clean = i_clean >= 0 and i_clean < i_bad
    return {"node": inst.name, "rc": rc, "crashed": crashed, "killed": rc == -signal.SIGKILL,
            "clean_end": clean_end, "abort_after_clean_end": abort_after_clean,
            "stdout_bad": bad_out[:10], "log_bad": bad_log[:10], "base": str(inst.base)}


def iteration(i: int, args: argparse.Namespace) -> dict:
    spec = ClusterSpec(sops=hosts_for(args.base_octet), qualify_frequency=1, qualify_timeout=0.5,
                       python=str(ROOT / ".venv" / "bin" / "python"))
    nodes = make_nodes(args.variant, spec, args.extra_aors)
    rec: dict = {"iter": i, "variant": args.variant, "stop": args.stop, "calls": args.calls,
                 "flood": 0, "extra_aors": args.extra_aors, "freeze": args.freeze,
                 "peer_down": args.peer_down, "frozen_peer": args.frozen_peer,
                 "t": time.strftime("%H:%M:%S")}
    try:
        for inst in nodes.values():
            inst.start()
        wait_qualified(nodes, timeout=15)
        names = list(nodes)
        for k in range(args.calls):
            src = nodes[names[k % 3]]
            dst = names[(k + 1) % 3]
            src.cli(f"channel originate PJSIP/2000@{dst} application Wait 1")
        time.sleep(args.settle)
        if args.freeze:
            # like test_silent_primary_is_abandoned_after_the_progress_timeout: sopB frozen
            # (still "up" for qualify until its timeout), a call towards it, then resumed and
            # the cluster torn down right away by the fixture
            b = nodes["sopB"]
            os.kill(b.pid, signal.SIGSTOP)       # our own Asterisk process
            try:
                nodes["sopA"].cli("channel originate PJSIP/2000@sopB application Wait 1")
                time.sleep(args.freeze)
            finally:
                os.kill(b.pid, signal.SIGCONT)
            time.sleep(args.after_freeze)
    except Exception as exc:  # noqa: BLE001
        rec["setup_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    flood = None
    if args.flood:
        flood = Flood(list(spec.sops.values()), args.flood, args.flood_kind)
        flood.start()
        time.sleep(args.flood_lead)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(args.burn)]
    if burners:
        time.sleep(0.3)
    t0 = time.monotonic()
    if args.frozen_peer:
        # sopA stops answering (SIGSTOP: socket still bound, so no ICMP error, like a node that
        # is itself in the middle of shutting down), then sopB and sopC are stopped while their
        # qualify OPTIONS to sopA may be outstanding; sopA is resumed and stopped afterwards
        a = nodes["sopA"]
        os.kill(a.pid, signal.SIGSTOP)           # our own Asterisk process
        try:
            time.sleep(args.frozen_peer)
            stop_all({k: v for k, v in nodes.items() if k != "sopA"}, args.stop)
        finally:
            os.kill(a.pid, signal.SIGCONT)
    if args.peer_down:
        # like a test that stopped one SOP and then let the fixture tear the rest down:
        # sopA is stopped first, the others notice it down via qualify, then they are stopped
        nodes["sopA"].stop()
        time.sleep(args.peer_down)
    stop_all(nodes, args.stop)
    for b in burners:              # exactly the processes started above
        b.kill()
        b.wait()
    rec["burn"] = args.burn
    rec["stop_s"] = round(time.monotonic() - t0, 2)
    if flood:
        flood.stop_evt.set()
        flood.join()
        rec["flood"] = args.flood
        rec["flood_sent"] = flood.sent
        rec["flood_kind"] = args.flood_kind
    rec["nodes"] = [inspect(inst) for inst in nodes.values()]
    rec["aborts"] = sum(n["crashed"] for n in rec["nodes"])
    rec["asserts"] = sum(any("Assert failed" in s for s in n["stdout_bad"] + n["log_bad"])
                         for n in rec["nodes"])
    for inst, n in zip(nodes.values(), rec["nodes"]):
        keep = n["crashed"] or n["stdout_bad"] or n["log_bad"] or args.keep
        if not keep:
            shutil.rmtree(inst.base, ignore_errors=True)
        else:
            for core in inst.base.glob("core*"):
                n.setdefault("cores", []).append(str(core))
                try:
                    bt = subprocess.run(["gdb", "-batch", "-ex", "bt 25", str(inst.binary), str(core)],
                                        capture_output=True, text=True, timeout=120).stdout
                    n["backtrace"] = [ln for ln in bt.splitlines() if ln.startswith("#")][:25]
                except (OSError, subprocess.TimeoutExpired) as exc:
                    n["backtrace"] = [f"gdb failed: {exc}"]
    return rec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=("A", "B"), required=True)
    ap.add_argument("--stop", choices=("simul", "simul-now", "seq"), default="simul")
    ap.add_argument("-n", "--iterations", type=int, default=40)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between calls and stop")
    ap.add_argument("--base-octet", type=int, default=221)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--flood", type=int, default=0,
                    help="stray OPTIONS 200 OKs per second to the nodes while they stop (0 = off)")
    ap.add_argument("--extra-aors", type=int, default=0,
                    help="extra qualified AORs per peer node on every node (0 = as cluster.py)")
    ap.add_argument("--burn", type=int, default=0,
                    help="CPU-burning processes running while the nodes stop (loaded CI box)")
    ap.add_argument("--freeze", type=float, default=0,
                    help="SIGSTOP sopB this long (with a call to it from sopA), SIGCONT, then stop")
    ap.add_argument("--after-freeze", type=float, default=0.2,
                    help="seconds between SIGCONT and the stop")
    ap.add_argument("--frozen-peer", type=float, default=0,
                    help="SIGSTOP sopA, wait this long, stop sopB/sopC, then SIGCONT and stop sopA")
    ap.add_argument("--peer-down", type=float, default=0,
                    help="stop sopA first, wait this long (qualify notices it down), then stop the rest")
    ap.add_argument("--flood-kind", choices=("resp", "req"), default="resp")
    ap.add_argument("--flood-lead", type=float, default=0.3, help="flood this long before stopping")
    ap.add_argument("--cores", action="store_true", help="raise RLIMIT_CORE for the nodes")
    ap.add_argument("--out", default=str(HERE / "results.jsonl"))
    args = ap.parse_args()
    if args.cores:
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    os.chdir(HERE)
    total = 0
    for i in range(args.iterations):
        rec = iteration(i, args)
        total += rec["aborts"]
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        flag = ""
        if rec["aborts"] or rec["asserts"] or rec.get("setup_error"):
            flag = " <-- " + json.dumps([(n["node"], n["rc"], n["stdout_bad"][:3], n["log_bad"][:2])
                                         for n in rec["nodes"] if n["crashed"] or n["stdout_bad"]
                                         or n["log_bad"]]) + " " + rec.get("setup_error", "")
        print(f"[{rec['t']}] {args.variant}/{args.stop}/flood={args.flood}{args.flood_kind}/x={args.extra_aors}/burn={args.burn}/freeze={args.freeze:g}/peerdown={args.peer_down:g}/frozen={args.frozen_peer:g} iter {i}: rcs="
              f"{[n['rc'] for n in rec['nodes']]} stop={rec['stop_s']}s{flag}", flush=True)
    print(f"DONE {args.variant}/{args.stop}/flood={args.flood}{args.flood_kind}/x={args.extra_aors}/burn={args.burn}/freeze={args.freeze:g}/peerdown={args.peer_down:g}/frozen={args.frozen_peer:g}: {total} aborts in {args.iterations} iterations", flush=True)


if __name__ == "__main__":
    main()
