#!/usr/bin/env python3
"""Deterministic version of the race: make res_pjsip's unload slow on purpose and see whether
Asterisk WITHOUT pbx_python then aborts with the same signature.

The 05:47 abort was preceded by "Cleanup incomplete. Could not stop 1 AORs", i.e. res_pjsip's
unload_pjsip() sat in ast_res_pjsip_cleanup_options_handling() for its 10 s join timeout while
SIP traffic kept arriving. Here gdb stops sopA at ast_res_pjsip_cleanup_options_handling and
makes that thread call usleep(STALL) (the other threads keep running during the inferior call),
while sopB/sopC keep qualifying sopA, then lets the unload continue.

Usage: .venv/bin/python bench/abort_probe/gdb_probe.py --variant A -n 5 [--stall-us 2000000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import probe  # noqa: E402  (also puts the pbx_python snapshot on sys.path)

GDB_SCRIPT = """\
set pagination off
set confirm off
handle SIGPIPE SIGURG SIGHUP SIGUSR1 SIGUSR2 SIGWINCH SIGCHLD nostop noprint pass
break ast_res_pjsip_cleanup_options_handling
commands
silent
printf "GDB: stalling unload_pjsip for {stall} us\\n"
call (int)usleep({stall})
printf "GDB: resuming unload_pjsip\\n"
continue
end
continue
"""


def one(i: int, args: argparse.Namespace) -> dict:
    spec = probe.ClusterSpec(sops=probe.hosts_for(args.base_octet), qualify_frequency=1,
                             qualify_timeout=0.5, python=str(probe.ROOT / ".venv" / "bin" / "python"))
    nodes = probe.make_nodes(args.variant, spec, args.extra_aors)
    rec: dict = {"iter": i, "variant": args.variant, "stall_us": args.stall_us, "now": args.now,
                 "extra_aors": args.extra_aors, "flood": args.flood, "t": time.strftime("%H:%M:%S")}
    flood = None
    try:
        for inst in nodes.values():
            inst.start()
        probe.wait_qualified(nodes, timeout=15)
        a = nodes["sopA"]
        script = a.base / "gdb.cmd"
        script.write_text(GDB_SCRIPT.format(stall=args.stall_us))
        gdb_out = open(a.base / "gdb.out", "wb")
        gdb = subprocess.Popen(["gdb", "-q", "-batch", "-x", str(script), "-p", str(a.pid)],
                               stdout=gdb_out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        time.sleep(3)                         # gdb attached and continued
        if args.flood:
            flood = probe.Flood(list(spec.sops.values()), args.flood, "req")
            flood.start()
        # the fixture's order: sopA first (gracefully, then now), while sopB/sopC still qualify it
        if args.now:                          # `core stop now`: no module unloading at all
            try:
                a._rx("core stop now", timeout=5)
            except subprocess.TimeoutExpired:
                pass
        a.stop(timeout=30)
        if flood:
            flood.stop_evt.set()
            flood.join()
        gdb.wait(timeout=60)
        gdb_out.close()
        for inst in (nodes["sopB"], nodes["sopC"]):
            inst.stop()
    except Exception as exc:  # noqa: BLE001
        rec["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        if flood:
            flood.stop_evt.set()
        for inst in nodes.values():
            inst.stop()
    rec["nodes"] = [probe.inspect(inst) for inst in nodes.values()]
    g = nodes["sopA"].base / "gdb.out"
    gtxt = g.read_text(errors="replace") if g.exists() else ""
    rec["gdb_stalled"] = "GDB: stalling" in gtxt
    rec["gdb_tail"] = [ln for ln in gtxt.splitlines() if "GDB:" in ln or "signal" in ln
                       or "exited" in ln][-6:]
    # under gdb the abort shows up as gdb reporting SIGABRT, not as the exit status
    rec["sopA_abort"] = "SIGABRT" in gtxt or any(n["crashed"] for n in rec["nodes"][:1])
    a_out = nodes["sopA"].stdout_path.read_text(errors="replace")
    rec["sopA_bad"] = [ln.strip() for ln in a_out.splitlines()
                       if probe.BAD.search(ln) or "Cleanup incomplete" in ln][:8]
    keep = rec["sopA_abort"] or rec["sopA_bad"] or any(n["crashed"] for n in rec["nodes"])
    for inst in nodes.values():
        if not keep:
            import shutil
            shutil.rmtree(inst.base, ignore_errors=True)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=("A", "B"), required=True)
    ap.add_argument("-n", "--iterations", type=int, default=5)
    ap.add_argument("--stall-us", type=int, default=2_000_000)
    ap.add_argument("--extra-aors", type=int, default=0)
    ap.add_argument("--flood", type=int, default=0)
    ap.add_argument("--now", action="store_true", help="stop sopA with `core stop now`")
    ap.add_argument("--base-octet", type=int, default=221)
    ap.add_argument("--out", default=str(HERE / "gdb_results.jsonl"))
    args = ap.parse_args()
    for i in range(args.iterations):
        rec = one(i, args)
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"[{rec['t']}] gdb {args.variant} now={args.now} stall={args.stall_us}us x={args.extra_aors} "
              f"flood={args.flood} iter {i}: abort={rec['sopA_abort']} stalled={rec['gdb_stalled']} "
              f"rcs={[n['rc'] for n in rec['nodes']]} bad={rec['sopA_bad']} gdb={rec['gdb_tail']} "
              f"{rec.get('error', '')}", flush=True)


if __name__ == "__main__":
    main()
