"""Parse the ``[callservice]`` section of pbx_python.conf.

The C side reads the file with Asterisk's config parser and passes the section as a list of
(key, value) pairs. Keys:

    local_sop         required; this node's SOP name (must be listed in ``sops``)
    sops              required; comma list of ALL cluster SOPs, this one included, so the
                      same line can be copied to every node. Each remote SOP is also the
                      name of the PJSIP endpoint that reaches it, unless overridden:
    endpoint.<sop>    PJSIP endpoint for a remote SOP, e.g. ``endpoint.sopB = trunk-b``
    service_context   required; dialplan context where local services run
    progress_timeout  seconds, default 2.0; 0 disables (then a dead node costs timer B)
    answer_timeout    seconds, default none (no limit); 0 also means no limit
    max_hops          CallService SIP legs (INVITEs) one routed call may cause on all nodes
                      together, failed legs included, default 2 (1..16); see routing.py
    secret            optional shared HMAC secret (>= 16 characters); when set, inbound
                      CallService headers must carry a valid signature

Why max_hops defaults to 2: loops are already prevented by the path and came-from rules
while headers survive, so the hop limit is a backstop that bounds setup delay. It counts
every leg, failovers included, so 1 would forbid both a failover to sop2 after a leg to
sop1 was sent and any re-route by the node that received the call (service chaining across
SOPs); 2 allows one of them and caps the worst case at two SIP legs (two progress timeouts).
Operators who want "a node that receives a CallService call never re-routes it" while
keeping failover set 2 and route received calls with plain Dial, or raise it for chains.

Unknown or repeated keys are errors (a typo must not silently change routing). All problems
are collected and reported together in one SettingsError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from .codec import CallServiceError, InvalidNameError, validate_sop_name
from .options import MAX_ANSWER_TIMEOUT, MAX_PROGRESS_TIMEOUT, SECONDS_RE
from .routing import DEFAULT_MAX_HOPS, Cluster

DEFAULT_PROGRESS_TIMEOUT = 2.0
MAX_MAX_HOPS = 16
MIN_SECRET_CHARS = 16
ENDPOINT_PREFIX = "endpoint."

_CONTEXT_RE = re.compile(r"[A-Za-z0-9_.+-]{1,79}")
_ENDPOINT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SCALAR_KEYS = (
    "local_sop", "sops", "service_context", "progress_timeout", "answer_timeout",
    "max_hops", "secret",
)


class SettingsError(CallServiceError):
    """The [callservice] section is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid [callservice] settings: " + "; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Settings:
    local_sop: str
    sops: tuple[str, ...]
    service_context: str
    progress_timeout: float = DEFAULT_PROGRESS_TIMEOUT
    answer_timeout: float | None = None
    max_hops: int = DEFAULT_MAX_HOPS
    secret: str | None = field(default=None, repr=False)
    endpoints: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def cluster(self) -> Cluster:
        return Cluster(
            local_sop=self.local_sop, sops=frozenset(self.sops), max_hops=self.max_hops,
            endpoints=dict(self.endpoints),
        )

    def endpoint_for(self, sop: str) -> str:
        """PJSIP endpoint that reaches ``sop``."""
        return self.endpoints.get(sop, sop)


def parse_settings(pairs: Iterable[tuple[str, str]]) -> Settings:
    """Validate the (key, value) pairs of the section and build Settings."""
    errors: list[str] = []
    values: dict[str, str] = {}
    endpoint_pairs: dict[str, str] = {}
    for raw_key, raw_value in pairs:
        key, value = raw_key.strip(), raw_value.strip()
        if key.startswith(ENDPOINT_PREFIX):
            target, sop = endpoint_pairs, key[len(ENDPOINT_PREFIX):]
        elif key in _SCALAR_KEYS:
            target, sop = values, key
        else:
            errors.append(f"unknown key {key!r}")
            continue
        if sop in target:
            errors.append(f"key {key!r} is given more than once")
            continue
        target[sop] = value

    local_sop = _required_sop(values, "local_sop", errors)
    sops = _sop_list(values, errors)
    if local_sop and sops and local_sop not in sops:
        errors.append(f"local_sop {local_sop!r} is not listed in sops ({', '.join(sops)})")
    service_context = values.get("service_context", "")
    if not service_context:
        errors.append("service_context is required")
    elif not _CONTEXT_RE.fullmatch(service_context):
        errors.append(
            f"service_context {service_context!r} is invalid: use 1-79 of A-Z a-z 0-9 _ . + -"
        )

    progress = _seconds(
        values, "progress_timeout", DEFAULT_PROGRESS_TIMEOUT, MAX_PROGRESS_TIMEOUT, errors
    )
    answer = _seconds(values, "answer_timeout", None, MAX_ANSWER_TIMEOUT, errors)
    max_hops = _max_hops(values, errors)
    secret = _secret(values, errors)
    endpoints = _endpoints(endpoint_pairs, sops, local_sop, errors)

    if errors:
        raise SettingsError(errors)
    return Settings(
        local_sop=local_sop, sops=sops, service_context=service_context,
        progress_timeout=progress if progress is not None else DEFAULT_PROGRESS_TIMEOUT,
        answer_timeout=answer or None, max_hops=max_hops, secret=secret, endpoints=endpoints,
    )


