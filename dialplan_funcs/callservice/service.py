"""CallService and INITSERVICE inside Asterisk: the glue between the routing logic and channels.

Everything that decides lives in codec/routing/options/settings (pure, unit-tested); this module
does the Asterisk side: reading the inbound call's data, Dial with a pre-dial handler that adds
the headers (or, for a local delivery, the channel variables), and the status variables.

Inbound data is cached on the channel in CALLSERVICE_IN* variables the first time it is needed,
so INITSERVICE reads the SIP headers once per call; a local delivery sets the same variables on
the Local channel, which is why a service reads its parameters the same way wherever it was
reached from.

No state crosses entries in module globals, which a 'module reload' replaces while calls run:
what the pre-dial handler adds travels in its own arguments, the dialled leg is found again from
the caller's HANGUPCAUSE_KEYS(), and what the hangup handler needs is on the channel. Several
values are read with Channel.eval_each() (one C call, values that no content can shift).
"""
from __future__ import annotations

import functools
import logging
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import pbx_python as px
from pbx_python import asterisk as ast

from . import codec, events, routing
from .options import parse_options
from .settings import Settings, parse_settings

log = logging.getLogger("callservice")

PREDIAL_CONTEXT = "pbx-python-callservice"
REJECT_EXTEN = "reject"
#: Buffer for reading a SIP header: PJSIP's largest message (PJSIP_MAX_PKT_LEN 65535) fits, so
#: a header is read whole whatever its size (Asterisk's default, 4 kB, fails on longer values).
WHOLE_HEADER = 65536

# Channel variables caching what a call carries (set by local delivery or decoded from SIP).
IN_STATE = "CALLSERVICE_IN"          # sip | local | none | untrusted | invalid
IN_PARAMS = tuple(f"CALLSERVICE_IN_P{i}" for i in range(1, 5))
IN_ORIGIN = "CALLSERVICE_IN_ORIGIN"
IN_PATH = "CALLSERVICE_IN_PATH"
IN_HOP = "CALLSERVICE_IN_HOP"
IN_FROM = "CALLSERVICE_IN_FROM"      # the cluster SOP whose trunk delivered the call
IN_EXTEN = "CALLSERVICE_IN_EXTEN"    # the extension CallService delivered the call for
REJECT = "CALLSERVICE_REJECT"        # armed final response (482/483) of an inbound cluster call

SYNOPSIS = "Route a call to an extension on a SOP of the cluster, with four call parameters"
SYNTAX = "CallService(extension,sop1[,sop2[,param1[,param2[,param3[,param4[,options]]]]]])"
ARGUMENTS = """\
extension: the extension to call in the service context of the chosen SOP
sop1: the primary SOP (node) where the extension lives
sop2: the secondary SOP, tried when sop1 cannot take the call (may be empty)
    With sop1 and sop2 both empty, both come from the cluster directory (module
    dialplan_funcs.directory, see GETEXTENSIONINFO): status NOTFOUND when the extension is
    not in it, INVALIDARGS when no directory is loaded (a WARNING each; no call placed).
param1..param4: call parameters (up to 1024 bytes each, any byte but NUL), read on the SOP
    that takes the call with INITSERVICE(Parameter1)..INITSERVICE(Parameter4), byte for byte.
    An empty one is taken from the channel variable CALLSERVICE_PARAM1..CALLSERVICE_PARAM4 when
    that is set: use the variables for values with commas, quotes, backslashes or line breaks,
    which dialplan argument syntax would split or strip.
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
A service ends the same way on the local SOP as on a remote one: its end is classified as the
SIP response chan_pjsip would send for it (Hangup() 603: BUSY/DECLINED, final; Hangup(21) 403
and Congestion() 503: next SOP; a missing extension 404: next SOP).

Local failures are not node failures: when this node cannot place the leg itself (no
outgoing channel could be created or called here: no free RTP port, channel limits, no
memory), the SOP is listed as LOCAL_FAILURE, is not counted as failed in
'callservice show sops', and the next SOP is still tried (it may need other resources: the
local SOP needs no RTP port, and ports free up as calls end).

Loops and max_hops: a call never goes back to a SOP it has visited or came from. max_hops
(pbx_python.conf, default 2) bounds the CallService SIP legs (INVITEs) one routed call causes
on all nodes together, failed legs included: each leg carries the number of legs used so far,
a failover leg counting the leg that failed, and no node sends a leg beyond max_hops (that
SOP is listed as HOP_LIMIT). A node that received the call over a CallService leg and whose
CallService then refused SOPs for a loop, or sent legs of its own without the call being
answered, makes sure the sender sends no more: if the call ends unanswered with a response
the sender would fail over on, it answers 482 Loop Detected (status LOOP) or 483 Too Many
Hops (legs used downstream) instead. The callflow keeps its exits: CallService does not hang
up itself, and a busy (486) or declined (603, also Hangup() without a cause) response stands.
A sender takes 482 and 483 as final: status LOOP, never a failover.

Sets on return:
  CALLSERVICE_STATUS  ANSWER | BUSY | NOANSWER | CANCEL | UNAVAILABLE (no SOP could take the
                      call) | LOOP (every SOP was refused to avoid a loop or beyond max_hops,
                      or the SOP answered 482/483) | INVALIDARGS | NOTFOUND (no SOP
                      given and the extension is not in the cluster directory)
  CALLSERVICE_SOP     the SOP whose answer ended the routing (empty if none)
  CALLSERVICE_TRIED   each SOP tried with its outcome, e.g. sopA:UNREACHABLE,sopB:ANSWER.
                      Final: ANSWER BUSY DECLINED NOANSWER CANCEL DONTCALL TORTURE SIP482
                      SIP483. Node failures (next SOP tried): UNREACHABLE CONGESTION SIP<code>
                      DIALINVALID UNKNOWN KNOWN_DOWN NOTHERE (option r: no local service
                      extension). This node's own failure (next SOP
                      tried, SOP not counted): LOCAL_FAILURE. Refused (loop): CAME_FROM VISITED
                      HOP_LIMIT DELIVERED.

Example:
  same => n,CallService(2000,sopA,sopB,${LANG},${MAILBOX})
  same => n,GotoIf($["${CALLSERVICE_STATUS}" = "BUSY"]?busy)
  same => n,GotoIf($["${CALLSERVICE_STATUS}" = "UNAVAILABLE"]?down)
  same => n,CallService(${MAILBOX},,,${LANG},${MAILBOX})   ; SOPs from the cluster directory"""


