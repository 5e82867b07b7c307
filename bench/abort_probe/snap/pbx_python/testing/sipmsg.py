"""Parsing of SIP messages and of SIPp ``-trace_msg`` logs."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

#: RFC 3261 compact header forms and their full names.
COMPACT_HEADERS = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
    "o": "Event", "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By", "x": "Session-Expires",
}

_SEPARATOR = re.compile(r"^-{40,}(?: (?P<ts>.*))?$", re.MULTILINE)
_KIND = re.compile(r"^(?P<unexp>Unexpected )?\w+ message (?P<dir>sent|received)\b")


class Headers(dict[str, list[str]]):
    """``name -> [values]`` with case-insensitive lookup (``h["x-test"]`` finds ``X-Test``)."""

    def _key(self, name: str) -> str:
        low = name.lower()
        for k in self.keys():
            if k.lower() == low:
                return k
        return name

    def __getitem__(self, name: str) -> list[str]:
        return super().__getitem__(self._key(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(self._key(name))

    def get(self, name: str, default: list[str] | None = None) -> list[str] | None:  # type: ignore[override]
        return super().get(self._key(name), default)

    def first(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name``, or ``default``."""
        values = self.get(name)
        return values[0] if values else default


def split_message(msg: str) -> tuple[str, list[str], str]:
    """(start line, header lines with folding undone, body) of one SIP message."""
    text = msg.replace("\r\n", "\n").lstrip("\n")
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    start, raw = lines[0], lines[1:]
    headers: list[str] = []
    for line in raw:
        if line[:1] in (" ", "\t") and headers:
            headers[-1] += " " + line.strip()
        elif line.strip():
            headers.append(line)
    return start, headers, body


def parse_headers(msg: str) -> Headers:
    """Headers of a SIP message as ``{name: [values in order]}``; compact forms are expanded."""
    _, lines, _ = split_message(msg)
    out = Headers()
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        name = COMPACT_HEADERS.get(name.lower(), name) if len(name) == 1 else name
        key = out._key(name)
        out.setdefault(key, []).append(value.strip())
    return out


def start_line(msg: str) -> str:
    """The request or status line."""
    return split_message(msg)[0].strip()


def status_code(msg: str) -> int | None:
    """The status code of a response, or None for a request."""
    m = re.match(r"SIP/2\.0 (\d{3})", start_line(msg))
    return int(m.group(1)) if m else None


def request_method(msg: str) -> str | None:
    """The method of a request, or None for a response."""
    line = start_line(msg)
    if line.startswith("SIP/2.0"):
        return None
    return line.split(" ", 1)[0] or None


def cseq(msg: str) -> tuple[int, str] | None:
    """(number, method) of the CSeq header."""
    value = parse_headers(msg).first("CSeq")
    if not value:
        return None
    num, _, method = value.partition(" ")
    return int(num), method.strip()


@dataclass(frozen=True)
class TracedMessage:
    """One entry of a SIPp message trace."""

    direction: str  # "sent", "received" or "unexpected" (a received one SIPp did not expect; logged twice)
    timestamp: str
    text: str


def iter_trace(trace: str) -> Iterator[TracedMessage]:
    """Entries of a SIPp ``-trace_msg`` log, in order."""
    seps = list(_SEPARATOR.finditer(trace))
    for i, sep in enumerate(seps):
        end = seps[i + 1].start() if i + 1 < len(seps) else len(trace)
        chunk = trace[sep.end():end].lstrip("\n")
        kind_line, _, body = chunk.partition("\n")
        m = _KIND.match(kind_line)
        if not m:
            continue
        direction = "unexpected" if m.group("unexp") else m.group("dir")
        text = body.strip("\n") + "\n"
        yield TracedMessage(direction, (sep.group("ts") or "").strip(), text)


def received_messages(trace: str) -> list[str]:
    """Texts of all messages SIPp received (each once, retransmissions included)."""
    return [t.text for t in iter_trace(trace) if t.direction == "received"]


def sent_messages(trace: str) -> list[str]:
    """Texts of all messages SIPp sent."""
    return [t.text for t in iter_trace(trace) if t.direction == "sent"]


def unique_requests(messages: list[str], method: str) -> list[str]:
    """Requests of ``method`` with retransmissions removed (same Call-ID, CSeq and Via branch)."""
    seen: set[tuple[str | None, str | None, str | None]] = set()
    out = []
    for msg in messages:
        if request_method(msg) != method:
            continue
        h = parse_headers(msg)
        key = (h.first("Call-ID"), h.first("CSeq"), h.first("Via"))
        if key not in seen:
            seen.add(key)
            out.append(msg)
    return out


def final_invite_statuses(messages: list[str]) -> dict[str, int]:
    """``Call-ID -> last final (>=200) status code`` of INVITE responses among ``messages``."""
    out: dict[str, int] = {}
    for msg in messages:
        code = status_code(msg)
        if code is None or code < 200:
            continue
        cs = cseq(msg)
        if cs and cs[1].upper() == "INVITE":
            out[parse_headers(msg).first("Call-ID") or ""] = code
    return out
