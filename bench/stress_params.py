"""What each call of the stress suite carries: four fuzzed CallService parameters and a route.

Pure and deterministic: the same (seed, call index) gives the same bytes on the node that sends
(bench/stress_px.py, loaded by pbx_python), on the node that receives, and in the harness
(bench/stress.py), so a run is reproduced by its seed.
"""
from __future__ import annotations

import hashlib
import random

SOPS = ("sopA", "sopB", "sopC")          # sopA takes the SIPp calls
ENTRY = SOPS[0]
MAX_PARAM_BYTES = 1024                   # CallService's documented limit per parameter

#: How a parameter's bytes are drawn (weights out of 100).
KINDS = {
    "bytes": 40,     # uniform over 0x01-0xFF: mostly not valid UTF-8, often holds 0x1F
    "utf8": 20,      # valid UTF-8 text, 1-4 byte characters
    "ascii": 20,     # printable ASCII 0x20-0x7E: , ; | " \ $ { } ( ) and the like
    "special": 20,   # separators, line breaks, control bytes, lone UTF-8 lead/continuation bytes
}
SPECIAL = b"\x1f\r\n\t\x01\x7f\x80\xbf\xc3\xed\xf0\xff,;|\"'\\${}()[]=:^&?% "


def _length(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.15:
        return 0
    if r < 0.30:
        return MAX_PARAM_BYTES
    if r < 0.40:
        return rng.randint(1, 16)
    return rng.randint(1, MAX_PARAM_BYTES - 1)


def _utf8(rng: random.Random, length: int) -> bytes:
    out = bytearray()
    while True:
        plane = rng.random()
        if plane < 0.005:
            cp = ord(rng.choice("\r\n\t"))
        elif plane < 0.4:
            cp = rng.randint(0x20, 0x7E)
        elif plane < 0.7:
            cp = rng.randint(0x80, 0x7FF)
        elif plane < 0.9:
            cp = rng.choice((rng.randint(0x800, 0xD7FF), rng.randint(0xE000, 0xFFFD)))
        else:
            cp = rng.randint(0x10000, 0x10FFFF)
        char = chr(cp).encode("utf-8")
        if len(out) + len(char) > length:
            return bytes(out)
        out += char


#: Parameter profiles: "bytes" (the default) draws every kind; "text" only valid UTF-8 text
#: without 0x1F, to load the cluster with calls that today's code can route (diagnosis).
PROFILES = {"bytes": KINDS, "text": {"utf8": 50, "ascii": 50}}


def param(rng: random.Random, profile: str = "bytes") -> tuple[str, bytes]:
    """One parameter: (kind, bytes), never a NUL, at most MAX_PARAM_BYTES bytes."""
    kinds = PROFILES[profile]
    kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
    length = _length(rng)
    if kind == "bytes":
        data = bytes(rng.randint(1, 255) for _ in range(length))
    elif kind == "utf8":
        data = _utf8(rng, length)
    elif kind == "ascii":
        data = bytes(rng.randint(0x20, 0x7E) for _ in range(length))
    else:
        data = bytes(rng.choice(SPECIAL) for _ in range(length))
    return kind, data


#: Share of calls whose parameters may hold 0x1F. Random bytes hold it so often that without
#: this nearly every call would have one, leaving few calls to show other kinds of defect.
WITH_1F = 0.3


def call(seed: int, idx: int, profile: str = "bytes") -> tuple[tuple[str, bytes], ...]:
    """The four (kind, bytes) parameters of call ``idx`` of the run with ``seed``."""
    rng = random.Random(f"pbx-python-stress:{seed}:{idx}")
    allow_1f = rng.random() < WITH_1F and profile == "bytes"
    drawn = [param(rng, profile) for _ in range(4)]
    if allow_1f:
        return tuple(drawn)
    return tuple((kind, data.replace(b"\x1f", b"\x1e")) for kind, data in drawn)


def params(seed: int, idx: int, profile: str = "bytes") -> tuple[bytes, bytes, bytes, bytes]:
    return tuple(data for _, data in call(seed, idx, profile))  # type: ignore[return-value]


def route(idx: int) -> tuple[str, str]:
    """(sop1, sop2) for call ``idx``: one call in ten is delivered on the entry SOP itself (a
    Local channel), the others go to sopB or sopC first and fail over to the other."""
    if idx % 10 == 0:
        return ENTRY, SOPS[1]
    return (SOPS[1], SOPS[2]) if idx % 2 else (SOPS[2], SOPS[1])


def digest(data: bytes) -> str:
    """Short fingerprint logged by the receiver and recomputed by the harness."""
    return hashlib.sha256(data).hexdigest()[:16]


def traits(data: bytes) -> list[str]:
    """What is notable about a parameter's bytes (to group mismatches by cause)."""
    out = []
    if not data:
        return ["empty"]
    if b"\x1f" in data:
        out.append("has 0x1F")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        out.append("not UTF-8")
    if b"\r" in data or b"\n" in data:
        out.append("has CR/LF")
    if len(data) == MAX_PARAM_BYTES:
        out.append("1024 bytes")
    if not out:
        out.append("plain")
    return out


#: Classes of calls, by the worst their four parameters hold (for the mismatch table).
CALL_CLASSES = ("a parameter has 0x1F", "a parameter is not UTF-8 (no 0x1F)",
                "a parameter has CR/LF (valid UTF-8, no 0x1F)", "plain UTF-8 only")


def call_class(params: "list[bytes]") -> str:
    joined = b"".join(params)
    if b"\x1f" in joined:
        return CALL_CLASSES[0]
    if any("not UTF-8" in traits(p) for p in params):
        return CALL_CLASSES[1]
    if b"\r" in joined or b"\n" in joined:
        return CALL_CLASSES[2]
    return CALL_CLASSES[3]
