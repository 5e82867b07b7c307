"""Example-based tests of the X-CallService header codec."""

import pytest

from dialplan_funcs.callservice import codec
from dialplan_funcs.callservice.codec import (
    HDR_ROUTE,
    CallMeta, HeaderError, InvalidNameError, InvalidParameterError, ParameterTooLongError,
    SignatureError, UnsupportedVersionError, decode_headers, encode_headers,
)

SECRET = "0123456789abcdef-cluster-secret"
META = CallMeta(origin="sopA", path=("sopA",), hop=1, exten="1001")


def roundtrip(params, secret=None, meta=META):
    return decode_headers(dict(encode_headers(meta, params, secret)), secret)


def fields(route: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in route.split(";"))


def with_field(headers: dict, key: str, value=None) -> dict:
    """The headers with one route field changed (value None: removed)."""
    f = fields(headers[HDR_ROUTE])
    if value is None:
        del f[key]
    else:
        f[key] = value
    return {**headers, HDR_ROUTE: ";".join(f"{k}={v}" for k, v in f.items())}


def separately(headers: dict, i: int, raw: str) -> dict:
    """The headers with parameter i moved out of the route header into its own header."""
    out = with_field(headers, f"p{i}") if f"p{i}" in fields(headers[HDR_ROUTE]) else dict(headers)
    out = with_field(out, "x", str(i))
    out[f"X-CallService-P{i}"] = raw
    return out


def test_header_names_are_the_documented_ones():
    assert codec.HEADER_NAMES == (
        "X-CallService", "X-CallService-P1", "X-CallService-P2", "X-CallService-P3",
        "X-CallService-P4",
    )


def test_encode_emits_one_route_header_with_the_metadata():
    meta = CallMeta(origin="sopB", path=("sopA", "sopB"), hop=2, exten="*97#")
    assert encode_headers(meta, []) == [(HDR_ROUTE, "v=1;o=sopB;path=sopA/sopB;h=2;e=*97#")]


def test_parameters_that_fit_travel_inside_the_route_header():
    headers = encode_headers(META, ["x", "", "y", "z"])
    assert [name for name, _ in headers] == [HDR_ROUTE]
    assert headers[0][1] == "v=1;o=sopA;path=sopA;h=1;e=1001;p1=eA;p3=eQ;p4=eg"
    assert codec.listed_params(headers[0][1]) == ()


def test_large_parameters_move_to_their_own_headers_largest_first():
    params = ["a" * 1000, "b" * 1024, "c" * 1000, "d" * 1000]
    headers = dict(encode_headers(META, params, SECRET))
    route = headers[HDR_ROUTE]
    assert len(route) <= codec.ROUTE_INLINE_LIMIT
    assert fields(route)["x"] == "12"
    assert set(headers) == {HDR_ROUTE, "X-CallService-P1", "X-CallService-P2"}
    assert codec.listed_params(route) == ("X-CallService-P1", "X-CallService-P2")
    assert decode_headers(headers, SECRET).params == tuple(params)


def test_four_full_size_parameters_still_fit_a_dialplan_function_value_each():
    headers = encode_headers(META, ["é" * 512] * 4, SECRET)
    assert all(len(value) < 4096 for _, value in headers)
    assert decode_headers(dict(headers), SECRET).params == ("é" * 512,) * 4


@pytest.mark.parametrize("route", ["", "garbage", "v=1;x=31", "v=1;x=x", "v=1;x=1;x=2"])
def test_a_malformed_route_header_lists_no_parameter_to_read(route):
    assert codec.listed_params(route) == ()


def test_parameters_with_separators_quotes_and_newlines_round_trip():
    params = ['a,b;c"d\'e', "line1\r\nline2", "Zoë ☎ 日本", "\\ $ { } <>"]
    assert roundtrip(params).params == tuple(params)


def test_parameter_is_sent_as_unpadded_base64url():
    headers = dict(encode_headers(META, ["fr-BE??>"]))
    assert fields(headers[HDR_ROUTE])["p1"] == "ZnItQkU_Pz4"


def test_empty_parameters_are_not_sent():
    sent = fields(dict(encode_headers(META, ["x", "", "y", ""]))[HDR_ROUTE])
    assert "p2" not in sent and "p4" not in sent
    assert "p1" in sent and "p3" in sent


def test_an_unlisted_parameter_read_as_empty_decodes_to_empty_string():
    headers = dict(encode_headers(META, ["x"]))
    headers["X-CallService-P2"] = ""          # what PJSIP_HEADER(read) gives for no header
    assert decode_headers(headers).params == ("x", "", "", "")


def test_a_listed_parameter_without_its_header_is_an_error():
    headers = separately(dict(encode_headers(META, ["x", "y"])), 2, "eQ")
    del headers["X-CallService-P2"]
    with pytest.raises(HeaderError, match="X-CallService-P2 is missing but listed"):
        decode_headers(headers)


