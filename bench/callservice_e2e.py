"""3. CallService end to end: SIPp -> sopA -> (PJSIP trunk) -> sopB, four implementations.

Two Asterisk SOPs with qualified PJSIP trunks (pbx_python.testing.cluster configuration; CDR, CEL
and AMI off, verbose 0) and one SIPp UAC calling sopA. The same routing with four call
parameters, done four ways:
  callservice  sopA: CallService(2000,sopB,,alpha,beta,gamma,delta)
               sopB: reads the parameters with INITSERVICE(1..4)
  native       sopA: DEVICE_STATE check, Dial(PJSIP/2001@sopB,^2,b(pre-dial handler)) where the
                     handler adds the same five headers (a route header and the four parameters,
                     base64-encoded with BASE64_ENCODE) with PJSIP_HEADER(add,...)
               sopB: PJSIP_HEADER(read,...) + BASE64_DECODE for the four parameters
  fastagi      sopA: AGI(agi://.../callservice,...) on a panoramisk FastAGI server: one GET FULL
                     VARIABLE for the device state, SET VARIABLE x4, EXEC Dial with a pre-dial
                     handler adding the headers, GET VARIABLE DIALSTATUS, SET VARIABLE x3
               sopB: AGI(agi://.../initservice): one GET FULL VARIABLE, SET VARIABLE x4
  ari          sopA: Stasis(callservice,route,...) on an ARI application (bench/ari_app.py, aiohttp,
                     its own process like the FastAGI server): one GET of the device state, the
                     outgoing channel created with the same five headers as PJSIP_HEADER(add,...)
                     variables, a mixing bridge, dial, answer the caller on the Dial event ANSWER,
                     then one POST of CS_STATUS/CS_SOP/CS_TRIED and continue
               sopB: Stasis(callservice,init): one GET of the four headers, one POST of CS_P1..CS_P4
sopB then answers (Answer(,i)), waits 0.1 s and hangs up.
Fixed rate: each repetition is one SIPp run at the same call rate; p50/p99 per run, and the CPU
time (user + system, /proc/<pid>/stat, 10 ms ticks) that sopA, sopB and the implementation's own
server process (FastAGI, ARI) used from the run's start until both SOPs had no channel left, per call.
Setup times come from SIPp's -trace_msg timestamps (microseconds): first INVITE sent -> 200 OK
received, per Call-ID.
Rate search: steps of increasing call rate (each a SIPp run of step_seconds), the implementations
interleaved at each step; the highest clean rate is the last step with < 0.1 % failed calls, where a call failed if it got no 200 OK or got
it after more than 500 ms (SIP T1: the caller would start retransmitting the INVITE).
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from common import (ARI_PORT, CALLER_HOST, AriApp, Cluster, FastAgiServer, Mode, ari_configs, log, percentile,
                    pick_host, proc_cpu_seconds, release_host, stats, wait_no_channels)

IMPLS = ("callservice", "native", "fastagi", "ari")
SERVICE = {"callservice": "cs", "native": "native", "fastagi": "agi", "ari": "ari"}
PARAMS = ("alpha", "beta", "gamma", "delta")


def extensions(node: str, agi_a: str, agi_b: str, progress: float = 2.0) -> str:
    p = ",".join(PARAMS)
    return f"""\
[general]
static = yes
writeprotect = yes

[phones]
exten => cs,1,CallService(2000,sopB,,{p})
 same => n,Hangup()
exten => native,1,GotoIf($["${{DEVICE_STATE(PJSIP/sopB)}}" = "UNAVAILABLE"]?down)
 same => n,Dial(PJSIP/2001@sopB,^{progress:g},b(cs-predial-native^s^1(2001,{p})))
 same => n,Hangup()
 same => n(down),Hangup(34)
exten => agi,1,AGI({agi_a},2002,sopB,,{p},{progress:g})
 same => n,Hangup()
exten => ari,1,Stasis(callservice,route,2003,sopB,,{p})
 same => n,Hangup()

[cs-predial-native]
exten => s,1,Set(PJSIP_HEADER(add,X-CS)=v=1\\;o=sopA\\;path=sopA\\;h=1\\;e=${{ARG1}}\\;p=1234)
 same => n,Set(PJSIP_HEADER(add,X-CS-P1)=${{BASE64_ENCODE(${{ARG2}})}})
 same => n,Set(PJSIP_HEADER(add,X-CS-P2)=${{BASE64_ENCODE(${{ARG3}})}})
 same => n,Set(PJSIP_HEADER(add,X-CS-P3)=${{BASE64_ENCODE(${{ARG4}})}})
 same => n,Set(PJSIP_HEADER(add,X-CS-P4)=${{BASE64_ENCODE(${{ARG5}})}})
 same => n,Return()

