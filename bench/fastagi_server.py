"""FastAGI server for the benchmarks, on panoramisk (a real FastAGI server library).

Run: python bench/fastagi_server.py HOST PORT   (prints "READY" when listening)

Routes (agi://HOST:PORT/<route>,args...):
  noop          connect, read the AGI environment, close (no command)
  set           one SET VARIABLE AGIX "hello"            (the work of PySet / Set)
  callservice   CallService routing done over FastAGI (bench/callservice_e2e.py, bench/failover.py):
                args: exten, sop1, sop2, p1..p4. Reads DEVICE_STATE of the remote SOPs, sets the
                header values for the pre-dial handler, EXEC Dial per SOP, fails over on node
                failures, sets CS_STATUS / CS_SOP.
  initservice   reads the four X-CS-P* headers in one GET FULL VARIABLE, sets CS_P1..CS_P4
"""
from __future__ import annotations

import asyncio
import base64
import logging
import sys

from panoramisk import fast_agi

# Node failures that move on to the next SOP (the same rule CallService applies, simplified):
FAILOVER_STATUSES = {"CHANUNAVAIL", "CONGESTION"}


def _arg(request: fast_agi.Request, i: int) -> str:
    return request.headers.get(f"agi_arg_{i}", "")


async def noop(request: fast_agi.Request) -> None:
    return None


async def setvar(request: fast_agi.Request) -> None:
    await request.send_command('SET VARIABLE AGIX "hello"')


def _value(result: dict) -> str:
    # panoramisk parses '200 result=1 (value)' into {'result': ('1', 'value'), ...}
    res = result.get("result")
    if isinstance(res, tuple) and len(res) > 1:
        return res[1]
    return ""


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def callservice(request: fast_agi.Request) -> None:
    exten, sop1, sop2 = _arg(request, 1), _arg(request, 2), _arg(request, 3)
    params = [_arg(request, i) for i in range(4, 8)]
    progress = _arg(request, 8) or "2"
    sops = [s for s in (sop1, sop2) if s]
    # one command reads the reachability of every SOP (qualify -> device state)
    reads = "\x1f".join(f"${{DEVICE_STATE(PJSIP/{s})}}" for s in sops)
    states = _value(await request.send_command(f'GET FULL VARIABLE "{reads}"')).split("\x1f")
    # header values for the pre-dial handler (cs-predial-agi adds them with PJSIP_HEADER);
    # the leading '_' makes Dial's outgoing channel inherit them
    for i, p in enumerate(params, 1):
        await request.send_command(f'SET VARIABLE _CS_H{i} "{_b64(p)}"')
    status, chosen, tried = "UNAVAILABLE", "", []
    for sop, state in zip(sops, states + [""] * len(sops)):
        if state == "UNAVAILABLE":
            tried.append(f"{sop}:KNOWN_DOWN")
            continue
        await request.send_command(
            f"EXEC Dial PJSIP/{exten}@{sop},^{progress},b(cs-predial-agi^s^1)")
        dialstatus = _value(await request.send_command("GET VARIABLE DIALSTATUS"))
        tried.append(f"{sop}:{dialstatus}")
        if dialstatus in FAILOVER_STATUSES or dialstatus == "":
            continue
        status, chosen = dialstatus, sop
        break
    await request.send_command(f'SET VARIABLE CS_STATUS "{status}"')
    await request.send_command(f'SET VARIABLE CS_SOP "{chosen}"')
    await request.send_command(f'SET VARIABLE CS_TRIED "{",".join(tried)}"')


async def initservice(request: fast_agi.Request) -> None:
    got = _value(await request.send_command(
        'GET FULL VARIABLE "' + "\x1f".join(f"${{PJSIP_HEADER(read,X-CS-P{i})}}" for i in range(1, 5)) + '"'
    )).split("\x1f")
    for i, v in enumerate(got[:4], 1):
        try:
            text = base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)).decode()
        except Exception:  # noqa: BLE001
            text = ""
        await request.send_command(f'SET VARIABLE CS_P{i} "{text}"')


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    logging.basicConfig(level=logging.WARNING)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = fast_agi.Application(loop=loop)
    app.add_route("noop", noop)
    app.add_route("set", setvar)
    app.add_route("callservice", callservice)
    app.add_route("initservice", initservice)
    server = loop.run_until_complete(asyncio.start_server(app.handler, host, port, backlog=512))
    print("READY", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
