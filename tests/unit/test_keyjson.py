"""Key bytes as Connect's JsonConverter writes them (schemas disabled), and their decoding.

Literal expected bytes marked "connect-json" were printed by JsonConverter from connect-json 4.3.1
with jackson-core 2.21.2 on JDK 25, for a Struct key holding the same fields.
"""

import json
import math
import random
import re
from decimal import Decimal

import pytest

from fabric.core.keyjson import KeyValue, decode_key, encode_key
from fabric.core.partitioner import murmur2, partition_for


def _string(value: str) -> bytes:
    """The JSON text :func:`encode_key` writes for a single string value."""
    return encode_key([("s", value)])[5:-1]


def _number(value: KeyValue) -> str:
    return encode_key([("x", value)])[5:-1].decode()


def _jackson_reference(text: str) -> str:
    """Jackson's string literal built from json.dumps plus the documented differences.

    json.dumps (``ensure_ascii=False``) already escapes exactly ``"``, ``\\`` and U+0000..U+001F
    with the same short forms; Jackson differs in writing the hex upper-case and in escaping each
    UTF-16 surrogate of a non-BMP character (and any lone surrogate).
    """
    dumped = json.dumps(text, ensure_ascii=False, separators=(",", ":"))
    dumped = re.sub(
        r"\\(u[0-9a-f]{4}|.)",
        lambda m: "\\u" + m.group(1)[1:].upper() if len(m.group(1)) == 5 else m.group(0),
        dumped,
    )
    out: list[str] = []
    for char in dumped:
        if ord(char) >= 0x10000 or 0xD800 <= ord(char) <= 0xDFFF:
            units = char.encode("utf-16-be", "surrogatepass")
            out.extend(f"\\u{units[i : i + 2].hex().upper()}" for i in range(0, len(units), 2))
        else:
            out.append(char)
    return "".join(out)


# --- whole keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected", "of_3", "of_6"),
    [
        ([("id", 1)], b'{"id":1}', 0, 0),
        ([("id", 2)], b'{"id":2}', 1, 4),
        ([("id", 42)], b'{"id":42}', 1, 1),
        ([("tenant_id", 7), ("order_id", 1001)], b'{"tenant_id":7,"order_id":1001}', 1, 4),
    ],
)
def test_stack_notes_keys_encode_and_route_like_connect(
    fields: list[tuple[str, KeyValue]], expected: bytes, of_3: int, of_6: int
) -> None:
    key = encode_key(fields)
    assert key == expected
    assert partition_for(key, 3) == of_3
    assert partition_for(key, 6) == of_6


@pytest.mark.parametrize(
    ("fields", "expected", "expected_hash"),
    [
        (
            [("email", "alice@example.com")],
            b'{"email":"alice@example.com"}',
            -636321721,
        ),
        ([("name", "\U0001f600")], b'{"name":"\\uD83D\\uDE00"}', 388768971),
        ([("name", "中文")], '{"name":"中文"}'.encode(), -1312604754),
        ([("名前", "Zoë")], '{"名前":"Zoë"}'.encode(), 1985032787),
        (
            [("s", '\x7f\u2028\u2029/"\\')],
            '{"s":"\x7f\u2028\u2029/\\"\\\\"}'.encode(),
            916938015,
        ),
        (
            [("lo", -(2**63)), ("hi", 2**63 - 1)],
            b'{"lo":-9223372036854775808,"hi":9223372036854775807}',
            1886020576,
        ),
        ([("b", b"\x00\xff\xfe\x80"), ("e", b"")], b'{"b":"AP/+gA==","e":""}', 1842593659),
        ([("t", True), ("f", False), ("n", None)], b'{"t":true,"f":false,"n":null}', -711939166),
        ([("x", 1.0), ("y", 1e10), ("z", 1e-5)], b'{"x":1.0,"y":1.0E10,"z":1.0E-5}', -676210184),
        (
            [("x", math.nan), ("y", math.inf), ("z", -math.inf)],
            b'{"x":"NaN","y":"Infinity","z":"-Infinity"}',
            736510868,
        ),
        (
            [("x", 5e-324), ("y", -0.0), ("z", 0.1 + 0.2)],
            b'{"x":4.9E-324,"y":-0.0,"z":0.30000000000000004}',
            177190504,
        ),
    ],
)
def test_keys_match_connect_json_byte_for_byte(
    fields: list[tuple[str, KeyValue]], expected: bytes, expected_hash: int
) -> None:
    # Expected bytes and hashes: connect-json.
    key = encode_key(fields)
    assert key == expected
    assert murmur2(key) == expected_hash


def test_fields_keep_the_given_order() -> None:
    assert encode_key([("b", 1), ("a", 2)]) == b'{"b":1,"a":2}'
    assert encode_key([("a", 2), ("b", 1)]) == b'{"a":2,"b":1}'


def test_a_key_without_fields_is_an_empty_object() -> None:
    assert encode_key([]) == b"{}"


def test_field_names_are_escaped_like_values() -> None:
    assert encode_key([('we"ird\n', 1)]) == b'{"we\\"ird\\n":1}'
    assert encode_key([("\U0001f511", 1)]) == b'{"\\uD83D\\uDD11":1}'


