"""Wire codec for CallService metadata and parameters carried in SIP X-headers.

Pure Python: no Asterisk or cffi imports (the glue that talks to Asterisk imports this).

Wire format, version 1 (all values are header-safe ASCII):

    X-CallService:  v=1;o=<origin>;path=<sop>/<sop>...;h=<hop>;e=<exten>[;p<n>=<b64>...][;x=<n...>][;sig=<hex>]
        v      the version, "1"
        o      the SOP that routed this leg (the sender), e.g. "sopA"
        path   the SOPs that routed the call so far, in order, '/'-separated; it ends with o
        h      the number of CallService SIP legs so far (1 on the first leg), decimal
        e      the destination extension (validated charset, sent as is)
        p1..p4 a non-empty parameter, as unpadded base64url of its bytes (RFC 4648 §5): any
               byte but NUL, whether or not it is valid UTF-8
        x      the parameters that travel in headers of their own instead, ascending digits
        sig    lowercase hex HMAC-SHA256 over the canonical signing input (only when a shared
               secret is configured)
    X-CallService-P1..P4:  a parameter listed in x=, base64url as above

Why this shape: every PJSIP_HEADER read is a round trip through the SIP session's serializer
thread, so everything travels in the one route header when it fits: the receiver reads one
header. A dialplan function value is capped at 4 kB (VAR_BUF_SIZE), so when the route header
would exceed ROUTE_INLINE_LIMIT characters, the largest parameters move to headers of their own
(listed in x=) until it fits; the receiver then reads exactly those too.

Empty vs absent: an empty parameter is not sent at all (neither p<n>= nor in x=). A parameter
listed in x= whose header is missing or empty is an error. The signature covers all four
parameters, so dropping a non-empty parameter breaks verification.

Parameters are bytes: Asterisk values reach Python as str decoded from UTF-8 with
``surrogateescape`` (a byte that is not valid UTF-8 becomes a lone surrogate U+DC80..U+DCFF),
so a parameter is encoded back with ``surrogateescape`` and decoded the same way: every byte
0x01..0xFF arrives as it was sent. NUL cannot be held by an Asterisk value.

Decoding is strict: raw lengths are bounded before any decoding, base64url must use the
exact alphabet with canonical (zero) trailing bits, and the bytes must not hold a NUL. Every
problem with inbound headers raises a subclass of HeaderError; the caller logs it as a WARNING
and treats the call as carrying no CallService data (never a partial set). check_origin() adds
the checks that need the receiving node's view: the origin must be the SOP whose trunk
delivered the call, the path only cluster SOPs.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

VERSION = "1"
NUM_PARAMS = 4
MAX_PARAM_BYTES = 1024
# Unpadded base64 of MAX_PARAM_BYTES bytes: 341 full groups (1364 chars) + 1 byte (2 chars).
MAX_ENCODED_PARAM_CHARS = (MAX_PARAM_BYTES // 3) * 4 + (0, 2, 3)[MAX_PARAM_BYTES % 3]
MAX_SOP_NAME_CHARS = 64
MAX_EXTEN_CHARS = 80
MAX_PATH_SOPS = 32
MAX_WIRE_HOP = 99

HDR_ROUTE = "X-CallService"
HDR_PARAMS: tuple[str, ...] = tuple(f"X-CallService-P{i}" for i in range(1, NUM_PARAMS + 1))
#: Every header this codec reads or writes.
HEADER_NAMES: tuple[str, ...] = (HDR_ROUTE, *HDR_PARAMS)
PATH_SEP = "/"            # not in the SOP name alphabet
INLINE_KEYS: tuple[str, ...] = tuple(f"p{i}" for i in range(1, NUM_PARAMS + 1))
ROUTE_KEYS = ("v", "o", "path", "h", "e", *INLINE_KEYS, "x", "sig")
# A dialplan function value (PJSIP_HEADER(read)) is cut at VAR_BUF_SIZE - 1 = 4095 characters.
ROUTE_INLINE_LIMIT = 3800
MAX_ROUTE_CHARS = 4095

_SOP_RE = re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_SOP_NAME_CHARS}}}")
_EXTEN_RE = re.compile(rf"[A-Za-z0-9*#+_.-]{{1,{MAX_EXTEN_CHARS}}}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_HOP_RE = re.compile(r"[1-9][0-9]?")
_SIG_RE = re.compile(r"[0-9a-f]{64}")
_SEPARATE_RE = re.compile(r"1?2?3?4?")
_SIG_DOMAIN = b"X-CallService-Sig/1"


class CallServiceError(ValueError):
    """Base class of every error raised by the CallService pure-Python modules."""


class InvalidNameError(CallServiceError):
    """A SOP name or extension does not match its allowed syntax."""


class InvalidParameterError(CallServiceError):
    """A call parameter cannot be carried (bad type, NUL, lone surrogate, too long)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index  #: 1-based parameter number

    @property
    def name(self) -> str:
        return f"Parameter{self.index}"


