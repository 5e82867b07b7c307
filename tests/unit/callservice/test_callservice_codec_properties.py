"""Property tests of the header codec: round trip, header safety, tamper detection, limits."""

import contextlib
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dialplan_funcs.callservice import codec
from dialplan_funcs.callservice.codec import (
    CallMeta, ParameterTooLongError, SignatureError, decode_headers, encode_headers,
)

SECRET = "0123456789abcdef-cluster-secret"
HEADER_SAFE = re.compile(r"[A-Za-z0-9_.;=/*#+-]*")  # route fields (key=value;...), base64url, hex


def _fit_utf8(text: str) -> str:
    """Cut ``text`` to at most 1024 UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[: codec.MAX_PARAM_BYTES].decode("utf-8", "ignore")


chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
valid_param = st.one_of(
    st.text(chars, max_size=40),
    st.text(chars, max_size=1024).map(_fit_utf8),
    st.sampled_from(["", ",", ";", '"', "\r\n", "😀" * 256, "x" * 1024, "é" * 512]),
)
params4 = st.lists(valid_param, min_size=4, max_size=4)
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
sop_name = st.text(ALNUM + "_.-", min_size=1, max_size=64)
exten = st.text(ALNUM + "*#+_.-", min_size=1, max_size=80)


@st.composite
def metas(draw):
    path = tuple(draw(st.lists(sop_name, min_size=1, max_size=5)))
    return CallMeta(origin=path[-1], path=path, hop=draw(st.integers(1, 99)), exten=draw(exten))


@given(metas(), params4)
def test_any_valid_parameters_round_trip_byte_identical(meta, params):
    decoded = decode_headers(dict(encode_headers(meta, params)))
    assert decoded.meta == meta
    assert [p.encode("utf-8") for p in decoded.params] == [p.encode("utf-8") for p in params]


@given(metas(), params4)
def test_signed_round_trip_verifies(meta, params):
    decoded = decode_headers(dict(encode_headers(meta, params, SECRET)), SECRET)
    assert decoded.verified and decoded.params == tuple(params) and decoded.meta == meta


@given(metas(), params4, st.booleans())
def test_encoded_headers_hold_only_header_safe_characters(meta, params, signed):
    for name, value in encode_headers(meta, params, SECRET if signed else None):
        assert name.startswith("X-CallService") and len(name) <= 64
        assert HEADER_SAFE.fullmatch(value), (name, value)
        assert not set(value) & set("\r\n,\"' \t\x00")


@given(valid_param)
def test_encoded_parameter_is_strict_base64url_within_the_bound(value):
    encoded = codec.encode_param(value)
    assert re.fullmatch(r"[A-Za-z0-9_-]*", encoded)
    assert len(encoded) <= codec.MAX_ENCODED_PARAM_CHARS


def _tampered(meta: CallMeta, params: list[str], field: str, data) -> tuple[CallMeta, list[str]]:
    """A copy of (meta, params) with ``field`` changed to a different valid value."""
    if field == "origin":
        new = data.draw(sop_name.filter(lambda s: s != meta.origin))
        return CallMeta(new, meta.path[:-1] + (new,), meta.hop, meta.exten), params
    if field == "path":
        extra = data.draw(sop_name)
        return CallMeta(meta.origin, (extra,) + meta.path, meta.hop, meta.exten), params
    if field == "hop":
        hop = data.draw(st.integers(1, 99).filter(lambda h: h != meta.hop))
        return CallMeta(meta.origin, meta.path, hop, meta.exten), params
    if field == "exten":
        new = data.draw(exten.filter(lambda e: e != meta.exten))
        return CallMeta(meta.origin, meta.path, meta.hop, new), params
    index = int(field[1]) - 1
    new = data.draw(valid_param.filter(lambda p: p != params[index]))
    return meta, params[:index] + [new] + params[index + 1:]


FIELDS = ["origin", "path", "hop", "exten", "p1", "p2", "p3", "p4"]


@pytest.mark.parametrize("field", FIELDS)
@settings(max_examples=60)
@given(meta=metas(), params=params4, data=st.data())
def test_changing_any_signed_field_fails_verification(field, meta, params, data):
    headers = dict(encode_headers(meta, params, SECRET))
    new_meta, new_params = _tampered(meta, params, field, data)
    forged = dict(encode_headers(new_meta, new_params))  # re-encoded, unsigned
    sig = headers[codec.HDR_ROUTE].rsplit(";", 1)[1]      # replay the original signature
    forged[codec.HDR_ROUTE] += ";" + sig
    with pytest.raises(SignatureError):
        decode_headers(forged, SECRET)


@given(metas(), params4, st.integers(0, 63), st.sampled_from("0123456789abcdef"))
def test_changing_any_signature_digit_fails_verification(meta, params, pos, digit):
    headers = dict(encode_headers(meta, params, SECRET))
    route, sig = headers[codec.HDR_ROUTE].rsplit(";sig=", 1)
    assume(sig[pos] != digit)
    headers[codec.HDR_ROUTE] = f"{route};sig={sig[:pos]}{digit}{sig[pos + 1:]}"
    with pytest.raises(SignatureError):
        decode_headers(headers, SECRET)


@given(
    st.integers(1, 4),
    st.text(chars, min_size=1, max_size=600).filter(lambda s: len(s.encode()) > 0),
    st.integers(1, 3000),
)
def test_overlong_parameters_are_rejected_never_truncated(index, unit, extra):
    value = unit * (codec.MAX_PARAM_BYTES // len(unit.encode()) + 1)
    assume(len(value.encode()) > codec.MAX_PARAM_BYTES)
    params = [""] * 4
    params[index - 1] = value
    with pytest.raises(ParameterTooLongError) as info:
        encode_headers(CallMeta("sopA", ("sopA",), 1, "1"), params)
    assert info.value.index == index
    assert str(info.value) == (
        f"Parameter{index} is {len(value.encode())} bytes; the limit is {codec.MAX_PARAM_BYTES}"
    )


@given(st.text(chars, max_size=40), st.integers(0, 39))
def test_parameter_containing_nul_is_rejected(text, pos):
    value = text[:pos] + "\x00" + text[pos:]
    with pytest.raises(codec.InvalidParameterError, match="NUL"):
        codec.validate_param(1, value)


@given(st.binary(max_size=1100))
def test_decoding_arbitrary_base64url_gives_exactly_those_bytes_or_an_error(data):
    raw = codec.encode_bytes(data)
    try:
        text = codec.decode_param("X-CallService-P1", raw)
    except codec.HeaderError:
        assert 0 in data or len(data) > 1024
        return
    assert codec.param_bytes(text) == data


@given(st.text(max_size=60))
def test_decoding_arbitrary_header_text_raises_only_header_errors(raw):
    with contextlib.suppress(codec.HeaderError):
        codec.decode_param("X-CallService-P1", raw)