def test_a_parameter_header_not_listed_in_the_route_header_is_an_error():
    headers = dict(encode_headers(META, ["x"]))
    headers["X-CallService-P3"] = "eQ"
    with pytest.raises(HeaderError, match="X-CallService-P3 is present but not listed"):
        decode_headers(headers)


def test_a_parameter_both_inline_and_separate_is_an_error():
    headers = with_field(dict(encode_headers(META, ["x"])), "x", "1")
    headers["X-CallService-P1"] = "eA"
    with pytest.raises(HeaderError, match="both inline"):
        decode_headers(headers)


def test_an_empty_inline_parameter_is_an_error():
    headers = with_field(dict(encode_headers(META, ["x"])), "p1", "")
    with pytest.raises(HeaderError, match="p1 is empty"):
        decode_headers(headers)


@pytest.mark.parametrize("separate", ["21", "11", "5", "x", "1 2"])
def test_an_invalid_separate_parameter_list_is_rejected(separate):
    headers = with_field(dict(encode_headers(META, [])), "x", separate)
    with pytest.raises(HeaderError, match="x="):
        decode_headers(headers)


@pytest.mark.parametrize("route", ["v=1;o=sopA;path=sopA;h=1;e=1001;y=1",
                                   "v=1;o=sopA;path=sopA;h=1;e=1001;o=sopB",
                                   "v=1;o=sopA;path=sopA;h=1;e=1001;junk"])
def test_unknown_repeated_or_malformed_route_fields_are_rejected(route):
    with pytest.raises(HeaderError, match="X-CallService: "):
        decode_headers({HDR_ROUTE: route})


@pytest.mark.parametrize("key", ["o", "path", "h", "e"])
def test_a_missing_route_field_is_an_error(key):
    headers = with_field(dict(encode_headers(META, [])), key)
    with pytest.raises(HeaderError, match=f"field {key} is missing"):
        decode_headers(headers)


def test_an_overlong_route_header_is_rejected_before_parsing():
    with pytest.raises(HeaderError, match="the limit is"):
        decode_headers({HDR_ROUTE: "v=1;" + "x" * codec.MAX_ROUTE_CHARS})


def test_an_inline_parameter_is_decoded_as_strictly_as_a_separate_one():
    headers = with_field(dict(encode_headers(META, ["x"])), "p1", "QR")   # non-canonical
    with pytest.raises(HeaderError, match="X-CallService p1: non-canonical"):
        decode_headers(headers)


def test_the_longest_valid_route_header_fits_a_dialplan_function_value():
    meta = CallMeta("s" * 64, tuple("%02d" % i + "s" * 62 for i in range(31)) + ("s" * 64,), 99,
                    "1" * 80)
    route = dict(encode_headers(meta, ["a", "b", "c", "d"], SECRET))[HDR_ROUTE]
    assert len(route) <= codec.MAX_ROUTE_CHARS < 4096
    assert decode_headers(dict(encode_headers(meta, ["a"], SECRET)), SECRET).meta == meta


def test_fewer_than_four_parameters_are_padded_with_empty():
    assert roundtrip(["only"]).params == ("only", "", "", "")


def test_more_than_four_parameters_are_rejected():
    with pytest.raises(codec.CallServiceError, match="at most 4"):
        encode_headers(META, ["1", "2", "3", "4", "5"])


def test_parameter_of_exactly_1024_bytes_is_accepted():
    value = "😀" * 256  # 4 bytes each
    assert roundtrip(["", "", value]).params[2] == value


def test_overlong_parameter_error_names_parameter_and_sizes():
    with pytest.raises(ParameterTooLongError) as info:
        encode_headers(META, ["", "", "x" * 1500])
    assert str(info.value) == "Parameter3 is 1500 bytes; the limit is 1024"
    assert info.value.index == 3 and info.value.name == "Parameter3"
    assert isinstance(info.value, ValueError)


def test_parameter_size_is_counted_in_utf8_bytes_not_characters():
    with pytest.raises(ParameterTooLongError, match="Parameter1 is 1026 bytes"):
        encode_headers(META, ["é" * 513])


def test_nul_in_parameter_is_rejected():
    with pytest.raises(InvalidParameterError, match="Parameter2 contains a NUL"):
        encode_headers(META, ["ok", "a\x00b"])


def test_surrogate_standing_for_no_byte_is_rejected():
    # U+DC80..U+DCFF stand for the bytes 0x80..0xFF (surrogateescape); other surrogates never
    # come from Asterisk.
    with pytest.raises(InvalidParameterError, match="Parameter1 holds a lone surrogate"):
        encode_headers(META, ["\ud800"])


