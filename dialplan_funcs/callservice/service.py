"""CallService and INITSERVICE inside Asterisk: the glue between the routing logic and channels.

Everything that decides lives in codec/routing/options/settings (pure, unit-tested); this module
does the Asterisk side: reading the inbound call's data, Dial with a pre-dial handler that adds
the headers (or, for a local delivery, the channel variables), and the status variables.

Inbound data is cached on the channel in CALLSERVICE_IN* variables the first time it is needed,
so INITSERVICE reads the SIP headers once per call; a local delivery sets the same variables on
the Local channel, which is why a service reads its parameters the same way wherever it was
reached from.
"""
from __future__ import annotations

import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Optional

import pbx_python as px
from pbx_python import asterisk as ast

from . import codec, routing
from .options import parse_options
from .settings import Settings, parse_settings

log = logging.getLogger("callservice")

PREDIAL_CONTEXT = "pbx-python-callservice"
SEP = "\x1f"  # joins several ${...} reads into one substitution (one C call)

# Channel variables caching what a call carries (set by local delivery or decoded from SIP).
IN_STATE = "CALLSERVICE_IN"          # sip | local | none | untrusted | invalid
IN_PARAMS = tuple(f"CALLSERVICE_IN_P{i}" for i in range(1, 5))
IN_ORIGIN = "CALLSERVICE_IN_ORIGIN"
IN_PATH = "CALLSERVICE_IN_PATH"
IN_HOP = "CALLSERVICE_IN_HOP"
IN_FROM = "CALLSERVICE_IN_FROM"      # the cluster SOP whose trunk delivered the call
IN_EXTEN = "CALLSERVICE_IN_EXTEN"    # the extension CallService delivered the call for

SYNOPSIS = "Route a call to an extension on a SOP of the cluster, with four call parameters"
SYNTAX = "CallService(extension,sop1[,sop2[,param1[,param2[,param3[,param4[,options]]]]]])"
ARGUMENTS = """\
extension: the extension to call in the service context of the chosen SOP
sop1: the primary SOP (node) where the extension lives
sop2: the secondary SOP, tried when sop1 cannot take the call (may be empty)
param1..param4: call parameters (up to 1024 bytes each, any content), read on the SOP that
    takes the call with INITSERVICE(Parameter1)..INITSERVICE(Parameter4). An empty one is taken
    from the channel variable CALLSERVICE_PARAM1..CALLSERVICE_PARAM4 when that is set: use the
    variables for values with commas, quotes or line breaks.
options:
    r       - when the chosen SOP is the local one, continue this channel in the service
              (no Local channel; CallService does not return)
    t(<s>)  - progress timeout in seconds for a remote SOP (default: progress_timeout in
              pbx_python.conf, 2 s); a SOP that sends neither ringing nor an answer in time is
              abandoned and the next one is tried
    T(<s>)  - answer timeout in seconds (default: none)"""
DESCRIPTION = """\
Tries sop1, then sop2. The local SOP gets the call through a Local channel into the service
context (so the outcome comes back here), or, with option r, by sending this channel there.
A remote SOP that qualify already marks unreachable is skipped without an INVITE. A remote SOP
is called over its PJSIP trunk with the parameters and routing data in X-CallService headers.
Node failures (unreachable, no progress in time, 408, 5xx, 404/480 'not here') move on to the
next SOP; what the extension itself does (answer, busy, no answer, caller hang-up) does not.
A call never goes back to a SOP it has visited or came from, and max_hops bounds the rest.

Sets on return:
  CALLSERVICE_STATUS  ANSWER | BUSY | NOANSWER | CANCEL | UNAVAILABLE (no SOP could take the
                      call) | LOOP (every SOP was refused to avoid a loop) | INVALIDARGS
  CALLSERVICE_SOP     the SOP that took the call (empty if none)
  CALLSERVICE_TRIED   each SOP tried with its outcome, e.g. sopA:UNREACHABLE,sopB:ANSWER

Example:
  same => n,CallService(2000,sopA,sopB,${LANG},${MAILBOX})
  same => n,GotoIf($["${CALLSERVICE_STATUS}" = "BUSY"]?busy)
  same => n,GotoIf($["${CALLSERVICE_STATUS}" = "UNAVAILABLE"]?down)"""


@dataclass
class Leg:
    """What the pre-dial handler adds to one outgoing leg."""
    headers: list[tuple[str, str]] = field(default_factory=list)   # remote: SIP headers
    variables: dict[str, str] = field(default_factory=dict)        # local: channel variables
    channel: str = ""                                               # the leg's channel name


