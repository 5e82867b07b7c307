"""4. Failover cost: CallService with a primary that cannot take the call, vs the secondary directly.

Four Asterisk SOPs (CDR, CEL and AMI off, verbose 0); SIPp calls sopA, whose dialplan runs
  direct      CallService(2000,sopC,,p1..p4)        -- the secondary called directly
  knowndown   CallService(2000,sopB,sopC,p1..p4)    -- sopB is stopped and qualify has marked it
                                                        unavailable: no INVITE is sent to it
  silent      CallService(2000,sopD,sopC,p1..p4)    -- sopD is frozen with SIGSTOP and its trunk is
                                                        not qualified, so sopA sends the INVITE and
                                                        gets nothing back until the progress timeout
sopC reads the parameters (INITSERVICE), answers, waits 0.1 s and hangs up.
Setup time per call = SIPp INVITE sent -> 200 OK received (-trace_msg timestamps); calls are
placed one at a time. Per repetition: the median setup time of each scenario; added cost =
scenario - direct within the same repetition.
"""
from __future__ import annotations

import os
import signal
import statistics
import time
from typing import Any

from callservice_e2e import sipp_run
from common import Cluster, Mode, log, stats, wait_no_channels

PROGRESS_TIMEOUT = 1.0
SCENARIOS = {"direct": "direct", "knowndown": "knowndown", "silent": "silent"}


def extensions(node: str) -> str:
    p = "alpha,beta,gamma,delta"
    return f"""\
[general]
static = yes

[phones]
exten => direct,1,CallService(2000,sopC,,{p})
 same => n,Hangup()
exten => knowndown,1,CallService(2000,sopB,sopC,{p})
 same => n,Hangup()
exten => silent,1,CallService(2000,sopD,sopC,{p})
 same => n,Hangup()

[callservice-in]
exten => 2000,1,Set(P=${{INITSERVICE(1)}}|${{INITSERVICE(2)}}|${{INITSERVICE(3)}}|${{INITSERVICE(4)}})
 same => n,Answer(,i)
 same => n,Wait(0.1)
 same => n,Hangup()
"""


def device_state(ast: Any, sop: str) -> str | None:
    return ast.eval_function(f"DEVICE_STATE(PJSIP/{sop})")


def wait_state(ast: Any, sop: str, want_down: bool, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        st = device_state(ast, sop)
        if (st == "UNAVAILABLE") == want_down and st is not None:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sop} state on sopA is {st} after {timeout}s")
        time.sleep(0.1)


def run(mode: Mode) -> dict[str, Any]:
    from pbx_python.testing import Sipp
    calls = 3 if mode.quick else 7
    sipp = Sipp()
    raw: dict[str, list[dict[str, Any]]] = {s: [] for s in SCENARIOS}
    frozen = None
    try:
        with Cluster(["sopA", "sopB", "sopC", "sopD"], extensions, qualify=False,
                     unqualified=frozenset({"sopD"}), progress_timeout=PROGRESS_TIMEOUT) as cl:
            a = cl["sopA"]
            wait_state(a, "sopC", want_down=False)
            wait_state(a, "sopB", want_down=False)
            cl.nodes["sopB"].ast.stop()            # known down once qualify notices
            wait_state(a, "sopB", want_down=True)
            frozen = cl["sopD"].pid
            os.kill(frozen, signal.SIGSTOP)
            warm = sipp_run(sipp, cl.hosts["sopA"], "direct", 2, 2, service="direct", concurrent=1)
            if warm["answered"] != 2:
                raise RuntimeError(f"warm-up calls failed: {warm}")
            for rep in range(mode.reps):
                for scen in SCENARIOS:
                    r = sipp_run(sipp, cl.hosts["sopA"], scen, calls, 2, service=scen, concurrent=1)
                    raw[scen].append(r)
                    wait_no_channels(a, 30)
                log("failover rep %d/%d: " % (rep + 1, mode.reps) + ", ".join(
                    f"{s}={statistics.median(raw[s][-1]['setup_ms']) if raw[s][-1]['setup_ms'] else None}ms"
                    f" ({raw[s][-1]['answered']}/{calls})" for s in SCENARIOS))
            if frozen is not None:
                os.kill(frozen, signal.SIGCONT)
                frozen = None
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        sipp.cleanup()
    med = {s: [statistics.median(r["setup_ms"]) if r["setup_ms"] else None for r in rows] for s, rows in raw.items()}
    out: dict[str, Any] = {"method": __doc__.strip(), "progress_timeout_s": PROGRESS_TIMEOUT,
                           "calls_per_rep": calls, "scenarios": {}}
    for s in SCENARIOS:
        rows = raw[s]
        out["scenarios"][s] = {
            "setup_ms": stats([v for v in med[s] if v is not None]),
            "answered": sum(r["answered"] for r in rows), "calls": sum(r["calls"] for r in rows),
            "all_setup_ms": [v for r in rows for v in r["setup_ms"]],
        }
        if s != "direct":
            out["scenarios"][s]["added_ms"] = stats([x - d for x, d in zip(med[s], med["direct"])
                                                     if x is not None and d is not None])
    return out


if __name__ == "__main__":
    import json
    r = run(Mode("quick", 5))
    print(json.dumps({s: (v["setup_ms"]["median"], v.get("added_ms", {}).get("median"), v["answered"], v["calls"])
                      for s, v in r["scenarios"].items()}, indent=1))