def test_bytes_that_are_not_utf8_travel_as_themselves():
    value = b"\xff\xfe caf\xe9 \xc3".decode("utf-8", "surrogateescape")
    decoded = decode_headers(dict(encode_headers(META, [value])))
    assert codec.param_bytes(decoded.params[0]) == b"\xff\xfe caf\xe9 \xc3"


def test_non_text_parameter_is_rejected():
    with pytest.raises(InvalidParameterError, match="Parameter1 must be text"):
        encode_headers(META, [b"bytes"])


def test_no_callservice_headers_means_no_data():
    assert decode_headers({"From": "x", "X-Other": "y"}) is None
    assert decode_headers({HDR_ROUTE: " "}) is None


def test_header_names_are_matched_case_insensitively():
    headers = {k.lower(): v for k, v in encode_headers(META, ["p"])}
    assert decode_headers(headers).params[0] == "p"


def test_missing_version_is_an_error():
    headers = with_field(dict(encode_headers(META, ["p"])), "v")
    with pytest.raises(HeaderError, match=r"the version \(v=\) is missing"):
        decode_headers(headers)


def test_unknown_version_is_rejected():
    headers = with_field(dict(encode_headers(META, ["p"])), "v", "2")
    with pytest.raises(UnsupportedVersionError):
        decode_headers(headers)


@pytest.mark.parametrize("bad", ["ab+c", "ab/c", "abc=", "ab c", "ab,cd", "a\r\nb", "aé"])
def test_parameter_outside_base64url_alphabet_is_rejected(bad):
    headers = separately(dict(encode_headers(META, ["x"])), 1, bad)
    with pytest.raises(HeaderError, match="X-CallService-P1"):
        decode_headers(headers)


def test_parameter_with_impossible_length_is_rejected():
    headers = separately(dict(encode_headers(META, ["x"])), 1, "abcde")
    with pytest.raises(HeaderError, match="impossible base64url length"):
        decode_headers(headers)


def test_parameter_with_nonzero_trailing_bits_is_rejected():
    headers = separately(dict(encode_headers(META, ["x"])), 1, "QR")  # canonical b"A" is "QQ"
    with pytest.raises(HeaderError, match="non-canonical"):
        decode_headers(headers)