def test_a_repeated_field_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="repeated field name"):
        encode_key([("id", 1), ("id", 2)])


# --- strings -----------------------------------------------------------------------------------

_SHORT_FORMS = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


@pytest.mark.parametrize("code", range(0x20))
def test_each_control_character_uses_the_short_form_or_upper_case_hex(code: int) -> None:
    expected = _SHORT_FORMS.get(code, f"\\u{code:04X}")
    assert _string(chr(code)) == f'"{expected}"'.encode()


def test_all_control_characters_together_match_connect_json() -> None:
    text = "".join(chr(c) for c in range(0x20))
    # connect-json
    expected = (
        b'"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000B\\f\\r'
        b"\\u000E\\u000F\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018"
        b'\\u0019\\u001A\\u001B\\u001C\\u001D\\u001E\\u001F"'
    )
    assert _string(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", b'""'),
        ("plain ASCII 123", b'"plain ASCII 123"'),
        ('say "hi"', b'"say \\"hi\\""'),
        ("C:\\dir\\", b'"C:\\\\dir\\\\"'),
        ("\\u00ab", b'"\\\\u00ab"'),
        ("a/b</script>", b'"a/b</script>"'),
        ("\x7f", b'"\x7f"'),
        ("\u2028\u2029", '"\u2028\u2029"'.encode()),
        ("\x80\u00e9\u07ff\u0800\ufffd\uffff", '"\x80\u00e9\u07ff\u0800\ufffd\uffff"'.encode()),
        ("東京タワー", '"東京タワー"'.encode()),
        ("\U0001f600", b'"\\uD83D\\uDE00"'),
        ("\U00010000", b'"\\uD800\\uDC00"'),
        ("\U0010ffff", b'"\\uDBFF\\uDFFF"'),
        ("a\U0001f600b\U0001f44dc", b'"a\\uD83D\\uDE00b\\uD83D\\uDC4Dc"'),
        ("\ud800", b'"\\uD800"'),
        ("\udfff-", b'"\\uDFFF-"'),
        ("tab\there", b'"tab\\there"'),
        ("é\x1f", '"é\\u001F"'.encode()),
    ],
)
def test_strings_are_escaped_exactly_as_jackson_does(text: str, expected: bytes) -> None:
    assert _string(text) == expected


def test_random_strings_match_the_json_dumps_based_reference() -> None:
    rnd = random.Random(1234)
    interesting = [chr(c) for c in range(0x80)] + [
        "\u2028",
        "\u2029",
        "\u00e9",
        "\u07ff",
        "\u0800",
        "\u4e2d",
        "\ufeff",
        "\uffff",
        "\U0001f600",
        "\U00010000",
        "\U0010ffff",
        "\ud800",
        "\udbff",
        "\udc00",
    ]
    for _ in range(5000):
        chars = []
        for _ in range(rnd.randrange(0, 16)):
            if rnd.random() < 0.7:
                chars.append(rnd.choice(interesting))
            else:
                chars.append(chr(rnd.randrange(0x80, 0x110000)))
        text = "".join(chars)
        expected = _jackson_reference(text).encode("utf-8")
        assert _string(text) == expected, repr(text)


def test_the_reference_agrees_with_connect_json_on_a_mixed_string() -> None:
    text = "\U0001f600\x1f\x7f\u2028/"
    # connect-json: {"s":"\uD83D\uDE00\u001F<DEL><U+2028>/"}, murmur2 -556973426
    assert _jackson_reference(text).encode() == b'"\\uD83D\\uDE00\\u001F\x7f\xe2\x80\xa8/"'
    assert murmur2(encode_key([("s", text)])) == -556973426


# --- integers and booleans ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (7, "7"),
        (-1, "-1"),
        (-1001, "-1001"),
        (2**31 - 1, "2147483647"),
        (-(2**31), "-2147483648"),
        (2**63 - 1, "9223372036854775807"),
        (-(2**63), "-9223372036854775808"),
    ],
)
def test_integers_are_plain_decimal(value: int, expected: str) -> None:
    assert _number(value) == expected


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_integers_outside_int64_are_rejected_naming_the_field(value: int) -> None:
    with pytest.raises(
        ValueError, match=r"key field 'big' is -?\d+, outside Connect's INT64 range"
    ):
        encode_key([("big", value)])


def test_booleans_are_not_written_as_integers() -> None:
    assert encode_key([("a", True), ("b", False)]) == b'{"a":true,"b":false}'


def test_int_subclasses_are_written_as_their_integer_value() -> None:
    from enum import IntEnum

    class Region(IntEnum):
        EU = 3

    assert encode_key([("region", Region.EU)]) == b'{"region":3}'