@dataclass
class SopCounters:
    routed: int = 0
    failovers: int = 0


_settings: Optional[Settings] = None
_pending: dict[str, Leg] = {}
_counters: dict[str, SopCounters] = {}
_lock = threading.Lock()


@px.on_load
def configure(config: px.Config) -> None:
    """Read [callservice] and create the pre-dial handler's dialplan (owned by pbx_python)."""
    global _settings
    _settings = parse_settings(config.section("callservice"))
    if ast.bound():
        ast.add_extension(PREDIAL_CONTEXT, "s", 1, "CallServicePreDial", "${ARG1}")
        ast.add_extension(PREDIAL_CONTEXT, "s", 2, "Return", "")


def settings() -> Settings:
    if _settings is None:
        raise px.DialplanError("the [callservice] section of pbx_python.conf is not loaded")
    return _settings


def _counter(sop: str) -> SopCounters:
    with _lock:
        return _counters.setdefault(sop, SopCounters())


# ---------------------------------------------------------------------------- inbound data

@dataclass(frozen=True)
class Inbound:
    state: str                       # sip | local | none | untrusted | invalid
    came_from: Optional[str]         # cluster SOP whose trunk delivered the call
    meta: Optional[codec.CallMeta]
    params: tuple[str, str, str, str]


NO_PARAMS = ("", "", "", "")
_IN_NAMES = (IN_STATE, IN_FROM, IN_ORIGIN, IN_PATH, IN_HOP, IN_EXTEN, *IN_PARAMS)
_IN_TEMPLATE = SEP.join(f"${{{n}}}" for n in _IN_NAMES)    # all of them in one substitution
_parsed: dict[str, "Inbound"] = {}    # substituted _IN_TEMPLATE -> Inbound (immutable), bounded


def inbound(chan: px.Channel, routing_only: bool = False) -> Inbound:
    """What the call carries, decoded once per channel and cached in CALLSERVICE_IN*.

    With ``routing_only`` (CallService deciding where to send a call), a call from an endpoint
    that is not a cluster SOP is answered without reading its SIP headers, which could not be
    believed anyway: each PJSIP_HEADER read is a round trip through the SIP session's thread.
    INITSERVICE reads them, to warn about them.
    """
    cached = chan.eval(_IN_TEMPLATE)
    found = _parsed.get(cached)
    if found is not None:
        return found
    values = cached.split(SEP)
    if len(values) == len(_IN_NAMES) and values[0]:
        state, came_from, origin, path, hop, exten, *params = values
        meta = None
        if origin:
            meta = codec.CallMeta(origin=origin, path=tuple(p for p in path.split(";") if p),
                                  hop=int(hop or 0), exten=exten)
        found = Inbound(state, came_from or None, meta, tuple(params))  # type: ignore[arg-type]
        if len(_parsed) >= 256:
            _parsed.clear()
        _parsed[cached] = found      # the other INITSERVICE reads of this call skip the parsing
        return found
    if chan.tech != "PJSIP":
        found = Inbound("none", None, None, NO_PARAMS)
    else:
        endpoint = pjsip_endpoint(chan)
        came_from = settings().cluster.sop_for_endpoint(endpoint)
        if came_from is None and routing_only:
            return Inbound("none", None, None, NO_PARAMS)      # not cached: INITSERVICE checks
        found = _decode_sip(chan, endpoint, came_from)
    _cache(chan, found)
    return found


_PJSIP_NAME = re.compile(r"PJSIP/(.+)-[0-9a-f]{8}")


def pjsip_endpoint(chan: px.Channel) -> str:
    """The PJSIP endpoint of a PJSIP channel.

    chan_pjsip names its channels PJSIP/<endpoint>-<8 hex digits>: reading the name costs
    nothing, where CHANNEL(endpoint) is a round trip through the session's thread (used only
    when the name has been changed, e.g. by a masquerade).
    """
    m = _PJSIP_NAME.fullmatch(chan.name)
    return m.group(1) if m else chan.eval("${CHANNEL(endpoint)}")


def _cache(chan: px.Channel, found: Inbound) -> None:
    meta = found.meta
    chan.set_vars({IN_STATE: found.state, IN_FROM: found.came_from or "",
                   IN_ORIGIN: meta.origin if meta else "",
                   IN_PATH: ";".join(meta.path) if meta else "",
                   IN_HOP: str(meta.hop) if meta else "",
                   IN_EXTEN: meta.exten if meta else "",
                   **dict(zip(IN_PARAMS, found.params))})