[cs-predial-agi]
exten => s,1,Set(PJSIP_HEADER(add,X-CS)=v=1\\;o=sopA\\;path=sopA\\;h=1\\;e=2002\\;p=1234)
 same => n,Set(PJSIP_HEADER(add,X-CS-P1)=${{CS_H1}})
 same => n,Set(PJSIP_HEADER(add,X-CS-P2)=${{CS_H2}})
 same => n,Set(PJSIP_HEADER(add,X-CS-P3)=${{CS_H3}})
 same => n,Set(PJSIP_HEADER(add,X-CS-P4)=${{CS_H4}})
 same => n,Return()

[callservice-in]
exten => 2000,1,Set(P=${{INITSERVICE(1)}}|${{INITSERVICE(2)}}|${{INITSERVICE(3)}}|${{INITSERVICE(4)}})
 same => n,Goto(answer,1)
exten => 2001,1,Set(P=${{BASE64_DECODE(${{PJSIP_HEADER(read,X-CS-P1)}})}}|${{BASE64_DECODE(${{PJSIP_HEADER(read,X-CS-P2)}})}}|${{BASE64_DECODE(${{PJSIP_HEADER(read,X-CS-P3)}})}}|${{BASE64_DECODE(${{PJSIP_HEADER(read,X-CS-P4)}})}})
 same => n,Goto(answer,1)
exten => 2002,1,AGI({agi_b})
 same => n,Set(P=${{CS_P1}}|${{CS_P2}}|${{CS_P3}}|${{CS_P4}})
 same => n,Goto(answer,1)
exten => 2003,1,Stasis(callservice,init)
 same => n,Set(P=${{CS_P1}}|${{CS_P2}}|${{CS_P3}}|${{CS_P4}})
 same => n,Goto(answer,1)
exten => answer,1,GotoIf($["${{P}}" != "{"|".join(PARAMS)}"]?badparams)
 same => n,Answer(,i)
 same => n,Wait(0.1)
 same => n,Hangup()
 same => n(badparams),Verbose(0,BENCH badparams ${{EXTEN}} [${{P}}])
 same => n,Hangup(21)
