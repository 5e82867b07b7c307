"""5. Memory: Asterisk VmRSS with and without pbx_python, and across many CallService calls.

Boot RSS: the same configuration (CDR/CEL/AMI off) started without the module; with the module
autoloaded at boot, loading only px_bench (four tiny callables) or dialplan_funcs.callservice and
px_bench; and with the module loaded later by 'module load' (the same two Python setups). RSS is
read 0.7 s after boot (median of 3 reads 0.1 s apart), once per repetition, a fresh process each.

Growth: on sopA, 4 Local channels run CallService(2000,<sop>,,p1..p4) in dialplan loops; the
called service reads the four parameters with INITSERVICE, answers and hangs up. <sop> is sopA
itself (local delivery: a Local channel into the service context) -- the path the target is
judged on -- and, in full mode, also sopB over a PJSIP trunk. RSS and the Python object count are
sampled at checkpoints (1k ... 10k calls). A native control runs the same number of calls through
native dialplan (Dial with a pre-dial handler, the receiver reading the values back) on a fresh
instance, to show what Asterisk itself does to RSS over those calls. Over PJSIP, Asterisk's own
RSS grows by ~100-170 kB per call for tens of seconds (native dialplan too), which swamps anything
the module could do; that is why the local path is the yardstick.
"""
from __future__ import annotations

import re
import statistics
import time
from typing import Any

from common import (NO_AMI, Cluster, Instance, Mode, log, pbx_python_conf, stats, wait_bench_lines,
                    wait_no_channels)

CS_CONF = "\n[callservice]\nlocal_sop = sopA\nsops = sopA\nservice_context = callservice-in\n"
BOOT_EXT = "[general]\nstatic = yes\n\n[callservice-in]\nexten => 2000,1,Answer()\n same => n,Hangup()\n"
PY_MODULES = ("dialplan_funcs.callservice", "px_bench")


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def settled_rss(ast: Any, wait: float = 0.7) -> int:
    time.sleep(wait)
    samples = []
    for _ in range(3):
        samples.append(rss_kb(ast.pid))
        time.sleep(0.1)
    return int(statistics.median(samples))


def boot_rss(kind: str) -> int:
    extra = CS_CONF
    if kind == "without":
        inst = Instance("memno", BOOT_EXT, python=False, configs=NO_AMI)
    elif kind == "autoload":
        inst = Instance("memat", BOOT_EXT, configs=NO_AMI, pymodules=PY_MODULES, pyextra=extra)
    elif kind == "autoload_min":   # the module with one tiny Python module (px_bench) only
        inst = Instance("memam", BOOT_EXT, configs=NO_AMI, pymodules=("px_bench",))
    elif kind == "later_min":
        inst = Instance("memlm", BOOT_EXT, configs={**NO_AMI, "pbx_python.conf": pbx_python_conf(("px_bench",))},
                        noload=("pbx_lua.so", "pbx_python.so"))
    else:  # loaded later
        inst = Instance("memlt", BOOT_EXT, configs={**NO_AMI, "pbx_python.conf": pbx_python_conf(PY_MODULES, extra=extra)},
                        noload=("pbx_lua.so", "pbx_python.so"))
    try:
        ast = inst.ast
        if kind in ("later", "later_min"):
            settled_rss(ast, 1.0)
            out = ast.cli("module load pbx_python.so")
            if "Loaded" not in out:
                raise RuntimeError(f"module load pbx_python.so: {out!r}")
        return settled_rss(ast)
    finally:
        inst.close()