def _decode_sip(chan: px.Channel, endpoint: str, came_from: Optional[str]) -> Inbound:
    """Read the route header, then exactly the parameter headers it lists (see codec)."""
    route = chan.eval(f"${{PJSIP_HEADER(read,{codec.HDR_ROUTE})}}")
    if came_from is None:
        if route:
            log.warning("ignoring CallService headers on %s from endpoint '%s': it is not a "
                        "cluster SOP", chan.name, endpoint)
        return Inbound("untrusted" if route else "none", None, None, NO_PARAMS)
    if not route:
        return Inbound("none", came_from, None, NO_PARAMS)
    headers = {codec.HDR_ROUTE: route}
    listed = codec.listed_params(route)
    if listed:
        reads = SEP.join(f"${{PJSIP_HEADER(read,{n})}}" for n in listed)
        headers.update(zip(listed, chan.eval(reads).split(SEP)))
    try:
        decoded = codec.decode_headers(headers, settings().secret)
    except codec.HeaderError as exc:
        log.warning("ignoring CallService headers on %s from SOP %s: %s", chan.name, came_from, exc)
        return Inbound("invalid", came_from, None, NO_PARAMS)
    if decoded is None:
        return Inbound("none", came_from, None, NO_PARAMS)
    return Inbound("sip", came_from, decoded.meta, decoded.params)


# ---------------------------------------------------------------------------- INITSERVICE

_FIELDS = {**{f"parameter{i}": i for i in range(1, 5)}, **{str(i): i for i in range(1, 5)}}


@px.function("INITSERVICE", synopsis="Read the call parameters CallService sent with this call",
             syntax="INITSERVICE(Parameter1|Parameter2|Parameter3|Parameter4|1|2|3|4|origin)",
             arguments="Parameter1..Parameter4 (or 1..4): the call parameters given to "
                       "CallService\norigin: the SOP that routed the call",
             description="Returns the same values whether the call arrived over SIP from another "
                         "SOP or was delivered locally. Empty, without error, on a call that did "
                         "not come through CallService. SIP headers are believed only on calls "
                         "from cluster SOP endpoints (and, with a secret configured, only when "
                         "their signature verifies); others are ignored with a WARNING.",
             seealso="CallService")
def initservice(chan: Optional[px.Channel], what: str = "") -> str:
    key = what.strip().lower()
    if key != "origin" and key not in _FIELDS:
        raise px.DialplanError(f"INITSERVICE({what}): expected Parameter1..Parameter4, 1..4 or "
                               "origin")
    if chan is None:
        return ""
    found = inbound(chan)
    if key == "origin":
        return found.meta.origin if found.meta else ""
    return found.params[_FIELDS[key] - 1]


# ---------------------------------------------------------------------------- CallService

@px.application("CallService", synopsis=SYNOPSIS, syntax=SYNTAX, arguments=ARGUMENTS,
                description=DESCRIPTION)