class ParameterTooLongError(InvalidParameterError):
    """A parameter exceeds MAX_PARAM_BYTES bytes; it is rejected, never truncated."""

    def __init__(self, index: int, size: int) -> None:
        super().__init__(
            index, f"Parameter{index} is {size} bytes; the limit is {MAX_PARAM_BYTES}"
        )
        self.size = size


class HeaderError(CallServiceError):
    """Inbound X-CallService headers are malformed: treat the call as carrying no data."""


class UnsupportedVersionError(HeaderError):
    """The route header names a version (v=) this codec does not speak."""


class SignatureError(HeaderError):
    """A secret is configured and the signature is missing, malformed or wrong."""


# ---------------------------------------------------------------------------- validation

def shown(value: object, limit: int = 100) -> str:
    """repr() of a value for an error message: escapes CR/LF, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_sop_name(name: object, what: str = "SOP name") -> str:
    """Return ``name`` if it matches ``[A-Za-z0-9_.-]{1,64}``, else raise InvalidNameError."""
    if not isinstance(name, str) or not _SOP_RE.fullmatch(name):
        raise InvalidNameError(
            f"{what} {shown(name)} is invalid: use 1-{MAX_SOP_NAME_CHARS} of A-Z a-z 0-9 _ . -"
        )
    return name


def validate_extension(exten: object) -> str:
    """Return ``exten`` if it is 1-80 of ``[A-Za-z0-9*#+_.-]``, else raise InvalidNameError.

    The whitelist excludes everything that could change a dial string or a header
    (& / @ , ; ( ) ^ | whitespace quotes backslash CR LF $ { }).
    """
    if not isinstance(exten, str) or not _EXTEN_RE.fullmatch(exten):
        raise InvalidNameError(
            f"extension {shown(exten)} is invalid: use 1-{MAX_EXTEN_CHARS} of "
            "A-Z a-z 0-9 * # + _ . -"
        )
    return exten


def param_bytes(value: str) -> bytes:
    """The bytes of a parameter as Asterisk holds them (see the module docstring)."""
    return value.encode("utf-8", "surrogateescape")


def param_text(data: bytes) -> str:
    """A parameter's bytes as the str Python code sees for that Asterisk value."""
    return data.decode("utf-8", "surrogateescape")


def validate_param(index: int, value: object) -> str:
    """Check one parameter (1-based ``index``) and return it unchanged.

    Any byte but NUL is accepted; a str holding a surrogate that does not stand for a byte
    (outside U+DC80..U+DCFF) is not Asterisk data and is refused.
    """
    if not isinstance(value, str):
        raise InvalidParameterError(
            index, f"Parameter{index} must be text, not {type(value).__name__}"
        )
    if "\x00" in value:
        raise InvalidParameterError(
            index, f"Parameter{index} contains a NUL character, which Asterisk cannot hold"
        )
    try:
        size = len(param_bytes(value))
    except UnicodeEncodeError:
        raise InvalidParameterError(
            index, f"Parameter{index} holds a lone surrogate that stands for no byte"
        ) from None
    if size > MAX_PARAM_BYTES:
        raise ParameterTooLongError(index, size)
    return value


def validate_params(params: Sequence[str]) -> tuple[str, str, str, str]:
    """Validate up to four parameters; missing trailing ones become ""."""
    if isinstance(params, (str, bytes)) or len(params) > NUM_PARAMS:
        raise CallServiceError(f"expected at most {NUM_PARAMS} parameters")
    padded = list(params) + [""] * (NUM_PARAMS - len(params))
    p1, p2, p3, p4 = (validate_param(i, v) for i, v in enumerate(padded, start=1))
    return (p1, p2, p3, p4)


# ---------------------------------------------------------------------------- metadata

@dataclass(frozen=True)
class CallMeta:
    """Routing metadata of one CallService leg (see the module docstring).

    ``hop`` is the number of CallService SIP legs the call has used (failed ones included):
    1..99 on the wire; 0 is allowed for a local delivery on the node the call started on.
    """

    origin: str
    path: tuple[str, ...]
    hop: int
    exten: str

    def __post_init__(self) -> None:
        validate_sop_name(self.origin, "origin SOP")
        validate_extension(self.exten)
        if not isinstance(self.path, tuple) or not 1 <= len(self.path) <= MAX_PATH_SOPS:
            raise CallServiceError(f"path must be a tuple of 1-{MAX_PATH_SOPS} SOP names")
        for sop in self.path:
            validate_sop_name(sop, "path SOP")
        if self.path[-1] != self.origin:
            raise CallServiceError(
                f"path {';'.join(self.path)!r} must end with the origin {self.origin!r}"
            )
        if type(self.hop) is not int or not 0 <= self.hop <= MAX_WIRE_HOP:
            raise CallServiceError(f"hop must be an integer in 0..{MAX_WIRE_HOP}")

    @classmethod
    def outbound(cls, local_sop: str, exten: str, visited: Sequence[str], hop: int) -> CallMeta:
        """Metadata for a SIP leg this SOP sends when ``hop`` legs are used already:
        origin=local, path=visited+local, hop+1."""
        return cls(origin=local_sop, path=_path_to(local_sop, visited), hop=hop + 1, exten=exten)

    @classmethod
    def local(cls, local_sop: str, exten: str, visited: Sequence[str], hop: int) -> CallMeta:
        """Metadata for a local delivery (no SIP leg): as outbound(), but hop stays."""
        return cls(origin=local_sop, path=_path_to(local_sop, visited), hop=hop, exten=exten)


def _path_to(local_sop: str, visited: Sequence[str]) -> tuple[str, ...]:
    return tuple(s for s in visited if s != local_sop) + (local_sop,)


@dataclass(frozen=True)
class DecodedCall:
    """What decode_headers found: metadata, the four parameters, and whether it was signed."""

    meta: CallMeta
    params: tuple[str, str, str, str]
    verified: bool


# ---------------------------------------------------------------------------- base64url

_FROM_URLSAFE = str.maketrans("-_", "+/")


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def encode_bytes(data: bytes) -> str:
    """Unpadded base64url of ``data``."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")


def encode_param(value: str) -> str:
    """Unpadded base64url of the bytes of an already validated parameter."""
    return encode_bytes(param_bytes(value))


def decode_param(header: str, raw: str) -> str:
    """Strictly decode one parameter header value; ``header`` names it in errors."""
    if len(raw) > MAX_ENCODED_PARAM_CHARS:
        raise HeaderError(
            f"{header}: encoded value is {len(raw)} characters; "
            f"the limit is {MAX_ENCODED_PARAM_CHARS}"
        )
    if not _B64URL_RE.fullmatch(raw):
        raise HeaderError(f"{header}: characters outside the base64url alphabet (no padding)")
    if len(raw) % 4 == 1:
        raise HeaderError(f"{header}: impossible base64url length {len(raw)}")
    try:   # the alphabet is checked above: binascii's own decoder, without base64's re-checks
        data = binascii.a2b_base64(raw.translate(_FROM_URLSAFE) + "=" * (-len(raw) % 4))
    except binascii.Error as exc:  # pragma: no cover - the checks above make this unreachable
        raise HeaderError(f"{header}: invalid base64url ({exc})") from None
    if encode_bytes(data) != raw:
        raise HeaderError(f"{header}: non-canonical base64url (stray trailing bits)")
    if len(data) > MAX_PARAM_BYTES:  # pragma: no cover - implied by the character limit
        raise HeaderError(f"{header}: {len(data)} bytes; the limit is {MAX_PARAM_BYTES}")
    if 0 in data:
        raise HeaderError(f"{header}: decoded value contains a NUL byte, which Asterisk cannot "
                          "hold")
    return param_text(data)


# ---------------------------------------------------------------------------- signature

def signing_input(meta: CallMeta, params: Sequence[str], version: str = VERSION) -> bytes:
    """Canonical bytes that are signed: netstrings (``<len>:<bytes>,``) of every field.

    Length prefixes make the encoding injective: no two different field tuples give the
    same bytes, whatever the fields contain.
    """
    fields: tuple[str | bytes, ...] = (
        _SIG_DOMAIN, version, meta.origin, ";".join(meta.path), str(meta.hop), meta.exten,
        *params,
    )
    out = bytearray()
    for field in fields:
        data = field if isinstance(field, bytes) else param_bytes(field)
        out += b"%d:%s," % (len(data), data)
    return bytes(out)


def sign(meta: CallMeta, params: Sequence[str], secret: str | bytes) -> str:
    """Lowercase hex HMAC-SHA256 of signing_input()."""
    return hmac.new(_secret_bytes(secret), signing_input(meta, params), hashlib.sha256).hexdigest()


def _secret_bytes(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not key:
        raise CallServiceError("the shared secret must not be empty")
    return key


# ---------------------------------------------------------------------------- headers

def encode_headers(
    meta: CallMeta, params: Sequence[str], secret: str | bytes | None = None
) -> list[tuple[str, str]]:
    """Headers to add to the outbound INVITE: the route header, then any parameter that does
    not fit in it (see the module docstring).

    Raises InvalidParameterError (ParameterTooLongError for size) naming the parameter.
    """
    values = validate_params(params)
    if meta.hop < 1:
        raise CallServiceError("a SIP leg carries a hop count of at least 1")
    encoded = {i: encode_param(v) for i, v in enumerate(values, start=1) if v}
    head = f"v={VERSION};o={meta.origin};path={PATH_SEP.join(meta.path)};h={meta.hop};e={meta.exten}"
    tail = f";sig={sign(meta, values, secret)}" if secret is not None else ""
    inline = dict(encoded)
    separate: list[int] = []

    def route() -> str:
        fields = "".join(f";p{i}={v}" for i, v in inline.items())
        x = f";x={''.join(map(str, sorted(separate)))}" if separate else ""
        return head + fields + x + tail

    while len(route()) > ROUTE_INLINE_LIMIT:
        largest = max(inline, key=lambda i: (len(inline[i]), -i))
        separate.append(largest)
        del inline[largest]
    headers = [(HDR_ROUTE, route())]
    headers += [(HDR_PARAMS[i - 1], encoded[i]) for i in sorted(separate)]
    return headers


def _route_fields(raw: str) -> dict[str, str]:
    if len(raw) > MAX_ROUTE_CHARS:
        raise HeaderError(f"{HDR_ROUTE}: value is {len(raw)} characters; the limit is "
                          f"{MAX_ROUTE_CHARS}")
    fields: dict[str, str] = {}
    for item in raw.split(";"):
        key, eq, value = item.partition("=")
        key = key.strip(" \t")
        if not eq or key not in ROUTE_KEYS:
            raise HeaderError(f"{HDR_ROUTE}: unexpected field {shown(item, 40)}")
        if key in fields:
            raise HeaderError(f"{HDR_ROUTE}: field {key} given twice")
        fields[key] = value.strip(" \t")
    return fields


def listed_params(route: str) -> tuple[str, ...]:
    """The parameter headers a route header says travel separately (the ones to read).

    Lenient and cheap (decode_headers() parses and reports what is wrong): a route header
    without exactly one well-formed x= field lists none.
    """
    if route.count(";x=") != 1:
        return ()
    separate = route.split(";x=", 1)[1].split(";", 1)[0].strip(" \t")
    if not _SEPARATE_RE.fullmatch(separate):
        return ()
    return tuple(HDR_PARAMS[int(d) - 1] for d in separate)


def decode_headers(
    headers: Mapping[str, str | None], secret: str | bytes | None = None
) -> DecodedCall | None:
    """Parse inbound headers (names case-insensitive; missing, None or blank = absent).

    Returns None when there is no route header (not a CallService call). Raises HeaderError (or
    its subclasses UnsupportedVersionError / SignatureError) when the headers are present but
    unusable. With ``secret`` None, a sig field is ignored.
    """
    # Surrounding SP/HTAB is SIP linear whitespace, not part of the value.
    got = {k.lower(): v.strip(" \t") for k, v in headers.items() if v and v.strip(" \t")}
    route = got.get(HDR_ROUTE.lower(), "")
    if not route:
        return None
    fields = _route_fields(route)
    version = fields.get("v", "")
    if not version:
        raise HeaderError(f"{HDR_ROUTE}: the version (v=) is missing")
    if version != VERSION:
        raise UnsupportedVersionError(f"{HDR_ROUTE}: unsupported version {shown(version, 20)}")
    for key in ("o", "path", "h", "e"):
        if key not in fields:
            raise HeaderError(f"{HDR_ROUTE}: field {key} is missing")
    raw_hop = fields["h"]
    if not _HOP_RE.fullmatch(raw_hop):
        raise HeaderError(f"{HDR_ROUTE}: h={shown(raw_hop, 20)} is not an integer in "
                          f"1..{MAX_WIRE_HOP}")
    try:
        meta = CallMeta(origin=fields["o"], path=tuple(fields["path"].split(PATH_SEP)),
                        hop=int(raw_hop), exten=fields["e"])
    except CallServiceError as exc:
        raise HeaderError(f"invalid CallService metadata: {exc}") from None
    separate = fields.get("x", "")
    if not _SEPARATE_RE.fullmatch(separate):
        raise HeaderError(f"{HDR_ROUTE}: x={shown(separate, 20)} is not ascending digits 1-4")

    decoded: list[str] = []
    for i, name in enumerate(HDR_PARAMS, start=1):
        key = INLINE_KEYS[i - 1]
        raw = got.get(name.lower(), "")
        if str(i) in separate:
            if key in fields:
                raise HeaderError(f"{HDR_ROUTE}: parameter {i} is both inline ({key}=) and in x=")
            if not raw:
                raise HeaderError(f"{name} is missing but listed in {HDR_ROUTE} (x={separate})")
            decoded.append(decode_param(name, raw))
        elif raw:
            raise HeaderError(f"{name} is present but not listed in {HDR_ROUTE} (x={separate})")
        elif key in fields:
            if not fields[key]:
                raise HeaderError(f"{HDR_ROUTE}: {key} is empty (an empty parameter is not sent)")
            decoded.append(decode_param(f"{HDR_ROUTE} {key}", fields[key]))
        else:
            decoded.append("")
    params = (decoded[0], decoded[1], decoded[2], decoded[3])

    verified = False
    if secret is not None:
        raw_sig = fields.get("sig", "")
        if not raw_sig:
            raise SignatureError(f"{HDR_ROUTE}: the signature (sig=) is missing and a shared "
                                 "secret is configured")
        if len(raw_sig) != 64 or not _SIG_RE.fullmatch(raw_sig):
            raise SignatureError(f"{HDR_ROUTE}: sig is not 64 lowercase hex digits")
        if not hmac.compare_digest(raw_sig, sign(meta, params, secret)):
            raise SignatureError(f"{HDR_ROUTE}: signature does not match")
        verified = True
    return DecodedCall(meta=meta, params=params, verified=verified)


def check_origin(meta: CallMeta, came_from: str, sops: Collection[str]) -> None:
    """Check decoded metadata against the receiving node's view; raise HeaderError if wrong.

    ``came_from`` is the cluster SOP whose trunk endpoint delivered the call: the origin (the
    SOP that sent this leg) must be that one. The path must name only cluster SOPs, each once,
    and cannot be longer than the hop count (each SOP on it sent at least one leg).
    """
    if meta.origin != came_from:
        raise HeaderError(f"{HDR_ROUTE}: origin o={meta.origin} but the call arrived on the trunk "
                          f"of SOP {came_from}")
    unknown = [sop for sop in meta.path if sop not in sops]
    if unknown:
        raise HeaderError(f"{HDR_ROUTE}: path names {unknown[0]}, which is not a cluster SOP")
    if len(set(meta.path)) != len(meta.path):
        raise HeaderError(f"{HDR_ROUTE}: path {PATH_SEP.join(meta.path)} names a SOP twice")
    if len(meta.path) > meta.hop:
        raise HeaderError(f"{HDR_ROUTE}: path {PATH_SEP.join(meta.path)} is longer than the hop "
                          f"count h={meta.hop}")


# ---------------------------------------------------------------------------- pre-dial argument
#
# What CallService's pre-dial handler adds to an outgoing leg travels in the handler's own
# argument (Dial's b() option), never in module state that a reload could replace while the leg
# is dialled: ``<kind>~<length of the rest>~<fields, ~-separated>``. Kind R (remote leg): the
# header values, route header first, then the parameter headers its x= lists. Kind L (local
# delivery): origin, path, hop, extension and the four parameters in base64url. Every field is
# made of header-safe characters, none of which Dial, Gosub or the substitution of ${ARG1}
# treat specially ('~' is in no field alphabet); the length shows any truncation.

LEG_REMOTE = "R"
LEG_LOCAL = "L"
_LEG_SEP = "~"


@dataclass(frozen=True)
class LegData:
    """A parsed pre-dial argument: headers for a remote leg, or meta and params for a local one."""

    headers: tuple[tuple[str, str], ...] = ()
    meta: CallMeta | None = None
    params: tuple[str, str, str, str] = ("", "", "", "")


def _leg(kind: str, fields: Sequence[str]) -> str:
    body = _LEG_SEP.join(fields)
    return f"{kind}{_LEG_SEP}{len(body)}{_LEG_SEP}{body}"


def remote_leg(headers: Sequence[tuple[str, str]]) -> str:
    """The pre-dial argument of a remote leg, from encode_headers()."""
    return _leg(LEG_REMOTE, [value for _, value in headers])


def local_leg(meta: CallMeta, params: Sequence[str]) -> str:
    """The pre-dial argument of a local delivery."""
    values = validate_params(params)
    return _leg(LEG_LOCAL, [meta.origin, PATH_SEP.join(meta.path), str(meta.hop), meta.exten,
                            *(encode_param(v) for v in values)])


def parse_leg(argument: str) -> LegData:
    """Parse a pre-dial argument; CallServiceError if it is not one CallService made, or cut."""
    kind, _, rest = argument.partition(_LEG_SEP)
    size, _, body = rest.partition(_LEG_SEP)
    if (kind not in (LEG_REMOTE, LEG_LOCAL) or not (size.isascii() and size.isdigit())
            or int(size) != len(body)):
        raise CallServiceError("the argument is not one CallService gives, or it was cut")
    fields = body.split(_LEG_SEP)
    if kind == LEG_REMOTE:
        listed = listed_params(fields[0])
        if len(fields) != 1 + len(listed):
            raise CallServiceError("the parameter headers do not match the route header")
        return LegData(headers=tuple(zip((HDR_ROUTE, *listed), fields)))
    if len(fields) != 4 + NUM_PARAMS:
        raise CallServiceError("the local delivery's fields are missing")
    origin, path, hop, exten, *encoded = fields
    if not (hop.isascii() and hop.isdigit()):
        raise CallServiceError(f"hop {shown(hop, 20)} is not a number")
    meta = CallMeta(origin=origin, path=tuple(path.split(PATH_SEP)), hop=int(hop), exten=exten)
    p1, p2, p3, p4 = (decode_param(f"Parameter{i}", e) for i, e in enumerate(encoded, start=1))
    return LegData(meta=meta, params=(p1, p2, p3, p4))