def growth_extensions(node: str, batch: int, local: bool) -> str:
    target = "sopA" if local else "sopB"
    p = "alpha,beta,gamma,delta"
    if local:   # native control: a Local channel whose pre-dial handler sets the variables
        native_dial = f"Local/2001@callservice-in/n,,gb(cs-predial-local^s^1({p}))"
    else:       # native control: the X-CS-* headers added by a pre-dial handler
        native_dial = f"PJSIP/2001@sopB,,gb(cs-predial-native^s^1({p}))"
    return f"""\
[general]
static = yes

[bench]
exten => csloop,1,Answer(,i)
 same => n,Set(I=0)
 same => n,While($[${{I}} < {batch}])
 same => n,CallService(2000,{target},,{p})
 same => n,GotoIf($["${{CALLSERVICE_STATUS}}" != "ANSWER"]?bad)
 same => n,Set(I=$[${{I}} + 1])
 same => n,EndWhile()
 same => n,Verbose(0,BENCH csloop ok ${{I}})
 same => n,Hangup()
 same => n(bad),Verbose(0,BENCH csloop bad ${{I}} ${{CALLSERVICE_STATUS}} ${{CALLSERVICE_TRIED}})
 same => n,Hangup()
exten => nativeloop,1,Answer(,i)
 same => n,Set(I=0)
 same => n,While($[${{I}} < {batch}])
 same => n,Dial({native_dial})
 same => n,GotoIf($["${{DIALSTATUS}}" != "ANSWER"]?bad)
 same => n,Set(I=$[${{I}} + 1])
 same => n,EndWhile()
 same => n,Verbose(0,BENCH nativeloop ok ${{I}})
 same => n,Hangup()
 same => n(bad),Verbose(0,BENCH nativeloop bad ${{I}} ${{DIALSTATUS}})
 same => n,Hangup()

[cs-predial-local]
exten => s,1,Set(CS_IN=local)
 same => n,Set(CS_P1=${{ARG1}})
 same => n,Set(CS_P2=${{ARG2}})
 same => n,Set(CS_P3=${{ARG3}})
 same => n,Set(CS_P4=${{ARG4}})
 same => n,Return()

[cs-predial-native]
exten => s,1,Set(PJSIP_HEADER(add,X-CS-V)=1)
 same => n,Set(PJSIP_HEADER(add,X-CS-Origin)=sopA)
 same => n,Set(PJSIP_HEADER(add,X-CS-P1)=${{BASE64_ENCODE(${{ARG1}})}})
 same => n,Set(PJSIP_HEADER(add,X-CS-P2)=${{BASE64_ENCODE(${{ARG2}})}})
 same => n,Set(PJSIP_HEADER(add,X-CS-P3)=${{BASE64_ENCODE(${{ARG3}})}})
 same => n,Set(PJSIP_HEADER(add,X-CS-P4)=${{BASE64_ENCODE(${{ARG4}})}})
 same => n,Return()

[callservice-in]
exten => 2000,1,Answer(,i)
 same => n,Set(P=${{INITSERVICE(1)}}${{INITSERVICE(2)}}${{INITSERVICE(3)}}${{INITSERVICE(4)}})
 same => n,Hangup()
exten => 2001,1,Answer(,i)
 same => n,Set(P={"${CS_P1}${CS_P2}${CS_P3}${CS_P4}" if local else "".join(f"${{BASE64_DECODE(${{PJSIP_HEADER(read,X-CS-P{i})}})}}" for i in range(1, 5))})
 same => n,Hangup()
"""


def py_objects(ast: Any) -> int | None:
    m = re.search(r"objects=(\d+)", ast.cli("bench python memory"))
    return int(m.group(1)) if m else None