def call_service(chan: px.Channel, exten: str = "", sop1: str = "", sop2: str = "", p1: str = "",
                 p2: str = "", p3: str = "", p4: str = "", options: str = "",
                 *extra: str) -> int:
    s = settings()
    if not (p1 and p2 and p3 and p4):
        # Empty arguments take CALLSERVICE_PARAM<n>: a variable carries any content (commas,
        # quotes, CR/LF) that dialplan argument syntax cannot.
        given = chan.eval(SEP.join(f"${{CALLSERVICE_PARAM{i}}}" for i in range(1, 5))).split(SEP)
        if len(given) == 4:
            p1, p2, p3, p4 = (a or v for a, v in zip((p1, p2, p3, p4), given))
    try:
        if extra:
            raise codec.CallServiceError(f"{len(extra)} argument(s) too many: {SYNTAX}")
        exten = codec.validate_extension(exten)
        params = codec.validate_params([p1, p2, p3, p4])
        opts = parse_options(options)
    except codec.CallServiceError as exc:
        log.warning("CallService on %s: %s; no call placed", chan.name, exc)
        _set_result(chan, routing.RoutingResult(routing.Status.INVALIDARGS, None, (), str(exc)))
        return 0

    cluster = s.cluster
    found = inbound(chan, routing_only=True)
    came_from, visited, hop = routing.loop_state(found.came_from, found.meta)
    request = routing.Request(exten, sop1.strip(), sop2.strip())
    delivered = found.meta is not None and found.meta.exten == exten
    the_plan = routing.plan(request, cluster, came_from, visited, hop,
                            known_down=() if delivered else _known_down(chan, request, cluster),
                            delivered=delivered)
    if the_plan.error:
        log.warning("CallService on %s: %s; no call placed", chan.name, the_plan.error)
    meta_out = codec.CallMeta.outbound(s.local_sop, exten, visited, hop)
    progress = opts.progress_timeout if opts.progress_timeout is not None else s.progress_timeout
    answer = opts.answer_timeout if opts.answer_timeout is not None else s.answer_timeout
    redirected = False

    def dial(step: routing.Step) -> routing.Outcome:
        nonlocal redirected
        where = f"CallService {exten} on {chan.name}: SOP {step.sop}"
        px.verbose(f"{where}: {step.kind.value.lower() if step.kind else ''} delivery", 3)
        if step.kind is routing.Kind.LOCAL and opts.redirect_local:
            outcome = _redirect(chan, exten, s, meta_out, params)
            redirected = outcome.disposition is routing.Disposition.FINAL
        else:
            outcome = _dial(chan, step, exten, s, meta_out, params, progress, answer)
        px.verbose(f"{where}: {outcome.label} ({outcome.disposition.value.lower()})", 3)
        return outcome

    for step in the_plan.skipped:
        if step.skip in _LOGGED_SKIPS:
            px.verbose(f"CallService {exten} on {chan.name}: SOP {step.sop}: {step.skip.value} "
                       "(skipped)", 3)
    result = routing.run(the_plan, dial)
    for attempt in result.attempts:
        counter = _counter(attempt.sop)
        if attempt.outcome.failover:
            counter.failovers += 1
        elif attempt.outcome.disposition is routing.Disposition.FINAL:
            counter.routed += 1
    if not result.attempts:
        px.verbose(f"CallService {exten} on {chan.name}: {result.status.value}"
                   f"{': ' + result.error if result.error else ''}", 3)
    _set_result(chan, result, redirected)
    if chan.is_hungup():
        return -1
    return 0


_LOGGED_SKIPS = (routing.SkipReason.CAME_FROM, routing.SkipReason.VISITED,
                 routing.SkipReason.HOP_LIMIT, routing.SkipReason.KNOWN_DOWN,
                 routing.SkipReason.DELIVERED)


def _set_result(chan: px.Channel, result: routing.RoutingResult, redirected: bool = False) -> None:
    chan.set_vars({"CALLSERVICE_STATUS": "REDIRECT" if redirected else result.status.value,
                   "CALLSERVICE_SOP": result.sop or "",
                   "CALLSERVICE_TRIED": result.tried})


def _known_down(chan: px.Channel, request: routing.Request, cluster: routing.Cluster) -> set[str]:
    """Remote SOPs of the request whose trunk Asterisk already knows is unavailable (qualify)."""
    remote = [sop for sop in dict.fromkeys((request.sop1, request.sop2))
              if sop and sop != cluster.local_sop and sop in cluster.sops]
    if not remote:
        return set()
    states = chan.eval(SEP.join(f"${{DEVICE_STATE(PJSIP/{cluster.endpoint(sop)})}}"
                                for sop in remote)).split(SEP)
    return {sop for sop, state in zip(remote, states) if state == "UNAVAILABLE"}


def _local_variables(meta: codec.CallMeta, params: tuple[str, ...]) -> dict[str, str]:
    return {IN_STATE: "local", IN_FROM: "", IN_ORIGIN: meta.origin, IN_PATH: ";".join(meta.path),
            IN_HOP: str(meta.hop), IN_EXTEN: meta.exten, **dict(zip(IN_PARAMS, params))}


def _redirect(chan: px.Channel, exten: str, s: Settings, meta: codec.CallMeta,
              params: tuple[str, ...]) -> routing.Outcome:
    """Option r: continue this channel in the local service (no new channel)."""
    if chan.eval(f"${{DIALPLAN_EXISTS({s.service_context},{exten},1)}}") != "1":
        return routing.Outcome(routing.Disposition.FAILOVER, "NOTHERE")
    chan.set_vars(_local_variables(meta, params))
    chan.exec_app("Goto", f"{s.service_context},{exten},1")
    return routing.Outcome(routing.Disposition.FINAL, "REDIRECT", routing.Status.ANSWER)