@dataclass
class SopCounters:
    routed: int = 0
    failovers: int = 0
    local_failures: int = 0


_settings: Optional[Settings] = None
_counters: dict[str, SopCounters] = {}
_lock = threading.Lock()


@px.on_load
def configure(config: px.Config) -> None:
    """Read [callservice] and create the handlers' dialplan (owned by pbx_python)."""
    global _settings
    _settings = parse_settings(config.section("callservice"))
    if ast.bound():
        ast.add_extension(PREDIAL_CONTEXT, "s", 1, "CallServicePreDial", "${ARG1}")
        ast.add_extension(PREDIAL_CONTEXT, "s", 2, "Return", "")
        ast.add_extension(PREDIAL_CONTEXT, REJECT_EXTEN, 1, "CallServiceReject", "")
        ast.add_extension(PREDIAL_CONTEXT, REJECT_EXTEN, 2, "Return", "")


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
    armed: str = ""                  # CALLSERVICE_REJECT: a 482/483 is armed on this channel


NO_PARAMS = ("", "", "", "")
_IN_NAMES = (IN_STATE, IN_FROM, IN_ORIGIN, IN_PATH, IN_HOP, IN_EXTEN, *IN_PARAMS, REJECT)
_IN_TEMPLATES = tuple(f"${{{n}}}" for n in _IN_NAMES)
_parsed: dict[tuple[str, ...], "Inbound"] = {}   # values of _IN_NAMES -> Inbound, bounded


def inbound(chan: px.Channel, routing_only: bool = False) -> Inbound:
    """What the call carries, decoded once per channel and cached in CALLSERVICE_IN*.

    With ``routing_only`` (CallService deciding where to send a call), a call from an endpoint
    that is not a cluster SOP is answered without reading its SIP headers, which could not be
    believed anyway: each PJSIP_HEADER read is a round trip through the SIP session's thread.
    INITSERVICE reads them, to warn about them.
    """
    values = tuple(chan.eval_each(*_IN_TEMPLATES))
    found = _parsed.get(values)
    if found is not None:
        return found
    if values[0]:
        found = _from_variables(chan, values)
        if found is not None:
            if len(_parsed) >= 256:
                _parsed.clear()
            _parsed[values] = found   # the other INITSERVICE reads of this call skip the parsing
            return found
    armed = values[-1]
    if chan.tech != "PJSIP" or chan.outgoing:
        # Only a call a SOP sent us can carry routing data: not one over another technology
        # (IAX2, Local...), nor a channel this node dialled (an Originate to a SOP's trunk
        # that then runs CallService did not come from that SOP).
        found = Inbound("none", None, None, NO_PARAMS, armed)
    else:
        endpoint = pjsip_endpoint(chan)
        came_from = settings().cluster.sop_for_endpoint(endpoint)
        if came_from is None and routing_only:
            return Inbound("none", None, None, NO_PARAMS, armed)  # not cached: INITSERVICE checks
        found = _decode_sip(chan, endpoint, came_from, armed)
    _cache(chan, found)
    return found