# --- doubles -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # All confirmed with connect-json on JDK 25.
        (1.0, "1.0"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (0.1 + 0.2, "0.30000000000000004"),
        (4.35, "4.35"),
        (100.0, "100.0"),
        (123.456, "123.456"),
        (1.0000000000000002, "1.0000000000000002"),
        (0.001, "0.001"),
        (0.00099, "9.9E-4"),
        (0.0009999999999999998, "9.999999999999998E-4"),
        (1e-4, "1.0E-4"),
        (1e-5, "1.0E-5"),
        (-2.5e-7, "-2.5E-7"),
        (1234567.0, "1234567.0"),
        (9999999.0, "9999999.0"),
        (9999999.999999998, "9999999.999999998"),
        (1e7, "1.0E7"),
        (12345678.0, "1.2345678E7"),
        (1e10, "1.0E10"),
        (1e16, "1.0E16"),
        (1e21, "1.0E21"),
        (1e22, "1.0E22"),
        (1e23, "1.0E23"),
        (2e23, "2.0E23"),
        (1.7976931348623157e308, "1.7976931348623157E308"),
        (2.2250738585072014e-308, "2.2250738585072014E-308"),
        # Subnormals where Java prefers a closer 2-digit decimal to Python's 1-digit repr.
        (5e-324, "4.9E-324"),
        (1e-323, "9.9E-324"),
        (1.5e-323, "1.5E-323"),
    ],
)
def test_doubles_follow_java_double_to_string(value: float, expected: str) -> None:
    assert _number(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(math.nan, '"NaN"'), (math.inf, '"Infinity"'), (-math.inf, '"-Infinity"')],
)
def test_non_finite_doubles_are_quoted_strings(value: float, expected: str) -> None:
    assert _number(value) == expected


def test_random_doubles_round_trip_with_shortest_digits_in_java_layout() -> None:
    rnd = random.Random(99)
    layout = re.compile(r"-?(\d+\.\d+|\d\.\d+E-?\d+)")
    for _ in range(20000):
        value = rnd.choice(
            [
                rnd.uniform(-1e9, 1e9),
                rnd.uniform(-1e-2, 1e-2),
                math.ldexp(rnd.random(), rnd.randrange(-1074, 1024)),
                float(rnd.randrange(-(10**18), 10**18)),
            ]
        )
        text = _number(value)
        assert layout.fullmatch(text), text
        assert float(text) == value
        plain = "E" not in text
        assert plain == (value == 0 or 1e-3 <= abs(value) < 1e7), text
        if abs(value) >= 2.2250738585072014e-308:
            # Normal doubles: the same significant digits as Python's shortest repr.
            digits = re.sub(r"E.*|[-.]", "", text).strip("0")
            repr_digits = re.sub(r"e.*|[-.]", "", repr(value)).strip("0")
            assert digits == repr_digits, (text, repr(value))


# --- bytes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"", '""'),
        (b"\x00", '"AA=="'),
        (b"\x00\xff", '"AP8="'),
        (b"\xfb\xff\xbf", '"+/+/"'),
        (
            bytes(range(60)),
            '"'
            + "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7"
            + '"',
        ),
        (bytearray(b"\x03\xe7"), '"A+c="'),
    ],
)
def test_bytes_are_padded_standard_base64_without_line_breaks(value: bytes, expected: str) -> None:
    assert _number(value) == expected


# --- unsupported values ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [Decimal("9.99"), [1], {"a": 1}, object(), 1j])
def test_other_types_are_rejected_naming_the_field(value: object) -> None:
    with pytest.raises(TypeError, match="key field 'amount' has a value of type"):
        encode_key([("amount", value)])  # type: ignore[list-item]


# --- decoding ----------------------------------------------------------------------------------


def test_decode_keeps_field_order_and_values() -> None:
    decoded = decode_key(b'{"tenant_id":7,"order_id":1001}')
    assert decoded == {"tenant_id": 7, "order_id": 1001}
    assert list(decoded) == ["tenant_id", "order_id"]


@pytest.mark.parametrize(
    "fields",
    [
        [("id", 1)],
        [("tenant_id", 7), ("order_id", 1001)],
        [("z", "last"), ("a", "first")],
        [("s", '\U0001f600 \x00\x1f\x7f \u2028 / " \\ 東京')],
        [("t", True), ("f", False), ("n", None)],
        [("lo", -(2**63)), ("hi", 2**63 - 1)],
        [("x", 1.0), ("y", 1e10), ("z", -2.5e-7), ("w", 5e-324), ("v", -0.0)],
        [("\U0001f511", "key")],
    ],
)
def test_decode_inverts_encode(fields: list[tuple[str, KeyValue]]) -> None:
    decoded = decode_key(encode_key(fields))
    assert list(decoded.items()) == fields
    for (_, value), back in zip(fields, decoded.values(), strict=True):
        assert type(back) is type(value)


def test_decode_returns_lossy_types_as_json_gives_them() -> None:
    decoded = decode_key(encode_key([("b", b"\x03\xe7"), ("n", math.nan)]))
    assert decoded == {"b": "A+c=", "n": "NaN"}


@pytest.mark.parametrize("data", [b"5", b'"id"', b"[1]", b"null"])
def test_decode_rejects_a_key_that_is_not_an_object(data: bytes) -> None:
    with pytest.raises(ValueError, match="key is not a JSON object"):
        decode_key(data)


@pytest.mark.parametrize("data", [b"", b"{", b'{"id":1', b"\xff"])
def test_decode_rejects_malformed_json(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_key(data)