"""


SLOW_MS = 500.0   # SIP T1: a caller without a final answer by then starts retransmitting INVITE

_BLOCK_RE = re.compile(r"^-{20,} (\S+ \S+)\n(UDP message (sent|received)).*?\n\n(.*?)(?=^-{20,} |\Z)",
                       re.MULTILINE | re.DOTALL)


def setup_times(messages: str) -> tuple[dict[str, float], dict[str, int]]:
    """Per Call-ID: ms from our first INVITE to the first 200 for it (SIPp -trace_msg timestamps,
    microsecond resolution), and the final status of each INVITE."""
    from datetime import datetime
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    final: dict[str, int] = {}
    for m in _BLOCK_RE.finditer(messages):
        stamp, direction, body = m.group(1), m.group(3), m.group(4)
        first = body.split("\n", 1)[0]
        cid = re.search(r"^Call-ID:\s*(\S+)", body, re.MULTILINE | re.IGNORECASE)
        cseq = re.search(r"^CSeq:\s*\d+\s+(\w+)", body, re.MULTILINE | re.IGNORECASE)
        if not cid or not cseq or cseq.group(1).upper() != "INVITE":
            continue
        call = cid.group(1)
        t = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if direction == "sent" and first.startswith("INVITE") and call not in sent:
            sent[call] = t
        elif direction == "received" and first.startswith("SIP/2.0 "):
            code = int(first.split()[1])
            if code >= 200 and call not in final:
                final[call] = code
                if code == 200:
                    done[call] = t
    return {c: (done[c] - sent[c]) * 1e3 for c in done if c in sent}, final


def sipp_run(sipp: Any, a_host: str, impl: str, calls: int, rate: float, service: str | None = None,
             concurrent: int | None = None) -> dict[str, Any]:
    t0 = time.monotonic()
    res = sipp.run_uac(a_host, local_host=CALLER_HOST, service=service or SERVICE[impl], calls=calls,
                       rate=rate, duration_ms=3000, timeout=max(30, calls / rate + 20),
                       concurrent=concurrent, extra_args=["-max_socket", "4096"])
    elapsed = time.monotonic() - t0
    times, final = setup_times(res.messages)
    lat = sorted(times.values())
    slow = sum(1 for v in lat if v > SLOW_MS)
    answered = len(lat)
    failed = (calls - answered) + slow
    if res.workdir:
        shutil.rmtree(res.workdir, ignore_errors=True)
    return {"impl": impl, "rate": rate, "calls": calls, "answered": answered, "slow": slow,
            "sipp_successful": res.successful, "sipp_failed": res.failed, "failed": failed,
            "fail_pct": 100.0 * failed / calls, "elapsed_s": elapsed, "returncode": res.returncode,
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
            "max_ms": lat[-1] if lat else None, "mean_ms": sum(lat) / len(lat) if lat else None,
            "setup_ms": lat,
            "other_finals": sorted({c for c in final.values() if c != 200})}


def settle(cl: Cluster) -> None:
    for n in ("sopA", "sopB"):
        wait_no_channels(cl[n], 60)


def run(mode: Mode) -> dict[str, Any]:
    from pbx_python.testing import Sipp
    fixed_rate = 20 if mode.quick else 30
    fixed_calls = 40 if mode.quick else 150
    rates = [50, 100, 150] if mode.quick else [50, 75, 100, 125, 150, 175, 200, 250, 300, 350, 400]
    step_s = 3 if mode.quick else 5
    agi_host = pick_host(udp_ports=(), tcp_ports=())
    agi = FastAgiServer(agi_host)
    sipp = Sipp()
    hosts = {n: pick_host(tcp_ports=(5038, ARI_PORT)) for n in ("sopA", "sopB")}
    ari: AriApp | None = None
    out: dict[str, Any] = {"method": __doc__.strip(), "fixed_rate_cps": fixed_rate,
                           "fixed_calls": fixed_calls, "rates": rates, "step_seconds": step_s}
    try:
        with Cluster(["sopA", "sopB"], lambda n: extensions(n, agi.url("callservice"), agi.url("initservice")),
                     hosts=hosts, extra_configs=lambda n: ari_configs(hosts[n])) as cl:
            a = cl["sopA"]
            ari = AriApp(hosts)
            # warm-up: one call per implementation (first Python imports, first AGI connect,
            # the ARI application's first HTTP connections)
            for impl in IMPLS:
                r = sipp_run(sipp, cl.hosts["sopA"], impl, 3, 3)
                if r["answered"] != 3:
                    raise RuntimeError(f"warm-up calls through {impl} failed: {r}; sopA log tail:\n"
                                       f"{a.log_text()[-3000:]}"
                                       + (f"\nARI application log:\n{ari.log_text()[-2000:]}" if impl == "ari" else ""))
            settle(cl)
            fixed: dict[str, list[dict[str, Any]]] = {i: [] for i in IMPLS}
            procs = {"sopA": a.proc.pid, "sopB": cl["sopB"].proc.pid, "fastagi": agi.proc.pid, "ari": ari.proc.pid}
            for rep in range(mode.reps):
                for impl in IMPLS:
                    c0 = {k: proc_cpu_seconds(p) for k, p in procs.items()}
                    r = sipp_run(sipp, cl.hosts["sopA"], impl, fixed_calls, fixed_rate)
                    settle(cl)
                    r["cpu_ms_per_call"] = {k: (proc_cpu_seconds(p) - c0[k]) * 1e3 / fixed_calls
                                            for k, p in procs.items() if k in ("sopA", "sopB", impl)}
                    fixed[impl].append(r)
                log(f"e2e fixed rep {rep + 1}/{mode.reps}: " + ", ".join(
                    f"{i} p50={fixed[i][-1]['p50_ms']} p99={fixed[i][-1]['p99_ms']} fail={fixed[i][-1]['failed']}"
                    for i in IMPLS))
            out["fixed"] = {i: {"p50_ms": stats([r["p50_ms"] for r in rows if r["p50_ms"] is not None]),
                                "p99_ms": stats([r["p99_ms"] for r in rows if r["p99_ms"] is not None]),
                                "cpu_ms_per_call": {k: stats([r["cpu_ms_per_call"][k] for r in rows])
                                                    for k in rows[0]["cpu_ms_per_call"]},
                                "failed_calls": sum(r["failed"] for r in rows),
                                "calls": sum(r["calls"] for r in rows), "runs": rows}
                            for i, rows in fixed.items()}
            # Interleaved: at each rate every implementation still clean runs once, so the four
            # see the same machine conditions (a shared VM's load drifts over minutes).
            steps: dict[str, list[dict[str, Any]]] = {i: [] for i in IMPLS}
            best: dict[str, Any] = {i: None for i in IMPLS}
            alive = list(IMPLS)
            for rate in rates:
                for impl in list(alive):
                    calls = int(rate * step_s)
                    r = sipp_run(sipp, cl.hosts["sopA"], impl, calls, rate)
                    r.pop("setup_ms", None)
                    clean = r["fail_pct"] < 0.1
                    log(f"e2e rate {impl} @{rate}: answered={r['answered']}/{calls} slow={r['slow']} p50={r['p50_ms']} "
                        f"p99={r['p99_ms']} elapsed={r['elapsed_s']:.1f}s")
                    try:
                        settle(cl)
                    except TimeoutError:
                        clean = False
                    r["clean"] = clean
                    steps[impl].append(r)
                    if clean:
                        best[impl] = rate
                    else:
                        alive.remove(impl)
                if not alive:
                    break
            search = {impl: {"highest_clean_cps": best[impl], "steps": steps[impl],
                             "limit": "top of the tested rates" if best[impl] == rates[-1] else "failures"}
                      for impl in IMPLS}
            out["rate_search"] = search
            out["badparams"] = a.log_text().count("BENCH badparams") + cl["sopB"].log_text().count("BENCH badparams")
            out["ari_app_log"] = ari.log_text()[-2000:]
    finally:
        if ari is not None:
            ari.close()
        agi.close()
        release_host(agi_host)
        sipp.cleanup()
    return out


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(run(Mode(sys.argv[1] if len(sys.argv) > 1 else "quick", 5)), indent=1, default=str)[:6000])