def _from_variables(chan: px.Channel, values: tuple[str, ...]) -> Optional[Inbound]:
    state, came_from, origin, path, hop, exten, *rest = values
    params, armed = tuple(rest[:4]), rest[4]
    meta = None
    try:
        if origin:
            meta = codec.CallMeta(origin=origin, path=tuple(p for p in path.split(";") if p),
                                  hop=int(hop or 0), exten=exten)
    except (codec.CallServiceError, ValueError) as exc:
        log.warning("CallService on %s: the %s* variables were changed (%s); they are ignored",
                    chan.name, IN_STATE, exc)
        return None
    return Inbound(state, came_from or None, meta, params, armed)  # type: ignore[arg-type]


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


def _read_headers(chan: px.Channel, names: tuple[str, ...]) -> list[str]:
    """The headers' values, read whole whatever their size ("" for a header not present)."""
    values = chan.func_read_each(*(f"PJSIP_HEADER(read,{n})" for n in names),
                                 maxlen=WHOLE_HEADER)
    return [v or "" for v in values]


def _decode_sip(chan: px.Channel, endpoint: str, came_from: Optional[str],
                armed: str) -> Inbound:
    """Read the route header, then exactly the parameter headers it lists (see codec).

    Anything that cannot be read whole or decoded exactly gives a WARNING and no parameters at
    all: never a partial or shifted set.
    """
    route = _read_headers(chan, (codec.HDR_ROUTE,))[0]
    if came_from is None:
        if route:
            log.warning("ignoring CallService headers on %s from endpoint '%s': it is not a "
                        "cluster SOP", chan.name, endpoint)
        return Inbound("untrusted" if route else "none", None, None, NO_PARAMS, armed)
    if not route:
        return Inbound("none", came_from, None, NO_PARAMS, armed)
    headers = {codec.HDR_ROUTE: route}
    listed = codec.listed_params(route)
    if listed:
        headers.update(zip(listed, _read_headers(chan, listed)))
    try:
        decoded = codec.decode_headers(headers, settings().secret)
        if decoded is not None:
            codec.check_origin(decoded.meta, came_from, settings().sops)
    except codec.HeaderError as exc:
        log.warning("ignoring CallService headers on %s from SOP %s: %s; the call carries no "
                    "parameters", chan.name, came_from, exc)
        return Inbound("invalid", came_from, None, NO_PARAMS, armed)
    if decoded is None:
        return Inbound("none", came_from, None, NO_PARAMS, armed)
    return Inbound("sip", came_from, decoded.meta, decoded.params, armed)


# ---------------------------------------------------------------------------- INITSERVICE

_FIELDS = {**{f"parameter{i}": i for i in range(1, 5)}, **{str(i): i for i in range(1, 5)}}