def _dial(chan: px.Channel, step: routing.Step, exten: str, s: Settings, meta: codec.CallMeta,
          params: tuple[str, ...], progress: float, answer: Optional[float]) -> routing.Outcome:
    leg = Leg()
    if step.kind is routing.Kind.LOCAL:
        leg.variables = _local_variables(meta, params)
        timeout = _seconds(answer)
    else:
        leg.headers = codec.encode_headers(meta, params, s.secret)
        timeout = f"{_seconds(answer)}^{_seconds(progress)}" if progress else _seconds(answer)
    token = uuid.uuid4().hex
    _pending[token] = leg
    try:
        target = routing.dial_string(step, exten, s.cluster, s.service_context)
        chan.exec_app("Dial", f"{target},{timeout},b({PREDIAL_CONTEXT}^s^1({token}))")
    finally:
        _pending.pop(token, None)
    reads = ["${DIALSTATUS}", "${RINGTIME}", "${PROGRESSTIME}"]
    if leg.channel and step.kind is routing.Kind.REMOTE:  # Local legs record no hangup cause
        key = px.hangupcause_key(leg.channel)     # Asterisk's key: the name cut to 79 bytes
        reads += [f"${{HANGUPCAUSE({key},ast)}}", f"${{HANGUPCAUSE({key},tech)}}"]
    values = chan.eval(SEP.join(reads)).split(SEP) + ["", ""]
    status, ring, prog, cause, tech = values[:5]
    return routing.classify_dial(status, cause or None, tech or None, progressed=bool(ring or prog))


def _seconds(value: Optional[float]) -> str:
    return "" if not value else f"{value:g}"


@px.application("CallServicePreDial", synopsis="Internal to CallService: prepares an outgoing leg",
                syntax="CallServicePreDial(token)",
                description="Run by CallService as Dial's pre-dial handler on each outgoing "
                            "channel: adds the X-CallService headers (remote SOP) or the "
                            "CALLSERVICE_IN* variables (local delivery). Not for direct use.")
def predial(chan: px.Channel, token: str = "") -> int:
    leg = _pending.get(token)
    if leg is None:
        log.warning("CallServicePreDial on %s: unknown token (not run by CallService?)", chan.name)
        return 0
    leg.channel = chan.name
    if leg.headers:
        # Deferred: applied in one batch when this callback returns (function writes via Set).
        for name, value in leg.headers:
            chan.set_var(f"PJSIP_HEADER(add,{name})", value)
    else:
        chan.set_vars(leg.variables)
    return 0


# ---------------------------------------------------------------------------- CLI

@px.cli_command("callservice show sops", summary="Show the cluster SOPs as CallService sees them",
                usage="Usage: callservice show sops\n"
                      "       Each SOP of [callservice] in pbx_python.conf: local or remote, its "
                      "PJSIP endpoint,\n       reachability as qualify sees it (status, RTT), "
                      "and the calls CallService routed\n       to it and failed over from it.\n")
def show_sops(argv: list[str]) -> str:
    s = settings()
    rows = [("SOP", "Role", "Endpoint", "Device state", "Contact status", "RTT ms", "Routed",
             "Failovers")]
    for sop in s.sops:
        counter = _counter(sop)
        if sop == s.local_sop:
            rows.append((sop, "local", "-", "-", "-", "-", str(counter.routed),
                         str(counter.failovers)))
            continue
        endpoint = s.endpoint_for(sop)
        state = ast.func_read(f"DEVICE_STATE(PJSIP/{endpoint})") or "?"
        status, rtt = _contact(endpoint)
        rows.append((sop, "remote", endpoint, state, status, rtt, str(counter.routed),
                     str(counter.failovers)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines) + f"\n{len(s.sops)} SOP(s); local SOP {s.local_sop}\n"


def _contact(endpoint: str) -> tuple[str, str]:
    aors = (ast.func_read(f"PJSIP_ENDPOINT({endpoint},aors)") or "").split(",")
    for aor in filter(None, (a.strip() for a in aors)):
        contacts = (ast.func_read(f"PJSIP_AOR({aor},contact)") or "").split(",")
        for contact in filter(None, (c.strip() for c in contacts)):
            status = ast.func_read(f"PJSIP_CONTACT({contact},status)") or "?"
            rtt = ast.func_read(f"PJSIP_CONTACT({contact},rtt)") or ""
            rtt_ms = f"{int(rtt) / 1000:.1f}" if rtt.isdigit() else "-"
            return status, rtt_ms
    return "no contact", "-"
