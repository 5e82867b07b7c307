#!/usr/bin/env python3
"""No gdb: sopA is frozen (SIGSTOP) for --freeze s, resumed and immediately `core stop now`;
then sopB and sopC are stopped gracefully one after the other (the pytest fixture's way).
This mimics what gdb_probe.py's control runs did to the peers (gdb attach pauses sopA).
Records go to natural_results.jsonl.
Usage: .venv/bin/python bench/abort_probe/natural_probe.py --variant A -n 6 [--freeze 2]"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import probe  # noqa: E402


def one(i, args):
    spec = probe.ClusterSpec(sops=probe.hosts_for(args.base_octet), qualify_frequency=1,
                             qualify_timeout=0.5, python=str(probe.ROOT / ".venv" / "bin" / "python"))
    nodes = probe.make_nodes(args.variant, spec)
    rec = {"iter": i, "variant": args.variant, "freeze": args.freeze, "t": time.strftime("%H:%M:%S")}
    try:
        for inst in nodes.values():
            inst.start()
        probe.wait_qualified(nodes, timeout=15)
        a = nodes["sopA"]
        os.kill(a.pid, signal.SIGSTOP)
        time.sleep(args.freeze)
        os.kill(a.pid, signal.SIGCONT)
        try:
            a._rx("core stop now", timeout=5)
        except subprocess.TimeoutExpired:
            pass
        a.stop()
        time.sleep(args.gap)
        for n in ("sopB", "sopC"):
            nodes[n].stop(timeout=30)
    except Exception as exc:  # noqa: BLE001
        rec["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        for inst in nodes.values():
            inst.stop()
    rec["nodes"] = [probe.inspect(inst) for inst in nodes.values()]
    for inst, n in zip(nodes.values(), rec["nodes"]):
        if not (n["crashed"] or n["stdout_bad"] or n["log_bad"]):
            shutil.rmtree(inst.base, ignore_errors=True)
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=("A", "B"), required=True)
    ap.add_argument("-n", "--iterations", type=int, default=6)
    ap.add_argument("--freeze", type=float, default=2.0)
    ap.add_argument("--gap", type=float, default=0.0, help="seconds between sopA's exit and sopB's stop")
    ap.add_argument("--base-octet", type=int, default=221)
    args = ap.parse_args()
    for i in range(args.iterations):
        rec = one(i, args)
        with open(HERE / "natural_results.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"[{rec['t']}] natural {args.variant} freeze={args.freeze} iter {i}: rcs="
              f"{[n['rc'] for n in rec['nodes']]} "
              f"{[(n['node'], n['stdout_bad'][:2], [x[-70:] for x in n['log_bad'][:2]]) for n in rec['nodes'] if n['log_bad'] or n['stdout_bad']]}"
              f" {rec.get('error', '')}", flush=True)


if __name__ == "__main__":
    main()
