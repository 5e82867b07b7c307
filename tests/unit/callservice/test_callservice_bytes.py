"""Parameters are bytes: any byte but NUL, in any position, arrives exactly (codec and pre-dial
argument), and the 1024-byte limit is enforced, never by truncation."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialplan_funcs.callservice import codec
from dialplan_funcs.callservice.codec import (
    CallMeta, CallServiceError, HeaderError, ParameterTooLongError, decode_headers,
    encode_headers, local_leg, parse_leg, remote_leg,
)

SECRET = "0123456789abcdef-cluster-secret"
META = CallMeta(origin="sopA", path=("sopA",), hop=1, exten="2000")
ALL_BYTES = bytes(range(1, 256))


def as_asterisk_str(data: bytes) -> str:
    """The str Python code gets for an Asterisk value holding these bytes."""
    return data.decode("utf-8", "surrogateescape")


no_nul = st.binary(max_size=codec.MAX_PARAM_BYTES).map(lambda b: b.replace(b"\0", b"\1"))
params4 = st.lists(no_nul.map(as_asterisk_str), min_size=4, max_size=4)


def raw(values):
    return [codec.param_bytes(v) for v in values]


@given(params4)
def test_any_bytes_but_nul_round_trip_exactly_over_sip(params):
    decoded = decode_headers(dict(encode_headers(META, params)))
    assert raw(decoded.params) == raw(params)


@given(params4)
def test_any_bytes_but_nul_round_trip_exactly_signed(params):
    decoded = decode_headers(dict(encode_headers(META, params, SECRET)), SECRET)
    assert decoded.verified and raw(decoded.params) == raw(params)


@given(params4)
def test_any_bytes_but_nul_round_trip_exactly_in_a_local_delivery(params):
    leg = parse_leg(local_leg(CallMeta.local("sopA", "2000", (), 0), params))
    assert raw(leg.params) == raw(params) and leg.meta.hop == 0


@given(params4)
def test_remote_leg_argument_carries_the_encoded_headers_unchanged(params):
    headers = encode_headers(META, params)
    assert list(parse_leg(remote_leg(headers)).headers) == headers


@pytest.mark.parametrize("position", ["start", "middle", "end"])
def test_every_byte_value_at_full_length_arrives_exactly(position):
    filler = b"x" * (codec.MAX_PARAM_BYTES - len(ALL_BYTES))
    data = {"start": ALL_BYTES + filler, "middle": filler[:300] + ALL_BYTES + filler[300:],
            "end": filler + ALL_BYTES}[position]
    assert len(data) == codec.MAX_PARAM_BYTES
    params = [as_asterisk_str(data), as_asterisk_str(data[::-1]), "\x1f", as_asterisk_str(data)]
    decoded = decode_headers(dict(encode_headers(META, params, SECRET)), SECRET)
    assert raw(decoded.params) == raw(params)


@pytest.mark.parametrize("byte", [0x1F, 0x0D, 0x0A, 0x2C, 0x7C, 0x22, 0x5C, 0x7E, 0x80, 0xFF])
def test_a_parameter_of_one_special_byte_is_not_lost(byte):
    params = ["a", as_asterisk_str(bytes([byte])), "", "d"]
    assert raw(decode_headers(dict(encode_headers(META, params))).params) == raw(params)


def test_length_counts_bytes_and_over_the_limit_is_refused_not_cut():
    at_limit = as_asterisk_str(b"\xff" * codec.MAX_PARAM_BYTES)
    assert codec.validate_param(1, at_limit) == at_limit
    with pytest.raises(ParameterTooLongError, match="Parameter2 is 1025 bytes; the limit is 1024"):
        codec.validate_params(["", as_asterisk_str(b"\xff" * 1025)])


def test_nul_is_refused_on_the_way_out_and_on_the_way_in():
    with pytest.raises(codec.InvalidParameterError, match="NUL"):
        codec.validate_param(1, "a\0b")
    with pytest.raises(HeaderError, match="NUL"):
        codec.decode_param("X-CallService-P1", codec.encode_bytes(b"a\0b"))


@given(st.one_of(st.text(max_size=60), st.text(alphabet="~RL0123456789²abc;=/", max_size=60),
                 st.builds(lambda body: f"L~{len(body)}~{body}", st.text(max_size=60))))
def test_parsing_any_argument_raises_only_callservice_errors(text):
    try:
        parse_leg(text)
    except CallServiceError:
        pass


def test_an_argument_not_made_by_callservice_is_refused():
    for text in ("", "token", "X~3~abc", "R~4~abc", "L~1~x"):
        with pytest.raises(CallServiceError):
            parse_leg(text)


def test_a_cut_argument_is_refused():
    argument = local_leg(META, ["x" * 1000, "y", "", ""])
    with pytest.raises(CallServiceError, match="cut"):
        parse_leg(argument[:-1])