@px.function("INITSERVICE", synopsis="Read the call parameters CallService sent with this call",
             syntax="INITSERVICE(Parameter1|Parameter2|Parameter3|Parameter4|1|2|3|4|origin)",
             arguments="Parameter1..Parameter4 (or 1..4): the call parameters given to "
                       "CallService\norigin: the SOP that routed the call",
             description="Returns the same values, byte for byte, whether the call arrived over "
                         "SIP from another SOP or was delivered locally. Empty, without error, "
                         "on a call that did not come through CallService. SIP headers are "
                         "believed only on calls from cluster SOP endpoints, with an origin that "
                         "is the SOP of that endpoint (and, with a secret configured, only when "
                         "their signature verifies); headers that are not believed, cannot be "
                         "read whole or cannot be decoded exactly are ignored with a WARNING: "
                         "then every parameter is empty, never some of them.",
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


# ---------------------------------------------------------------------------- events, metrics

_sop_states = events.SopStates()      # reset by a module reload (states start UNKNOWN again)
_metrics = events.CallServiceMetrics()  # the registry keeps its counts across reloads


@dataclass
class _Run:
    """What the report of one CallService run needs besides its result."""
    exten: str
    started: float
    answered_at: Optional[float] = None


_runs = threading.local()


def _reported(app: Callable[..., int]) -> Callable[..., int]:
    """Wrap the CallService application: remember its start, for _report (called by
    _set_result on every path, with every status)."""
    @functools.wraps(app)
    def run(chan: px.Channel, exten: str = "", *args: str) -> int:
        previous = getattr(_runs, "current", None)
        _runs.current = _Run(exten, time.monotonic())
        try:
            return app(chan, exten, *args)
        finally:
            _runs.current = previous
    return run


def _note_answer(dialstatus: str, answered_ms: str) -> None:
    """After a Dial: when it was answered, the answer's time (Dial returns when the call ends;
    ANSWEREDTIME_MS is how long it was up)."""
    run = getattr(_runs, "current", None)
    if run is not None and dialstatus == "ANSWER" and answered_ms.isdigit():
        run.answered_at = time.monotonic() - int(answered_ms) / 1000


def _watching(chan: px.Channel, the_plan: routing.Plan,
              dial: Callable[[routing.Step, int], routing.Outcome]
              ) -> Callable[[routing.Step, int], routing.Outcome]:
    """``dial`` that reports SOP state changes as soon as each attempt ends; the SOPs the plan
    skips as known down are reported first."""
    for step in () if the_plan.error else the_plan.skipped:
        if step.skip is routing.SkipReason.KNOWN_DOWN:
            _observe(chan, step.sop, routing.Outcome(routing.Disposition.FAILOVER,
                                                     step.skip.value, sent=False))

    def watched(step: routing.Step, used: int) -> routing.Outcome:
        outcome = dial(step, used)
        _observe(chan, step.sop, outcome)
        return outcome
    return watched


def _observe(chan: px.Channel, sop: str, outcome: routing.Outcome) -> None:
    change = _sop_states.observe(sop, outcome)
    if change is None:
        return
    try:
        local = settings().local_sop
        px.verbose(f"CallService on {chan.name}: SOP {sop} is now {change.state.value} (was "
                   f"{change.previous.value}: {change.reason})", 3)
        ast.manager_event(events.SOP_STATE_EVENT, events.sop_state_event(
            change, local_sop=local, channel=chan.name, uniqueid=chan.uniqueid))
    except Exception:  # noqa: BLE001 - reporting never costs the call
        log.exception("CallService on %s: cannot send %s", chan.name, events.SOP_STATE_EVENT)


def _report(chan: px.Channel, status: str, result: routing.RoutingResult) -> None:
    """The CallServiceResult event and the metrics of one run (never raises: reporting must
    not cost the call)."""
    try:
        run = getattr(_runs, "current", None)
        now = time.monotonic()
        setup = None
        if run is not None:
            setup = (run.answered_at if status == "ANSWER" and run.answered_at else now) \
                - run.started
        _metrics.record(status, result.sop, result.attempts, setup)
        # name, uniqueid and linkedid come from the identity snapshot: at most one C call
        ast.manager_event(events.RESULT_EVENT, events.result_event(
            channel=chan.name, uniqueid=chan.uniqueid, linkedid=chan.linkedid,
            exten=run.exten if run is not None else "", status=status, sop=result.sop,
            attempts=result.attempts, setup_time=setup, local_sop=settings().local_sop,
            error=result.error or ""))
    except Exception:  # noqa: BLE001
        log.exception("CallService on %s: cannot report its result", chan.name)


# ---------------------------------------------------------------------------- CallService

_PARAM_TEMPLATES = tuple(f"${{CALLSERVICE_PARAM{i}}}" for i in range(1, 5))


@px.application("CallService", synopsis=SYNOPSIS, syntax=SYNTAX, arguments=ARGUMENTS,
                description=DESCRIPTION)
@_reported
def call_service(chan: px.Channel, exten: str = "", sop1: str = "", sop2: str = "", p1: str = "",
                 p2: str = "", p3: str = "", p4: str = "", options: str = "",
                 *extra: str) -> int:
    s = settings()
    if not (p1 and p2 and p3 and p4):
        # Empty arguments take CALLSERVICE_PARAM<n>: a variable carries any content (commas,
        # quotes, CR/LF, any byte) that dialplan argument syntax cannot.
        given = chan.eval_each(*_PARAM_TEMPLATES)
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
    if not sop1.strip() and not sop2.strip():
        sops = _directory_sops(chan, exten)
        if isinstance(sops, routing.RoutingResult):
            _set_result(chan, sops)
            return 0
        sop1, sop2 = sops

    cluster = s.cluster
    found = inbound(chan, routing_only=True)
    came_from, visited, hop = routing.loop_state(found.came_from, found.meta)
    request = routing.Request(exten, sop1.strip(), sop2.strip())
    delivered = found.meta is not None and found.meta.exten == exten
    known_down, legs_before = (set(), "") if delivered else _preflight(chan, request, cluster)
    the_plan = routing.plan(request, cluster, came_from, visited, hop, known_down=known_down,
                            delivered=delivered)
    if the_plan.error:
        log.warning("CallService on %s: %s; no call placed", chan.name, the_plan.error)
    progress = opts.progress_timeout if opts.progress_timeout is not None else s.progress_timeout
    answer = opts.answer_timeout if opts.answer_timeout is not None else s.answer_timeout
    leg = _LegWatch(legs_before)
    redirected = False

    def dial(step: routing.Step, used: int) -> routing.Outcome:
        nonlocal redirected
        where = f"CallService {exten} on {chan.name}: SOP {step.sop}"
        px.verbose(f"{where}: {step.kind.value.lower() if step.kind else ''} delivery", 3)
        if step.kind is routing.Kind.LOCAL:
            meta = codec.CallMeta.local(s.local_sop, exten, visited, used)
            if opts.redirect_local:
                outcome = _redirect(chan, exten, s, meta, params)
                redirected = outcome.disposition is routing.Disposition.FINAL
            else:
                outcome = _dial_local(chan, step, exten, s, meta, params, answer)
        else:
            meta = codec.CallMeta.outbound(s.local_sop, exten, visited, used)
            outcome = _dial_remote(chan, step, exten, s, meta, params, progress, answer, leg)
        if outcome.disposition is routing.Disposition.LOCAL:
            log.warning("%s: this node could not place the call (no outgoing channel could be "
                        "created or called here; see the errors above); %s is not counted as "
                        "failed", where, step.sop)
        px.verbose(f"{where}: {outcome.label} ({outcome.disposition.value.lower()})", 3)
        return outcome

    for step in the_plan.skipped:
        if step.skip in _LOGGED_SKIPS:
            px.verbose(f"CallService {exten} on {chan.name}: SOP {step.sop}: {step.skip.value} "
                       "(skipped)", 3)
    result = routing.run(the_plan, _watching(chan, the_plan, dial), hop, cluster.max_hops)
    skipped = {step.sop for step in the_plan.skipped}
    for attempt in result.attempts:
        if attempt.sop not in skipped and attempt.outcome.label == routing.SkipReason.HOP_LIMIT:
            px.verbose(f"CallService {exten} on {chan.name}: SOP {attempt.sop}: HOP_LIMIT "
                       f"(refused: the legs sent reached max_hops {cluster.max_hops})", 3)
        counter = _counter(attempt.sop)
        if attempt.outcome.failover:
            counter.failovers += 1
        elif attempt.outcome.disposition is routing.Disposition.FINAL:
            counter.routed += 1
        elif attempt.outcome.disposition is routing.Disposition.LOCAL:
            counter.local_failures += 1
    if not result.attempts:
        px.verbose(f"CallService {exten} on {chan.name}: {result.status.value}"
                   f"{': ' + result.error if result.error else ''}", 3)
    _set_result(chan, result, redirected)
    if found.came_from is not None and not redirected:
        _arm(chan, exten, routing.arm_code(result), found.armed)
    if chan.is_hungup():
        return -1
    return 0


DIRECTORY_MODULE = "dialplan_funcs.directory.service"
_directory = None   # the directory's service module once seen (its lookups survive reloads)


def _directory_sops(chan: px.Channel, exten: str) -> "tuple[str, str] | routing.RoutingResult":
    """(sop1, sop2) of ``exten`` from the cluster directory, or the result to set instead:
    NOTFOUND (not in the directory) or INVALIDARGS (no directory loaded). The directory is
    never imported from here (it is a module of its own, listed in pbx_python.conf)."""
    global _directory
    _directory = sys.modules.get(DIRECTORY_MODULE) or _directory
    if _directory is None or not _directory.loaded():
        error = ("no SOP given and the cluster directory is not loaded (add "
                 "dialplan_funcs.directory to modules in pbx_python.conf)")
        log.warning("CallService on %s: %s; no call placed", chan.name, error)
        return routing.RoutingResult(routing.Status.INVALIDARGS, None, (), error)
    entry = _directory.lookup(exten)
    if entry is None:
        error = f"extension {exten} is not in the cluster directory"
        log.warning("CallService on %s: no SOP given and %s; no call placed", chan.name, error)
        return routing.RoutingResult(routing.Status.NOTFOUND, None, (), error)
    px.verbose(f"CallService {exten} on {chan.name}: directory entry {entry.pattern}: "
               f"{entry.primary},{entry.secondary}", 3)
    return entry.primary, entry.secondary


_LOGGED_SKIPS = (routing.SkipReason.CAME_FROM, routing.SkipReason.VISITED,
                 routing.SkipReason.HOP_LIMIT, routing.SkipReason.KNOWN_DOWN,
                 routing.SkipReason.DELIVERED)


def _set_result(chan: px.Channel, result: routing.RoutingResult, redirected: bool = False) -> None:
    status = "REDIRECT" if redirected else result.status.value
    # reported first: the identity it reads would otherwise flush the assignments below, which
    # stay deferred to the application's return (one C call fewer)
    _report(chan, status, result)
    chan.set_vars({"CALLSERVICE_STATUS": status,
                   "CALLSERVICE_SOP": result.sop or "",
                   "CALLSERVICE_TRIED": result.tried})


def _arm(chan: px.Channel, exten: str, code: Optional[int], armed: str) -> None:
    """Make an unanswered inbound cluster call end with ``code`` rather than with a response
    its sender would fail over on (routing.arm_code): a hangup handler, pushed once per channel,
    reads the code from CALLSERVICE_REJECT."""
    if code is None:
        return
    chan.set_var(REJECT, str(code))
    if not armed:
        chan.set_var("CHANNEL(hangup_handler_push)", f"{PREDIAL_CONTEXT},{REJECT_EXTEN},1")
    px.verbose(f"CallService {exten} on {chan.name}: if this call ends unanswered, its sender "
               f"gets {code} (no failover)", 4)


def _preflight(chan: px.Channel, request: routing.Request,
               cluster: routing.Cluster) -> tuple[set[str], str]:
    """Remote SOPs of the request whose trunk Asterisk already knows is unavailable (qualify),
    and the caller's HANGUPCAUSE_KEYS() before any leg is dialled: one C call."""
    remote = [sop for sop in dict.fromkeys((request.sop1, request.sop2))
              if sop and sop != cluster.local_sop and sop in cluster.sops]
    if not remote:
        return set(), ""
    *states, keys = chan.eval_each(*(f"${{DEVICE_STATE(PJSIP/{cluster.endpoint(sop)})}}"
                                     for sop in remote), "${HANGUPCAUSE_KEYS()}")
    return {sop for sop, state in zip(remote, states) if state == "UNAVAILABLE"}, keys


class _LegWatch:
    """Finds the channel a Dial created, from the caller's HANGUPCAUSE_KEYS() (the channels
    that sent a SIP response): the one that was not there before."""

    def __init__(self, keys: str) -> None:
        self.keys = set(keys.split(","))

    def new_leg(self, keys: str, endpoint: str) -> Optional[str]:
        after = set(keys.split(","))
        pattern = re.compile(rf"PJSIP/{re.escape(endpoint)}-[0-9a-f]{{8}}")
        new = [k for k in after - self.keys if pattern.fullmatch(k)]
        self.keys = after
        return new[0] if len(new) == 1 else None


def _local_variables(meta: codec.CallMeta, params: tuple[str, ...]) -> dict[str, str]:
    return {IN_STATE: "local", IN_FROM: "", IN_ORIGIN: meta.origin, IN_PATH: ";".join(meta.path),
            IN_HOP: str(meta.hop), IN_EXTEN: meta.exten, **dict(zip(IN_PARAMS, params))}


def _redirect(chan: px.Channel, exten: str, s: Settings, meta: codec.CallMeta,
              params: tuple[str, ...]) -> routing.Outcome:
    """Option r: continue this channel in the local service (no new channel)."""
    if chan.eval(f"${{DIALPLAN_EXISTS({s.service_context},{exten},1)}}") != "1":
        return routing.Outcome(routing.Disposition.FAILOVER, "NOTHERE", sent=False)
    chan.set_vars(_local_variables(meta, params))
    chan.exec_app("Goto", f"{s.service_context},{exten},1")
    return routing.Outcome(routing.Disposition.FINAL, "REDIRECT", routing.Status.ANSWER)


def _dial_local(chan: px.Channel, step: routing.Step, exten: str, s: Settings,
                meta: codec.CallMeta, params: tuple[str, ...],
                answer: Optional[float]) -> routing.Outcome:
    """Deliver into the local service through a Local channel; classify its outcome as the same
    service's end would be classified on a remote SOP (routing.classify_local).

    The Local leg's hangup cause: Local channels send no cause codes, so HANGUPCAUSE_KEYS()
    never lists them, but when the leg ends by itself Dial copies its cause to the caller's
    HANGUPCAUSE. It is taken as the leg's when it changed during the Dial (read before and
    after); an unchanged one may be an earlier call's, and is not used.
    """
    payload = codec.local_leg(meta, params)
    target = routing.dial_string(step, exten, s.cluster, s.service_context)
    before = chan.eval_each("${HANGUPCAUSE}")[0]
    chan.exec_app("Dial", f"{target},{_seconds(answer)},b({PREDIAL_CONTEXT}^s^1({payload}))")
    status, ring, prog, after, answered = chan.eval_each(
        "${DIALSTATUS}", "${RINGTIME}", "${PROGRESSTIME}", "${HANGUPCAUSE}", "${ANSWEREDTIME_MS}")
    _note_answer(status, answered)
    cause = routing.local_leg_cause(before, after)
    if status == "CHANUNAVAIL" and not (ring or prog) and cause is None:
        # The Local channel could not be created or started (or the service is missing).
        exists = chan.eval_each(f"${{DIALPLAN_EXISTS({s.service_context},{exten},1)}}")[0]
        if exists != "1":
            return routing.local_not_here()
        return routing.local_failure()
    return routing.classify_local(status, cause, progressed=bool(ring or prog))


def _dial_remote(chan: px.Channel, step: routing.Step, exten: str, s: Settings,
                 meta: codec.CallMeta, params: tuple[str, ...], progress: float,
                 answer: Optional[float], leg: _LegWatch) -> routing.Outcome:
    """Dial a remote SOP's trunk with the X-CallService headers, and classify the result."""
    headers = codec.encode_headers(meta, params, s.secret)
    payload = codec.remote_leg(headers)
    timeout = f"{_seconds(answer)}^{_seconds(progress)}" if progress else _seconds(answer)
    target = routing.dial_string(step, exten, s.cluster, s.service_context)
    started = time.monotonic()
    chan.exec_app("Dial", f"{target},{timeout},b({PREDIAL_CONTEXT}^s^1({payload}))")
    elapsed = time.monotonic() - started
    status, ring, prog, keys, answered = chan.eval_each("${DIALSTATUS}", "${RINGTIME}",
                                                        "${PROGRESSTIME}",
                                                        "${HANGUPCAUSE_KEYS()}",
                                                        "${ANSWEREDTIME_MS}")
    _note_answer(status, answered)
    progressed = bool(ring or prog)
    endpoint = s.cluster.endpoint(step.sop)
    name = leg.new_leg(keys, endpoint)
    if status in ("ANSWER", "CANCEL"):
        return routing.classify_dial(status, None, None, progressed=progressed)
    cause = tech = ""
    if name:   # only a leg that sent a response has a cause (others would log a WARNING)
        cause, tech = chan.eval_each(f"${{HANGUPCAUSE({name},ast)}}",
                                     f"${{HANGUPCAUSE({name},tech)}}")
    if routing.never_sent(status, tech or None, progressed, elapsed, progress):
        state = chan.eval_each(f"${{DEVICE_STATE(PJSIP/{endpoint})}}")[0]
        if state == "UNAVAILABLE" or not _has_usable_contact(chan, endpoint):
            # no reachable contact when the channel was requested: chan_pjsip refuses to dial
            # ("Could not create dialog"); device state follows contact status asynchronously,
            # so a node qualify has just marked down is recognised by its contacts
            return routing.Outcome(routing.Disposition.FAILOVER, "UNREACHABLE", sent=False)
        return routing.local_failure()
    return routing.classify_dial(status, cause or None, tech or None, progressed=progressed)


def _has_usable_contact(chan: px.Channel, endpoint: str) -> bool:
    """Whether the endpoint has a contact chan_pjsip would dial (one qualify has not marked
    Unreachable). Read only when a leg could not be placed (the failure path)."""
    aors = chan.func_read_each(f"PJSIP_ENDPOINT({endpoint},aors)")[0] or ""
    names = [a.strip() for a in aors.split(",") if a.strip()]
    if not names:
        return False
    contacts = [c.strip() for value in chan.func_read_each(*(f"PJSIP_AOR({a},contact)"
                                                            for a in names))
                for c in (value or "").split(",") if c.strip()]
    if not contacts:
        return False
    statuses = chan.func_read_each(*(f"PJSIP_CONTACT({c},status)" for c in contacts))
    return any(status != "Unreachable" for status in statuses)


def _seconds(value: Optional[float]) -> str:
    return "" if not value else f"{value:g}"


# ---------------------------------------------------------------------------- handlers

@px.application("CallServicePreDial", synopsis="Internal to CallService: prepares an outgoing leg",
                syntax="CallServicePreDial(data)",
                description="Run by CallService as Dial's pre-dial handler on each outgoing "
                            "channel: adds the X-CallService headers (remote SOP) or the "
                            "CALLSERVICE_IN* variables (local delivery) given in its argument. "
                            "Not for direct use.")
def predial(chan: px.Channel, payload: str = "") -> int:
    try:
        try:
            leg = codec.parse_leg(payload)
        except codec.CallServiceError:
            # The priority's ${ARG1} is cut at 4 kB (VAR_BUF_SIZE) by Asterisk's substitution
            # of application data: large parameters are read again, whole, from the variable.
            full = chan.eval_each("${ARG1}")[0]
            if full == payload:
                raise
            leg = codec.parse_leg(full)
    except codec.CallServiceError as exc:
        # Never let the leg go out without what CallService meant it to carry.
        log.error("CallServicePreDial on %s: %s; the leg is hung up (not run by CallService?)",
                  chan.name, exc)
        chan.exec_app("Hangup", "")
        return 0
    if leg.meta is not None:
        chan.set_vars(_local_variables(leg.meta, leg.params))
    # Deferred: applied in one batch when this callback returns (function writes).
    for name, value in leg.headers:
        chan.set_var(f"PJSIP_HEADER(add,{name})", value)
    return 0


@px.application("CallServiceReject", synopsis="Internal to CallService: the response of an "
                "inbound cluster call that must not be failed over",
                syntax="CallServiceReject()",
                description="Run by CallService as a hangup handler on an inbound call from a "
                            "cluster SOP after it refused SOPs for a loop or used legs of its "
                            "own: if the call ends unanswered with a response the sender would "
                            "fail over on, answers CALLSERVICE_REJECT (482 or 483) instead, with "
                            "PJSIPHangup. Not for direct use.")
def reject(chan: px.Channel, *args: str) -> int:
    state, cause, source, armed, status = chan.eval_each(
        "${CHANNEL(state)}", "${HANGUPCAUSE}", "${CHANNEL(hangupsource)}", f"${{{REJECT}}}",
        "${CALLSERVICE_STATUS}")
    if state == "Up" or not armed.isdigit() or source == chan.name:
        return 0    # answered, not armed, or ended by the caller (nothing to answer)
    code = routing.reject_response(int(armed), cause, status)
    if code is not None:
        px.verbose(f"CallService on {chan.name}: answering {code} instead of the response for "
                   f"cause {cause or 0}: the sender must not fail over", 3)
        chan.exec_app("PJSIPHangup", str(code))
    return 0


# ---------------------------------------------------------------------------- CLI

@px.cli_command("callservice show sops", summary="Show the cluster SOPs as CallService sees them",
                usage="Usage: callservice show sops\n"
                      "       Each SOP of [callservice] in pbx_python.conf: local or remote, its "
                      "PJSIP endpoint,\n       reachability as qualify sees it (status, RTT), "
                      "and the calls CallService routed\n       to it and failed over from it. "
                      "Calls this node could not place itself\n       (LOCAL_FAILURE: no RTP "
                      "port, channel limits) are counted apart: they say\n       nothing about "
                      "the SOP.\n")
def show_sops(argv: list[str]) -> str:
    s = settings()
    rows = [("SOP", "Role", "Endpoint", "Device state", "Contact status", "RTT ms", "Routed",
             "Failovers")]
    local_failures = 0
    for sop in s.sops:
        counter = _counter(sop)
        local_failures += counter.local_failures
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
    return ("\n".join(lines) + f"\n{len(s.sops)} SOP(s); local SOP {s.local_sop}; "
            f"{local_failures} leg(s) this node could not place itself (LOCAL_FAILURE, not "
            "counted as failovers)\n")


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
