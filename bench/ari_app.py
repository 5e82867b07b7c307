"""ARI (Stasis) version of the CallService routing, for bench/callservice_e2e.py.

Run: python bench/ari_app.py USER:PASSWORD NAME=http://HOST:PORT [NAME=http://HOST:PORT ...]
(prints "READY" once the event websocket of every node is connected).

The out-of-process alternative an Asterisk user would pick today: an asyncio application on
aiohttp (HTTP keep-alive + websocket), one process for every node, like the FastAGI server.
Plain REST rather than a client library: asyncari 0.20.6 (PyPI) installs and connects to
Asterisk 22.10's ARI, but its swagger layer (httpx, anyio) would add its own cost per request, and
the comparison is of ARI, not of a client library; this file is what such a library does for the
few requests the routing needs.
Each node's channels enter the Stasis application ``callservice``:

  sopA  Stasis(callservice,route,EXTEN,SOP1,SOP2,P1,P2,P3,P4): one GET .../variables reads
        DEVICE_STATE of the SOPs; POST /channels/create makes the outgoing channel
        PJSIP/EXTEN@SOP with the five CallService headers as PJSIP_HEADER(add,...) variables
        (the parameters base64-encoded, as the native and FastAGI versions do) while
        POST /bridges makes a mixing bridge; once the new channel is in the application
        (StasisStart), POST .../dial while both channels join the bridge; on the Dial event
        ANSWER the caller is answered (the 200 OK SIPp times). Requests that do not depend on each
        other go out together, over keep-alive connections. When the outgoing channel
        leaves, one POST .../variables sets CS_STATUS / CS_SOP / CS_TRIED on the caller and
        POST .../continue hands it back to the dialplan. Node failures (CHANUNAVAIL,
        CONGESTION, a down device state) move on to the next SOP.
  sopB  Stasis(callservice,init): one GET .../variables reads the four X-CS-P* headers, one
        POST .../variables sets CS_P1..CS_P4, POST .../continue.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
import uuid
from typing import Any, Optional

import aiohttp

APP = "callservice"
POOL = 64        # HTTP connections per node (common.ari_configs allows 256 sessions)
FAILOVER_STATUSES = {"CHANUNAVAIL", "CONGESTION"}
FINAL_DIALSTATUS = {"ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL", "DONTCALL",
                    "TORTURE", "INVALIDARGS"}
log = logging.getLogger("ari_app")


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def unb64(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except Exception:  # noqa: BLE001 - a bad header is an empty parameter, as in fastagi_server.py
        return ""


def route_headers(exten: str, params: list[str], origin: str = "sopA") -> dict[str, str]:
    """The variables that make the outgoing channel send the headers the other versions send."""
    hdr = {"PJSIP_HEADER(add,X-CS)": f"v=1;o={origin};path={origin};h=1;e={exten};p=1234"}
    for i, p in enumerate(params, 1):
        hdr[f"PJSIP_HEADER(add,X-CS-P{i})"] = b64(p)
    return hdr


class Node:
    """One Asterisk's ARI: a keep-alive HTTP session and the event websocket."""

    def __init__(self, name: str, base: str, user: str, password: str) -> None:
        self.name, self.base = name, base.rstrip("/") + "/ari"
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        # at most POOL connections: beyond Asterisk's HTTP session limit (http.conf sessionlimit)
        # new connections are closed at once and the requests on them fail
        self.session = aiohttp.ClientSession(headers={"Authorization": auth},
                                             connector=aiohttp.TCPConnector(limit=POOL))
        self.queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}   # channel id -> its events
        self.forward: dict[str, str] = {}     # caller id -> outgoing channel id, while dialing
        self.tasks: set[asyncio.Task[None]] = set()

    async def req(self, method: str, path: str, *, params: Optional[dict[str, str]] = None,
                  body: Optional[dict[str, Any]] = None) -> Any:
        async with self.session.request(method, self.base + path, params=params, json=body) as r:
            text = await r.text()
            if r.status >= 300:
                raise RuntimeError(f"{self.name}: {method} {path} -> {r.status} {text[:200]}")
            return json.loads(text) if text else None

    async def events(self, ready: asyncio.Event) -> None:
        url = self.base.replace("http", "ws", 1) + f"/events?app={APP}"
        async with self.session.ws_connect(url, heartbeat=None, max_msg_size=0) as ws:
            ready.set()
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                self.dispatch(json.loads(msg.data))

    def dispatch(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        chan = (ev.get("channel") or ev.get("peer") or {}).get("id", "")
        if kind == "StasisStart" and chan not in self.queues:
            args = ev.get("args") or []
            if args and args[0] in ("route", "init"):
                q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
                self.queues[chan] = q
                handler = self.route if args[0] == "route" else self.init
                t = asyncio.get_running_loop().create_task(self.guard(handler, chan, args[1:]))
                self.tasks.add(t)
                t.add_done_callback(self.tasks.discard)
            return
        q_ = self.queues.get(chan)
        if q_ is not None:
            q_.put_nowait(ev)
        fw = self.forward.get(chan)
        if fw is not None and fw in self.queues:
            self.queues[fw].put_nowait(ev)      # the dialing task sees the caller hang up

    async def guard(self, handler: Any, chan: str, args: list[str]) -> None:
        try:
            await handler(chan, args)
        except Exception as exc:  # noqa: BLE001 - one call fails, the application goes on
            log.warning("%s %s: %s", self.name, chan, exc)
            try:
                await self.req("DELETE", f"/channels/{chan}")
            except Exception:  # noqa: BLE001
                pass
        finally:
            self.queues.pop(chan, None)

    async def init(self, chan: str, args: list[str]) -> None:
        names = ",".join(f"PJSIP_HEADER(read,X-CS-P{i})" for i in range(1, 5))
        got = (await self.req("GET", f"/channels/{chan}/variables", params={"variables": names}))["variables"]
        values = {f"CS_P{i}": unb64(got.get(f"PJSIP_HEADER(read,X-CS-P{i})", "")) for i in range(1, 5)}
        await self.req("POST", f"/channels/{chan}/variables", body={"variables": values})
        await self.req("POST", f"/channels/{chan}/continue")

    async def route(self, chan: str, args: list[str]) -> None:
        args = args + [""] * (7 - len(args))
        exten, sops, params = args[0], [s for s in args[1:3] if s], args[3:7]
        names = ",".join(f"DEVICE_STATE(PJSIP/{s})" for s in sops)
        states = (await self.req("GET", f"/channels/{chan}/variables", params={"variables": names}))["variables"]
        status, chosen, tried = "UNAVAILABLE", "", []
        for sop in sops:
            if states.get(f"DEVICE_STATE(PJSIP/{sop})") == "UNAVAILABLE":
                tried.append(f"{sop}:KNOWN_DOWN")
                continue
            dialstatus = await self.dial(chan, f"PJSIP/{exten}@{sop}", route_headers(exten, params))
            tried.append(f"{sop}:{dialstatus}")
            if dialstatus in FAILOVER_STATUSES or dialstatus == "":
                continue
            status, chosen = dialstatus, sop
            break
        if chan not in self.queues:
            return
        try:
            await self.req("POST", f"/channels/{chan}/variables", body={"variables": {
                "CS_STATUS": status, "CS_SOP": chosen, "CS_TRIED": ",".join(tried)}})
            await self.req("POST", f"/channels/{chan}/continue")
        except RuntimeError:
            pass   # the caller hung up meanwhile (404 / 409): nothing to hand back

    async def dial(self, chan: str, endpoint: str, variables: dict[str, str]) -> str:
        """Dial ``endpoint`` bridged to ``chan``; returns the final DIALSTATUS once the call ends."""
        out, bridge = f"{chan}-out-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        gone = False
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.queues[out] = q
        self.forward[chan] = out
        try:
            try:
                await asyncio.gather(
                    self.req("POST", "/channels/create", body={
                        "endpoint": endpoint, "app": APP, "appArgs": "out", "channelId": out,
                        "originator": chan, "variables": variables}),
                    self.req("POST", f"/bridges/{bridge}", params={"type": "mixing"}))
            except RuntimeError:
                return "CHANUNAVAIL"
            # a created channel can join a bridge once it is in the application (its StasisStart)
            while True:
                ev = await asyncio.wait_for(q.get(), 10)
                if ev.get("type") == "StasisStart" and ev["channel"]["id"] == out:
                    break
                if ev.get("type") in ("StasisEnd", "ChannelDestroyed"):   # either channel left
                    return "CANCEL" if ev["channel"]["id"] == chan else "CHANUNAVAIL"
            await asyncio.gather(
                self.req("POST", f"/channels/{out}/dial", params={"caller": chan, "timeout": "30"}),
                self.req("POST", f"/bridges/{bridge}/addChannel", params={"channel": f"{chan},{out}"}))
            status, gone = "", False
            while not gone:
                ev = await q.get()
                kind = ev.get("type")
                if (ev.get("channel") or {}).get("id") == chan:      # the caller's own events
                    if kind in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
                        status = status or "CANCEL"
                        break                        # the finally hangs up the outgoing channel
                    continue
                if kind == "Dial" and ev.get("dialstatus") in FINAL_DIALSTATUS:
                    status = ev["dialstatus"]
                    if status != "ANSWER":
                        break
                    await self.req("POST", f"/channels/{chan}/answer")
                elif kind in ("StasisEnd", "ChannelDestroyed"):
                    gone = True
            return status
        finally:
            self.queues.pop(out, None)
            self.forward.pop(chan, None)
            for path in ([] if gone else [f"/channels/{out}"]) + [f"/bridges/{bridge}"]:
                try:
                    await self.req("DELETE", path)
                except RuntimeError:
                    pass


async def main(argv: list[str]) -> None:
    user, _, password = argv[0].partition(":")
    nodes = []
    for spec in argv[1:]:
        name, _, url = spec.partition("=")
        nodes.append(Node(name, url, user, password))
    readies = [asyncio.Event() for _ in nodes]
    listeners = [asyncio.ensure_future(n.events(r)) for n, r in zip(nodes, readies)]
    waiters = [asyncio.ensure_future(r.wait()) for r in readies]
    done, _ = await asyncio.wait(listeners + waiters, timeout=20, return_when=asyncio.FIRST_EXCEPTION)
    for t in listeners:
        if t.done():
            t.result()   # raises: a websocket could not connect
    if not all(r.is_set() for r in readies):
        raise RuntimeError("ARI websockets not connected after 20 s")
    print("READY", flush=True)
    await asyncio.gather(*listeners)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(sys.argv[1:]))
