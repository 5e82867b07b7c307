"""Dialplan side of the stress suite (loaded by pbx_python on every node from bench/).

  StressParams(idx)  on the entry SOP: STRESS_B1..STRESS_B4 = the call's four parameters in
                     standard base64 (empty for an empty parameter; the dialplan turns them into
                     CALLSERVICE_PARAM1..4 with Asterisk's own BASE64_DECODE, so the bytes given
                     to CallService do not depend on pbx_python's string conversions), and
                     STRESS_ROUTE = "sop1,sop2".
  StressCheck(idx)   on the SOP that runs the service: compares the channel variables P1..P4
                     (set from INITSERVICE(Parameter1..4) by the dialplan) and ORIGIN with what
                     the seed gives for this call, byte for byte, and logs one line
                     "STRESS RX <idx> OK|MISMATCH origin=<o> d=<digests> len=<lengths>"; the
                     harness recomputes the same from the seed and counts.

The seed (and the parameter profile) come from the [stress] section of pbx_python.conf.
"""
from __future__ import annotations

import base64
import re

import pbx_python as px

import stress_params as sp

_seed: int | None = None
_profile = "bytes"
_details_left = 0
DETAILS_PER_LOAD = 3     # mismatches logged with the differing bytes, per node and (re)load


@px.on_load
def configure(config: px.Config) -> None:
    global _seed, _profile, _details_left
    values = dict(config.section("stress"))
    _seed = int(values["seed"])
    _profile = values.get("profile", "bytes")
    if _profile not in sp.PROFILES:
        raise ValueError(f"[stress] profile = {_profile}: expected one of {', '.join(sp.PROFILES)}")
    _details_left = DETAILS_PER_LOAD


def _index(text: str) -> int:
    if not text.isdigit():
        raise px.DialplanError(f"stress: call index {text!r} is not a number")
    return int(text)


@px.application("StressParams", synopsis="Stress suite: the call's fuzzed parameters (base64)")
def stress_params(chan: px.Channel, idx: str = "") -> None:
    n = _index(idx)
    values = {f"STRESS_B{i}": base64.b64encode(p).decode("ascii")
              for i, p in enumerate(sp.params(_seed, n, _profile), 1)}
    values["STRESS_ROUTE"] = ",".join(sp.route(n))
    chan.set_vars(values)


def _as_bytes(value: str | None) -> bytes:
    # pbx_python decodes C strings with surrogateescape: encoding back gives the exact bytes.
    return (value or "").encode("utf-8", "surrogateescape")


def _shown(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9_.-]*", value) else repr(value)


@px.application("StressCheck", synopsis="Stress suite: check the received parameters")
def stress_check(chan: px.Channel, idx: str = "") -> None:
    global _details_left
    n = _index(idx)
    got = [_as_bytes(chan.get_var(f"P{i}")) for i in range(1, 5)]
    origin = chan.get_var("ORIGIN") or ""
    want = sp.params(_seed, n, _profile)
    ok = got == list(want) and origin == sp.ENTRY
    px.verbose(f"STRESS RX {n} {'OK' if ok else 'MISMATCH'} origin={_shown(origin)} "
               f"d={','.join(sp.digest(g) for g in got)} len={','.join(str(len(g)) for g in got)}", 0)
    if ok or _details_left <= 0:
        return
    _details_left -= 1
    for i, (g, w) in enumerate(zip(got, want), 1):
        if g == w:
            continue
        at = next((k for k, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
        px.verbose(f"STRESS DETAIL {n} P{i} sent {len(w)} bytes ({', '.join(sp.traits(w))}), "
                   f"received {len(g)}; first difference at byte {at}: sent "
                   f"{w[at:at + 12].hex(' ') or '(end)'} received {g[at:at + 12].hex(' ') or '(end)'}", 0)