def _required_sop(values: dict[str, str], key: str, errors: list[str]) -> str:
    value = values.get(key, "")
    if not value:
        errors.append(f"{key} is required")
        return ""
    try:
        return validate_sop_name(value, key)
    except InvalidNameError as exc:
        errors.append(str(exc))
        return ""


def _sop_list(values: dict[str, str], errors: list[str]) -> tuple[str, ...]:
    raw = values.get("sops", "")
    if not raw:
        errors.append("sops is required (comma list of every cluster SOP, this one included)")
        return ()
    sops: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            errors.append(f"sops {raw!r} has an empty entry")
            continue
        try:
            validate_sop_name(item, "sops entry")
        except InvalidNameError as exc:
            errors.append(str(exc))
            continue
        if item in sops:
            errors.append(f"sops lists {item!r} more than once")
            continue
        sops.append(item)
    return tuple(sops)


def _seconds(
    values: dict[str, str], key: str, default: float | None, limit: float, errors: list[str]
) -> float | None:
    raw = values.get(key)
    if raw is None:
        return default
    if not SECONDS_RE.fullmatch(raw):
        errors.append(f"{key} {raw!r} is not a number of seconds like 2 or 1.5")
        return default
    value = float(raw)
    if not math.isfinite(value) or value > limit:
        errors.append(f"{key} {raw} s is above the limit of {limit:g} s")
        return default
    return value


def _max_hops(values: dict[str, str], errors: list[str]) -> int:
    raw = values.get("max_hops")
    if raw is None:
        return DEFAULT_MAX_HOPS
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_MAX_HOPS:
        errors.append(f"max_hops {raw!r} must be an integer from 1 to {MAX_MAX_HOPS}")
        return DEFAULT_MAX_HOPS
    return int(raw)


def _secret(values: dict[str, str], errors: list[str]) -> str | None:
    if "secret" not in values:
        return None
    secret = values["secret"]
    if len(secret) < MIN_SECRET_CHARS:
        # Never echo the secret itself in an error message.
        errors.append(
            f"secret is too short ({len(secret)} characters); use at least {MIN_SECRET_CHARS}"
        )
        return None
    return secret


def _endpoints(
    pairs: dict[str, str], sops: tuple[str, ...], local_sop: str, errors: list[str]
) -> dict[str, str]:
    endpoints: dict[str, str] = {}
    for sop, endpoint in pairs.items():
        key = ENDPOINT_PREFIX + sop
        if sop not in sops:
            errors.append(f"{key}: {sop!r} is not listed in sops")
        elif sop == local_sop:
            errors.append(f"{key}: the local SOP is not dialled, so it has no endpoint")
        elif not _ENDPOINT_RE.fullmatch(endpoint):
            errors.append(
                f"{key}: endpoint {endpoint!r} is invalid: use 1-64 of A-Z a-z 0-9 _ . -"
            )
        else:
            endpoints[sop] = endpoint
    used: dict[str, str] = {}
    for sop in sops:
        if sop == local_sop:
            continue
        endpoint = endpoints.get(sop, sop)
        if endpoint in used:
            errors.append(f"SOPs {used[endpoint]!r} and {sop!r} both use endpoint {endpoint!r}")
        used.setdefault(endpoint, sop)
    return endpoints
