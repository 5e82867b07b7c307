"""CallService routing decisions as pure functions: plan, classify each Dial, final status.

The glue that talks to Asterisk does only I/O: it builds a Plan, dials each candidate step
(or calls ``run`` with a dial callback), feeds Dial's results to ``classify_dial`` and sets
the status variables from the result. No Asterisk or cffi imports here.

Loop rules (the vendor's 1.02 bug: primary down, call sent to the secondary, whose callflow
runs CallService again for the same extension):

* the LOCAL SOP is always a candidate: local delivery sends no SIP, so it cannot loop
  between nodes. In particular node B, reached from A, asked for sop1=A sop2=B, refuses A
  (came from there) and delivers locally - whether or not B is listed in ``visited``.
* a REMOTE SOP is refused when it is the SOP the call came from (CAME_FROM), is in the
  visited path (VISITED), or when the SIP legs already used reach ``max_hops`` (HOP_LIMIT) -
  checked in that order.
* when every non-empty, non-duplicate candidate was refused for a loop reason, the status is
  LOOP. A known-down SOP counts as a node-level failure instead (UNAVAILABLE).

What max_hops counts: the CallService SIP legs (INVITEs) one routed call causes, on every node,
failed legs included. Each leg carries ``h`` = the legs used so far, itself included: the legs
along its path and every failed leg before it (a failover leg counts the leg that failed). A
node sends no leg whose ``h`` would exceed max_hops (``run`` checks it before each remote
step). A node that received the call over a CallService leg and then used or refused legs
itself makes sure the sender spends no more: it answers 482 (loop) or 483 (legs used
downstream) instead of any response the sender would fail over on (``reject_response``), and
the sender takes 482/483 as final (``classify_dial``). So the legs of the whole routing tree
stay within max_hops.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from .codec import CallMeta, InvalidNameError, validate_extension, validate_sop_name

#: Default limit of CallService SIP legs per call (see settings.py for the reasoning).
DEFAULT_MAX_HOPS = 2


class Kind(StrEnum):
    LOCAL = "LOCAL"    # deliver into the local service context
    REMOTE = "REMOTE"  # dial the SOP's PJSIP trunk endpoint


class SkipReason(StrEnum):
    EMPTY = "EMPTY"              # slot not given
    DUPLICATE = "DUPLICATE"      # sop2 == sop1
    UNKNOWN_SOP = "UNKNOWN_SOP"  # not a cluster SOP: the whole call is INVALIDARGS
    CAME_FROM = "CAME_FROM"      # loop: the SOP that sent us this call
    VISITED = "VISITED"          # loop: already on the call's path
    HOP_LIMIT = "HOP_LIMIT"      # loop: hop >= max_hops
    KNOWN_DOWN = "KNOWN_DOWN"    # qualify says unreachable: node-level failure, not dialled
    DELIVERED = "DELIVERED"      # loop: CallService already delivered this call here for this exten


LOOP_REASONS = frozenset({SkipReason.CAME_FROM, SkipReason.VISITED, SkipReason.HOP_LIMIT,
                          SkipReason.DELIVERED})


class Status(StrEnum):
    """Value of the CallService status variable (the callflow's exits)."""

    ANSWER = "ANSWER"
    BUSY = "BUSY"
    NOANSWER = "NOANSWER"
    CANCEL = "CANCEL"
    UNAVAILABLE = "UNAVAILABLE"
    LOOP = "LOOP"
    INVALIDARGS = "INVALIDARGS"
    NOTFOUND = "NOTFOUND"    # no SOP given and the extension is not in the cluster directory


class Disposition(StrEnum):
    FINAL = "FINAL"        # routing stops; Outcome.status is the call's status
    FAILOVER = "FAILOVER"  # node-level failure: try the next candidate
    REFUSED = "REFUSED"    # not attempted, to avoid a loop
    LOCAL = "LOCAL"        # this node could not place the leg (its own resources): try the
                           # next candidate; the SOP is not counted as failed


#: Label of a LOCAL outcome: no outgoing channel could be created or called on this node.
LOCAL_FAILURE = "LOCAL_FAILURE"


# ---------------------------------------------------------------------------- plan

@dataclass(frozen=True)
class Request:
    """The CallService arguments that drive routing (parameters are not needed here)."""

    exten: str
    sop1: str
    sop2: str = ""


@dataclass(frozen=True)
class Cluster:
    """This node's view of the cluster. ``endpoints`` overrides SOP -> PJSIP endpoint."""

    local_sop: str
    sops: frozenset[str]
    max_hops: int = DEFAULT_MAX_HOPS
    endpoints: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.local_sop not in self.sops:
            raise ValueError(f"local SOP {self.local_sop!r} is not one of the cluster SOPs")
        if type(self.max_hops) is not int or self.max_hops < 1:
            raise ValueError("max_hops must be an integer >= 1")

    def endpoint(self, sop: str) -> str:
        """PJSIP endpoint that reaches ``sop`` (the SOP name unless overridden)."""
        return self.endpoints.get(sop, sop)

    def sop_for_endpoint(self, endpoint: str) -> str | None:
        """Which remote SOP an inbound trunk endpoint belongs to (None: not a cluster trunk)."""
        for sop in self.sops:
            if sop != self.local_sop and self.endpoint(sop) == endpoint:
                return sop
        return None


@dataclass(frozen=True)
class Step:
    """One slot of the request: either a candidate (``kind`` set) or skipped (``skip`` set)."""

    slot: int
    sop: str
    kind: Kind | None = None
    skip: SkipReason | None = None


@dataclass(frozen=True)
class Plan:
    """Ordered steps (slot 1 then slot 2). ``error`` set means INVALIDARGS, place no call."""

    steps: tuple[Step, ...]
    error: str | None = None

    @property
    def candidates(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.kind is not None)

    @property
    def skipped(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.skip is not None)


def plan(
    request: Request,
    cluster: Cluster,
    came_from: str | None,
    visited: Sequence[str],
    hop: int,
    known_down: Collection[str] = (),
    delivered: bool = False,
) -> Plan:
    """Decide which of sop1/sop2 to try, in order, and why any is skipped.

    ``delivered``: CallService already delivered this very call to this SOP for the same
    extension (the service's callflow runs CallService again, e.g. on the secondary while the
    primary is down). Routing it again could only bounce it or re-enter the service, so every
    SOP is refused (status LOOP) and the callflow goes on locally.

    ``came_from``: SOP whose trunk delivered this call (None when not from a cluster trunk).
    ``visited``: SOPs already on the call's path; ``hop``: CallService SIP legs so far.
    ``known_down``: remote SOPs qualify reports unreachable (checked last).
    Surrounding whitespace of the arguments is ignored.
    """
    exten = request.exten.strip()
    try:
        validate_extension(exten)
    except InvalidNameError as exc:
        return Plan(steps=(), error=str(exc))

    steps: list[Step] = []
    errors: list[str] = []
    seen: set[str] = set()
    for slot, raw in ((1, request.sop1), (2, request.sop2)):
        sop = raw.strip()
        if not sop:
            steps.append(Step(slot, sop, skip=SkipReason.EMPTY))
            continue
        if sop not in cluster.sops:
            steps.append(Step(slot, sop, skip=SkipReason.UNKNOWN_SOP))
            errors.append(_unknown_sop_message(slot, sop))
            continue
        if sop in seen:
            steps.append(Step(slot, sop, skip=SkipReason.DUPLICATE))
            continue
        seen.add(sop)
        if delivered:
            steps.append(Step(slot, sop, skip=SkipReason.DELIVERED))
            continue
        steps.append(_decide(slot, sop, cluster, came_from, visited, hop, known_down))

    if errors:
        return Plan(steps=tuple(steps), error="; ".join(errors))
    if not seen:
        return Plan(steps=tuple(steps), error="no SOP given: Sop1 and Sop2 are both empty")
    return Plan(steps=tuple(steps))


def _unknown_sop_message(slot: int, sop: str) -> str:
    try:
        validate_sop_name(sop, f"Sop{slot}")
    except InvalidNameError as exc:
        return str(exc)
    return f"Sop{slot} {sop!r} is not a cluster SOP"


def _decide(
    slot: int,
    sop: str,
    cluster: Cluster,
    came_from: str | None,
    visited: Sequence[str],
    hop: int,
    known_down: Collection[str],
) -> Step:
    if sop == cluster.local_sop:
        return Step(slot, sop, kind=Kind.LOCAL)
    if sop == came_from:
        return Step(slot, sop, skip=SkipReason.CAME_FROM)
    if sop in visited:
        return Step(slot, sop, skip=SkipReason.VISITED)
    if hop >= cluster.max_hops:
        return Step(slot, sop, skip=SkipReason.HOP_LIMIT)
    if sop in known_down:
        return Step(slot, sop, skip=SkipReason.KNOWN_DOWN)
    return Step(slot, sop, kind=Kind.REMOTE)


def loop_state(
    came_from: str | None, meta: CallMeta | None
) -> tuple[str | None, tuple[str, ...], int]:
    """(came_from, visited, hop) for plan() from the trunk SOP and any decoded metadata.

    A call from a cluster trunk without usable metadata still counts as one hop from that
    SOP (conservative: the headers may have been stripped or failed verification).
    """
    if meta is None:
        if came_from is None:
            return None, (), 0
        return came_from, (came_from,), 1
    source = came_from if came_from is not None else meta.origin
    visited = meta.path if source in meta.path else meta.path + (source,)
    return source, visited, meta.hop


def dial_string(step: Step, exten: str, cluster: Cluster, service_context: str) -> str:
    """Dial() target for a candidate step (inputs are validated, so no injection).

    LOCAL uses ``Local/<exten>@<service_context>/n``: /n keeps the Local pair so DIALSTATUS
    and the channel variables carrying the parameters survive until the service reads them.
    REMOTE uses ``PJSIP/<exten>@<endpoint>`` (exten as the Request-URI user).
    """
    validate_extension(exten)
    if step.kind is Kind.LOCAL:
        return f"Local/{exten}@{service_context}/n"
    if step.kind is Kind.REMOTE:
        return f"PJSIP/{exten}@{cluster.endpoint(step.sop)}"
    raise ValueError(f"step for {step.sop!r} is not a candidate ({step.skip})")


# ---------------------------------------------------------------------------- outcomes

@dataclass(frozen=True)
class Outcome:
    """Result of one step. ``label`` is the token used in the tried variable."""

    disposition: Disposition
    label: str
    status: Status | None = None  # set iff disposition is FINAL
    # The step reached something: for a remote step a SIP leg (INVITE) may have left this node
    # (it counts for max_hops); for the local SOP a local delivery was placed.
    sent: bool = True

    @property
    def failover(self) -> bool:
        """A node-level failure of the SOP (counted in its failovers)."""
        return self.disposition is Disposition.FAILOVER


def local_failure() -> Outcome:
    """The outcome of a step this node could not place (see Disposition.LOCAL)."""
    return Outcome(Disposition.LOCAL, LOCAL_FAILURE, sent=False)


def _final(status: Status, label: str | None = None) -> Outcome:
    return Outcome(Disposition.FINAL, label or status.value, status)


def _failover(label: str) -> Outcome:
    return Outcome(Disposition.FAILOVER, label)


def skip_outcome(reason: SkipReason) -> Outcome | None:
    """Outcome recorded for a skipped step; None for EMPTY/DUPLICATE/UNKNOWN_SOP (unrecorded)."""
    if reason in LOOP_REASONS:
        return Outcome(Disposition.REFUSED, reason.value, sent=False)
    if reason is SkipReason.KNOWN_DOWN:
        return Outcome(Disposition.FAILOVER, reason.value, sent=False)
    return None


_SIP_CODE_RE = re.compile(r"\s*SIP\s+([1-6][0-9]{2})\b")
SIP_LOOP_DETECTED = 482
SIP_TOO_MANY_HOPS = 483
_SIP_NOT_FOUND = 404       # chan_pjsip's answer when the service extension does not exist
_SIP_CONGESTION = 503      # chan_pjsip's answer to Congestion() (AST_CONTROL_CONGESTION)
_DIALSTATUS_FINAL = {
    "ANSWER": Status.ANSWER,
    "BUSY": Status.BUSY,
    "NOANSWER": Status.NOANSWER,
    "CANCEL": Status.CANCEL,
    "DONTCALL": Status.BUSY,  # privacy manager: callee sent the caller away
    "TORTURE": Status.BUSY,
}


def sip_code(tech_cause: str | None) -> int | None:
    """The SIP status code in a ``HANGUPCAUSE(<chan>,tech)`` text like "SIP 404 Not Found"."""
    if not tech_cause:
        return None
    m = _SIP_CODE_RE.match(tech_cause)
    return int(m.group(1)) if m else None


def _cause_number(hangupcause: str | int | None) -> int | None:
    if isinstance(hangupcause, int):
        return hangupcause
    if hangupcause and hangupcause.strip().isdigit():
        return int(hangupcause.strip())
    return None  # absent or not a number: ignored


def classify_dial(
    dialstatus: str,
    hangupcause: str | int | None,
    tech_cause: str | None,
    *,
    progressed: bool = False,
) -> Outcome:
    """Map one Dial() result to FINAL (call-level) or FAILOVER (node-level).

    ``hangupcause``: Asterisk cause number of the dialled channel (``HANGUPCAUSE(<chan>,ast)``).
    ``tech_cause``: ``HANGUPCAUSE(<chan>,tech)``, e.g. "SIP 480 Temporarily Unavailable".
    ``progressed``: the dialled leg sent ringing/progress (RINGTIME or PROGRESSTIME non-empty).

    Order: ANSWER and CANCEL always win; then the SIP code, when there is one; then DIALSTATUS
    and the Asterisk cause. SIP mapping: 486/600 -> BUSY; 603 -> BUSY labelled DECLINED;
    408/480 after progress -> NOANSWER (the remote callflow rang and gave up); 487 -> decided
    by DIALSTATUS (we cancelled it); 482 Loop Detected / 483 Too Many Hops -> LOOP (the next
    node refused the call for a loop, or used the legs max_hops allows: no failover may add
    more); any other 4xx/5xx/6xx -> FAILOVER labelled SIP<code>.
    Without a SIP code: CHANUNAVAIL (no reachable contact, cause 3; progress timeout) ->
    FAILOVER UNREACHABLE; CONGESTION -> FAILOVER; BUSY/NOANSWER -> final; INVALIDARGS and
    unknown -> FAILOVER. The Asterisk cause does not decide a remote leg (its SIP code says
    what the node answered); a local delivery is classified by ``classify_local``.
    """
    status = (dialstatus or "").strip().upper()
    if status in ("ANSWER", "CANCEL"):
        return _final(_DIALSTATUS_FINAL[status])

    code = sip_code(tech_cause)
    if code is not None and code >= 400 and code != 487:
        if code in (486, 600):
            return _final(Status.BUSY)
        if code == 603:
            return _final(Status.BUSY, "DECLINED")
        if progressed and code in (408, 480):
            return _final(Status.NOANSWER)
        if code in (SIP_LOOP_DETECTED, SIP_TOO_MANY_HOPS):
            return _final(Status.LOOP, f"SIP{code}")
        return _failover(f"SIP{code}")

    if status == "CHANUNAVAIL":
        return _failover("UNREACHABLE")
    if status == "CONGESTION":
        return _failover("CONGESTION")
    if status in _DIALSTATUS_FINAL:
        return _final(_DIALSTATUS_FINAL[status], status)
    if status == "INVALIDARGS":
        return _failover("DIALINVALID")
    return _failover("UNKNOWN")


def classify_local(dialstatus: str, cause: str | int | None, progressed: bool = False) -> Outcome:
    """Map the Dial result of a local delivery (Local channel) as ``classify_dial`` maps the same
    service reached on a remote SOP, so that a service ends the same way wherever it runs.

    A remote service's unanswered end reaches the caller as the SIP response chan_pjsip sends
    for its hangup cause (``sip_response_for_cause``: Hangup() 603, Hangup(21) 403, Hangup(17)
    486, Hangup(19) 480, ...); a local one is classified as that response would be.
    ``cause``: the Local leg's hangup cause when it ended by itself (None or 0 when Dial ended
    it, e.g. at the answer timeout, or when it is not known). Busy() and Congestion() only
    indicate: BUSY is final BUSY (486 on the wire), CONGESTION fails over as SIP503.
    A missing service extension is ``local_not_here()``.
    """
    status = (dialstatus or "").strip().upper()
    if status == "BUSY":
        return _final(Status.BUSY)
    if status == "CONGESTION":
        return _failover(f"SIP{_SIP_CONGESTION}")
    number = _cause_number(cause)
    if status in ("ANSWER", "CANCEL") or not number:
        return classify_dial(status, None, None, progressed=progressed)
    code = sip_response_for_cause(number)
    return classify_dial(status, number, f"SIP {code}", progressed=progressed)


def local_leg_cause(before: str | None, after: str | None) -> int | None:
    """The Local leg's own hangup cause from the caller's HANGUPCAUSE read before and after the
    Dial, or None. Dial copies a leg's cause to the caller only when the leg ends by itself
    (not at its answer timeout, not when the caller leaves): an unchanged value may be an
    earlier leg's and is not used; 0 (none) is no cause."""
    number = _cause_number(after)
    if not number or number == _cause_number(before):
        return None
    return number


def local_not_here() -> Outcome:
    """A local delivery to a service extension that does not exist on this SOP: what a remote
    SOP answers for it (404, a node-level failure: the next SOP is tried). No leg was placed."""
    return Outcome(Disposition.FAILOVER, f"SIP{_SIP_NOT_FOUND}", sent=False)


def never_sent(dialstatus: str, tech_cause: str | None, progressed: bool, elapsed: float,
               progress_timeout: float | None) -> bool:
    """Whether a remote leg's Dial result shows that no INVITE can have left this node.

    That is CHANUNAVAIL without any SIP response or progress, returned sooner than a silent SOP
    could end a Dial (its progress timeout; without one, SIP timer B, far longer than 1 s):
    Dial never waited on the leg, because the outgoing channel could not be created or called
    here (e.g. no RTP port), or because no reachable contact was found when it was requested.
    """
    if (dialstatus or "").strip().upper() != "CHANUNAVAIL" or progressed:
        return False
    if sip_code(tech_cause) is not None:
        return False
    return elapsed < (progress_timeout if progress_timeout else 1.0)


# ---------------------------------------------------------------------------- results

@dataclass(frozen=True)
class Attempt:
    """A step that was dialled, delivered locally, or recorded as skipped."""

    sop: str
    outcome: Outcome


def final_status(attempts: Sequence[Attempt]) -> tuple[Status, str | None]:
    """(status, sop) of the routing.

    The first FINAL attempt decides (its status and SOP). Otherwise LOOP when every recorded
    attempt was REFUSED for a loop reason, else UNAVAILABLE (every candidate failed at node
    level, was known down, or could not be placed here). No attempts at all means the plan was
    invalid: INVALIDARGS.
    """
    for attempt in attempts:
        if attempt.outcome.disposition is Disposition.FINAL:
            assert attempt.outcome.status is not None
            return attempt.outcome.status, attempt.sop
    if not attempts:
        return Status.INVALIDARGS, None
    if all(a.outcome.disposition is Disposition.REFUSED for a in attempts):
        return Status.LOOP, None
    return Status.UNAVAILABLE, None


def format_tried(attempts: Sequence[Attempt]) -> str:
    """``sop:LABEL`` entries in order, comma-separated, e.g. ``sopB:SIP503,sopC:ANSWER``.

    Labels: ANSWER BUSY DECLINED NOANSWER CANCEL DONTCALL TORTURE SIP482 SIP483 (final);
    UNREACHABLE CONGESTION SIP<code> DIALINVALID UNKNOWN KNOWN_DOWN NOTHERE (node-level; a
    local delivery's failures carry the SIP<code> a remote SOP would answer, see classify_local;
    NOTHERE: option r found no local service extension);
    LOCAL_FAILURE (this node could not place the leg); CAME_FROM VISITED HOP_LIMIT DELIVERED
    (loop refusals). Entries run in slot order up to the attempt that ended the routing;
    EMPTY, DUPLICATE and UNKNOWN_SOP slots are not listed. SOP names and labels never contain
    ':' or ','.
    """
    return ",".join(f"{a.sop}:{a.outcome.label}" for a in attempts)


@dataclass(frozen=True)
class RoutingResult:
    status: Status
    sop: str | None  # SOP whose attempt ended the routing (None unless a FINAL attempt)
    attempts: tuple[Attempt, ...]
    error: str | None = None  # the plan error when status is INVALIDARGS
    legs: int = 0  # SIP legs this routing sent (those that may have left this node)

    @property
    def tried(self) -> str:
        return format_tried(self.attempts)

    @property
    def reached(self) -> bool:
        """Whether any step reached a node or a local service (a SIP leg sent, or a local
        delivery placed): what happens there may use further legs."""
        return any(a.outcome.sent for a in self.attempts)


def run(routing_plan: Plan, dial: Callable[[Step, int], Outcome], hop: int = 0,
        max_hops: int | None = None) -> RoutingResult:
    """Walk the plan in order: record skips, ``dial`` candidates, stop at the first FINAL.

    ``dial(step, used)`` performs the Asterisk side for one candidate step, ``used`` being the
    SIP legs the call has used so far (a remote leg carries ``used + 1``), and returns its
    Outcome (normally from classify_dial). ``hop`` is the legs used before this routing; a
    remote step is refused (HOP_LIMIT) when ``hop`` plus the legs this routing has sent reach
    ``max_hops``. ``dial`` is never called for an invalid plan.
    """
    if routing_plan.error is not None:
        return RoutingResult(Status.INVALIDARGS, None, (), routing_plan.error)
    attempts: list[Attempt] = []
    legs = 0
    for step in routing_plan.steps:
        if step.skip is not None:
            outcome = skip_outcome(step.skip)
            if outcome is not None:
                attempts.append(Attempt(step.sop, outcome))
            continue
        if step.kind is Kind.REMOTE and max_hops is not None and hop + legs >= max_hops:
            attempts.append(Attempt(step.sop, Outcome(Disposition.REFUSED,
                                                      SkipReason.HOP_LIMIT.value, sent=False)))
            continue
        outcome = dial(step, hop + legs)
        if step.kind is Kind.REMOTE and outcome.sent:
            legs += 1
        attempts.append(Attempt(step.sop, outcome))
        if outcome.disposition is Disposition.FINAL:
            break
    status, sop = final_status(attempts)
    return RoutingResult(status, sop, tuple(attempts), legs=legs)


# ---------------------------------------------------------------------------- receiving side

#: chan_pjsip's hangup_cause2sip(): the final response an unanswered inbound PJSIP channel
#: sends for its hangup cause (any other cause, 16 normal clearing included: 603).
_CAUSE_TO_SIP = {
    1: 404, 2: 404, 3: 404, 17: 486, 18: 408, 19: 480, 20: 480, 21: 403, 22: 410, 23: 302,
    27: 502, 28: 484, 29: 501, 31: 480, 34: 503, 38: 500, 42: 503, 58: 488, 66: 503, 127: 500,
}


def sip_response_for_cause(cause: int | str | None) -> int:
    """The SIP final response chan_pjsip sends for a hangup cause on an unanswered call."""
    number = _cause_number(cause)
    return _CAUSE_TO_SIP.get(number or 0, 603)


def arm_code(result: RoutingResult) -> int | None:
    """On a call that arrived over a CallService leg: the response (482 or 483) this node must
    give instead of one the sender would fail over on, if the call ends unanswered; None when
    the sender may still fail over.

    482 when the routing ended LOOP for a loop reason (not when the only refusals say the
    call was already delivered here for this extension: the callflow serves it, and what it
    answers is the service's outcome). 483 when this routing reached further (a SIP leg, or a
    local delivery whose service may have routed too): the sender cannot know how many legs
    that used. Nothing after ANSWER or CANCEL (the call was answered, or the caller left).
    """
    if result.status in (Status.ANSWER, Status.CANCEL, Status.INVALIDARGS):
        return None
    if result.status is Status.LOOP:
        delivered_only = all(a.outcome.label == SkipReason.DELIVERED.value
                             for a in result.attempts)
        if not delivered_only:
            return SIP_LOOP_DETECTED
    if result.reached:
        return SIP_TOO_MANY_HOPS
    return None


def reject_response(armed: int, cause: int | str | None, status: str) -> int | None:
    """The response to send instead (``armed``), or None to leave the call's own response.

    The call's own response (from its hangup cause) stands when the sender takes it as final
    without failing over: 486 (BUSY), 603 (DECLINED, also Hangup() without a cause), and 408/480
    after a routing that ended NOANSWER (the sender saw the ringing it relayed).
    """
    own = sip_response_for_cause(cause)
    if own in (486, 600, 603) or (status == Status.NOANSWER.value and own in (408, 480)):
        return None
    return armed