def growth(mode: Mode, ext: str = "csloop", local: bool = True,
           checkpoints: list[int] | None = None) -> dict[str, Any]:
    """RSS at checkpoints over 10k calls of ``ext`` (csloop: CallService; nativeloop: native
    control), to the local SOP (Local channels) or to a remote SOP over PJSIP."""
    channels, batch = 4, 250            # 1000 calls per loop round
    # RSS is sampled at these call counts (quick: fewer samples, each costs ~1.5 s of settling)
    if checkpoints is None:
        checkpoints = [1000, 4000, 7000, 10000] if mode.quick or local else list(range(1000, 10001, 1000))
    names = ["sopA"] if local else ["sopA", "sopB"]
    with Cluster(names, lambda n: growth_extensions(n, batch, local), qualify=not local) as cl:
        a = cl["sopA"]
        samples = [{"calls": 0, "rss_kb": settled_rss(a, 0.5), "py_objects": py_objects(a), "t": 0.0}]
        t_start = time.monotonic()
        done, busy = 0, 0.0
        while done < checkpoints[-1]:
            t_round = time.monotonic()
            since = a.log_offset()
            for _ in range(channels):
                a.cli(f"channel originate Local/{ext}@bench application Wait 3600")
            lines = wait_bench_lines(a, ext, channels, since, timeout=120)
            bad = [ln for ln in lines if not ln.startswith("ok")]
            if bad:
                raise RuntimeError(f"{ext}: calls failed during the memory run: {bad[:3]}")
            wait_no_channels(a, 60)
            busy += time.monotonic() - t_round
            done += channels * batch
            if done in checkpoints:
                samples.append({"calls": done, "rss_kb": settled_rss(a, 0.5),
                                "py_objects": py_objects(a), "t": time.monotonic() - t_start})
        log(f"memory growth {ext}: " + ", ".join(f"{s['calls']}:{s['rss_kb']}" for s in samples))
        warnings = a.log_text().count(" WARNING[")
    by_calls = {s["calls"]: s for s in samples}
    if 1000 not in by_calls or 10000 not in by_calls:
        return {"samples": samples}
    return {"path": "local SOP (Local channel)" if local else "remote SOP over PJSIP",
            "samples": samples, "rss_1k_kb": by_calls[1000]["rss_kb"], "rss_10k_kb": by_calls[10000]["rss_kb"],
            "growth_1k_to_10k_kb": by_calls[10000]["rss_kb"] - by_calls[1000]["rss_kb"],
            "objects_1k": by_calls[1000]["py_objects"], "objects_10k": by_calls[10000]["py_objects"],
            "calls_per_s": checkpoints[-1] / busy if busy else None,
            "log_warnings": warnings}


def run(mode: Mode) -> dict[str, Any]:
    boot: dict[str, list[int]] = {"without": [], "autoload_min": [], "later_min": [], "autoload": [], "later": []}
    if mode.quick:        # quick: the CallService-loaded-later variant is left out
        del boot["later"]
    for rep in range(mode.reps):
        for kind in boot:
            boot[kind].append(boot_rss(kind))
        log(f"memory boot rep {rep + 1}/{mode.reps}: " + ", ".join(f"{k}={v[-1]}" for k, v in boot.items()))
    out: dict[str, Any] = {"method": __doc__.strip(),
                           "boot_rss_kb": {k: stats(v) for k, v in boot.items()}}
    out["added_autoload_kb"] = stats([a - b for a, b in zip(boot["autoload"], boot["without"])])
    out["added_later_kb"] = stats([a - b for a, b in zip(boot.get("later", []), boot["without"])])
    out["added_min_kb"] = stats([a - b for a, b in zip(boot["autoload_min"], boot["without"])])
    out["added_later_min_kb"] = stats([a - b for a, b in zip(boot["later_min"], boot["without"])])
    out["growth"] = growth(mode, "csloop", local=True)
    out["growth_native"] = growth(mode, "nativeloop", local=True)
    if not mode.quick:   # the same over PJSIP (two SOPs): Asterisk's own SIP-path RSS dominates there
        out["growth_sip"] = growth(mode, "csloop", local=False)
        out["growth_sip_native"] = growth(mode, "nativeloop", local=False)
    return out


if __name__ == "__main__":
    # python bench/memory.py --long: RSS every 5k calls up to 40k, CallService then the native
    # control, local SOP (not part of make bench: about 4 minutes). Tells a leak (RSS keeps
    # growing) from the allocator settling (RSS levels off).
    import json
    import sys
    if "--long" in sys.argv[1:]:
        marks = list(range(5000, 40001, 5000))
        for name in ("csloop", "nativeloop"):
            rows = growth(Mode("full", 5), name, local=True, checkpoints=marks)["samples"]
            print(name, json.dumps([(r["calls"], r["rss_kb"], r["py_objects"]) for r in rows]), flush=True)
    else:
        print(json.dumps(run(Mode("quick", 5)), indent=1))