def test_overlong_encoded_parameter_is_rejected_before_decoding(monkeypatch):
    headers = separately(dict(encode_headers(META, ["", "", "", "x"])), 4,
                         "A" * (codec.MAX_ENCODED_PARAM_CHARS + 1))
    monkeypatch.setattr(codec.binascii, "a2b_base64", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(HeaderError, match="X-CallService-P4: encoded value is 1367 characters"):
        decode_headers(headers)


def test_max_encoded_parameter_length_matches_1024_bytes():
    assert codec.MAX_ENCODED_PARAM_CHARS == len(codec.encode_param("x" * 1024)) == 1366


def test_parameter_decoding_to_invalid_utf8_gives_those_bytes():
    headers = separately(dict(encode_headers(META, ["x"])), 1, codec.encode_bytes(b"\xff\xfe"))
    assert codec.param_bytes(decode_headers(headers).params[0]) == b"\xff\xfe"


def test_parameter_decoding_to_nul_is_rejected():
    headers = separately(dict(encode_headers(META, ["x"])), 1, codec.encode_bytes(b"a\x00"))
    with pytest.raises(HeaderError, match="NUL"):
        decode_headers(headers)


@pytest.mark.parametrize("hop", ["0", "01", "-1", "1.0", "100", "x", ""])
def test_invalid_hop_is_rejected(hop):
    headers = with_field(dict(encode_headers(META, [])), "h", hop)
    with pytest.raises(HeaderError, match="h="):
        decode_headers(headers)


def test_path_not_ending_with_origin_is_rejected():
    headers = with_field(dict(encode_headers(META, [])), "path", "sopA/sopB")
    with pytest.raises(HeaderError, match="must end with the origin"):
        decode_headers(headers)


@pytest.mark.parametrize("exten", ["100&PJSIP/evil", "1 2", "", "1@x", "a" * 81, "1,2"])
def test_invalid_extension_header_is_rejected(exten):
    headers = with_field(dict(encode_headers(META, [])), "e", exten)
    with pytest.raises(HeaderError):
        decode_headers(headers)


def test_signed_headers_verify():
    decoded = roundtrip(["a", "b"], SECRET)
    assert decoded.verified and decoded.params == ("a", "b", "", "")


def test_signature_is_lowercase_hex_sha256():
    sig = fields(dict(encode_headers(META, ["a"], SECRET))[HDR_ROUTE])["sig"]
    assert len(sig) == 64 and sig == sig.lower() and int(sig, 16) >= 0


def test_unsigned_decode_reports_not_verified_and_ignores_sig():
    headers = with_field(dict(encode_headers(META, ["a"], SECRET)), "sig", "0" * 64)
    assert decode_headers(headers).verified is False


def test_missing_signature_with_secret_is_a_signature_error():
    headers = dict(encode_headers(META, ["a"]))
    with pytest.raises(SignatureError, match="missing"):
        decode_headers(headers, SECRET)


def test_wrong_secret_fails_verification():
    headers = dict(encode_headers(META, ["a"], SECRET))
    with pytest.raises(SignatureError, match="does not match"):
        decode_headers(headers, SECRET + "x")


def test_overlong_signature_is_a_signature_error():
    headers = dict(encode_headers(META, ["a"], SECRET))
    headers = with_field(headers, "sig", fields(headers[HDR_ROUTE])["sig"] + "0")
    with pytest.raises(SignatureError, match="lowercase hex"):
        decode_headers(headers, SECRET)


def test_surrounding_linear_whitespace_of_header_values_is_ignored():
    headers = {k: f" {v}\t" for k, v in encode_headers(META, ["p"], SECRET)}
    assert decode_headers(headers, SECRET).params[0] == "p"


def test_uppercase_signature_is_rejected():
    headers = dict(encode_headers(META, ["a"], SECRET))
    headers = with_field(headers, "sig", fields(headers[HDR_ROUTE])["sig"].upper())
    with pytest.raises(SignatureError, match="lowercase hex"):
        decode_headers(headers, SECRET)


def test_removing_a_nonempty_parameter_breaks_the_signature():
    headers = with_field(dict(encode_headers(META, ["a", "b"], SECRET)), "p2")
    with pytest.raises(SignatureError):
        decode_headers(headers, SECRET)


def test_signature_error_is_a_header_error():
    assert issubclass(SignatureError, HeaderError) and issubclass(HeaderError, ValueError)


def test_signing_input_is_length_prefixed():
    data = codec.signing_input(META, ("a", "", "", ""))
    assert data == b"19:X-CallService-Sig/1,1:1,4:sopA,4:sopA,1:1,4:1001,1:a,0:,0:,0:,"


def test_signing_input_distinguishes_shifted_field_boundaries():
    a = codec.signing_input(META, ("ab", "c", "", ""))
    b = codec.signing_input(META, ("a", "bc", "", ""))
    assert a != b


def test_empty_secret_is_rejected():
    with pytest.raises(codec.CallServiceError, match="secret"):
        encode_headers(META, [], "")


def test_bytes_secret_equals_its_utf8_str():
    empty = ("", "", "", "")
    assert codec.sign(META, empty, "clé") == codec.sign(META, empty, "clé".encode())


@pytest.mark.parametrize("name", ["sopA", "SOP_2", "node-1.example", "a" * 64])
def test_valid_sop_names_are_accepted(name):
    assert codec.validate_sop_name(name) == name


@pytest.mark.parametrize("name", ["", "a" * 65, "sop A", "sop;B", "sop,B", "sopé", "a/b", "a:b"])
def test_invalid_sop_names_are_rejected(name):
    with pytest.raises(InvalidNameError):
        codec.validate_sop_name(name)


@pytest.mark.parametrize("exten", ["1001", "*97", "#1", "+3227001234", "_svc.vm-1", "a" * 80])
def test_valid_extensions_are_accepted(exten):
    assert codec.validate_extension(exten) == exten


@pytest.mark.parametrize("char", list("&/@,;()^| \t'\"\\\r\n${}") + ["é"])
def test_extension_with_dial_string_or_header_character_is_rejected(char):
    with pytest.raises(InvalidNameError, match="extension"):
        codec.validate_extension(f"10{char}01")


def test_empty_and_overlong_extensions_are_rejected():
    for exten in ("", "1" * 81):
        with pytest.raises(InvalidNameError):
            codec.validate_extension(exten)


def test_outbound_meta_appends_local_sop_and_increments_hop():
    meta = CallMeta.outbound("sopB", "1001", ("sopA",), 1)
    assert meta == CallMeta(origin="sopB", path=("sopA", "sopB"), hop=2, exten="1001")


def test_outbound_meta_from_a_fresh_call_starts_at_hop_one():
    assert CallMeta.outbound("sopA", "1001", (), 0) == META


def test_outbound_meta_keeps_local_sop_once_at_the_end():
    meta = CallMeta.outbound("sopB", "1001", ("sopB", "sopA"), 1)
    assert meta.path == ("sopA", "sopB")


def test_error_messages_cut_long_user_input():
    with pytest.raises(InvalidNameError) as info:
        codec.validate_extension("&" * 10_000)
    assert len(str(info.value)) < 200 and "..." in str(info.value)
