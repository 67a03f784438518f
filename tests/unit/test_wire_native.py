"""The native row plan (fabric/rpc/_wire.c) writes exactly what the Python writers write.

Whatever a column holds, the plan either writes the same bytes as
:meth:`RowWriter.reference_row` or declines (None) so that the Python path answers; where the
Python path raises, the plan always declines. Whole answers from stored values match the
answers composed in Python.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric.core.types import (
    UNAVAILABLE_VALUE,
    Column,
    ColumnType,
    TableSchema,
    UnavailableValueError,
    UnknownColumnsError,
)
from fabric.errors import FabricError
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.wire import AnswerWriter, RowWriter, get_response, lookup_result
from fabric.state.row import StoredRow
from tests.unit.test_types import (
    BOOL,
    BYTEA,
    CASES,
    CHAR,
    DATE,
    DOUBLE,
    INT2,
    INT4,
    INT8,
    INTERVAL,
    JSON,
    JSONB,
    MOOD,
    NUMERIC,
    NUMERIC_12_2,
    REAL,
    TEXT,
    TIME,
    TIMESTAMP,
    TIMESTAMPTZ,
    UUID,
    VARCHAR,
)

ID = Column("id", INT8, not_null=True)
SCALARS = (
    INT2,
    INT4,
    INT8,
    NUMERIC,
    NUMERIC_12_2,
    REAL,
    DOUBLE,
    TEXT,
    VARCHAR,
    CHAR,
    BOOL,
    UUID,
    DATE,
    TIME,
    TIMESTAMP,
    TIMESTAMPTZ,
    INTERVAL,
    JSON,
    JSONB,
    BYTEA,
    MOOD,
)
ALL_TYPES = (
    *SCALARS,
    ColumnType("integer[]", "int4", is_array=True),
    ColumnType("text[]", "text", is_array=True),
)


def _writer(column_type: ColumnType, **column: Any) -> RowWriter:
    return RowWriter(TableSchema("wire", "t", (ID, Column("v", column_type, **column)), ("id",)))


def _reference(writer: RowWriter, document: dict[str, Any], ignore_unknown: bool = False) -> Any:
    """The Python path's bytes, or the exception it raises."""
    try:
        return writer.reference_row(document, ignore_unknown=ignore_unknown)
    except (FabricError, UnknownColumnsError, UnavailableValueError, UnicodeError) as exc:
        return exc


def _same_or_declined(writer: RowWriter, document: dict[str, Any]) -> bytes | None:
    native = writer.plan.row(document, False)
    expected = _reference(writer, document)
    if isinstance(expected, Exception):
        assert native is None, f"the plan wrote {native!r} where Python raises {expected!r}"
    elif native is not None:
        assert native == expected
    return native


@pytest.mark.parametrize(("column_type", "json_value", "expected"), CASES)
def test_every_sample_value_is_written_as_python_writes_it(
    column_type: ColumnType, json_value: Any, expected: Any
) -> None:
    _same_or_declined(_writer(column_type), {"id": 7, "v": json_value})


@pytest.mark.parametrize(
    ("column_type", "json_value"),
    [
        (INT2, -32768),
        (INT4, 2_147_483_647),
        (INT8, -(2**63)),
        (NUMERIC_12_2, "-1234.50"),
        (NUMERIC, "7"),
        (REAL, 1.5),
        (DOUBLE, -0.0),
        (DOUBLE, 1e308),
        (TEXT, "héllo ☺ \u0000 end"),
        (VARCHAR, ""),
        (CHAR, "ab   "),
        (BOOL, True),
        (BOOL, False),
        (UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (DATE, -719162),
        (DATE, 2932896),
        (TIME, 86_399_999_999),
        (TIMESTAMP, -62135596800000000),
        (TIMESTAMP, 253402300799999999),
        (TIMESTAMPTZ, "2025-03-01T12:34:56.789012Z"),
        (TIMESTAMPTZ, "0001-01-01T00:00:00Z"),
        (TIMESTAMPTZ, "2024-02-29T23:59:59.5Z"),
        (JSON, '{"a": [1, 2.5, "x"], "b": null}'),
        (JSONB, "[]"),
    ],
)
def test_the_common_values_are_written_natively(column_type: ColumnType, json_value: Any) -> None:
    assert _same_or_declined(_writer(column_type), {"id": 1, "v": json_value}) is not None


@pytest.mark.parametrize(
    ("column_type", "json_value"),
    [
        (INT2, 32768),  # out of range: Python raises
        (INT8, 2**63),
        (INT4, True),
        (DATE, 2932897),
        (TIME, 86_400_000_000),
        (NUMERIC, "1e5"),  # Debezium's scientific text goes the Python way
        (NUMERIC, "NAN"),
        (DOUBLE, 3),  # an integer for a float column
        (DOUBLE, "NaN"),
        (UUID, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
        (TIMESTAMPTZ, "2025-03-01T12:34:56+02:00"),
        (TIMESTAMPTZ, "2023-02-29T00:00:00Z"),
        (TIMESTAMPTZ, "2025-03-01T12:34:56.1234567Z"),
        (TIMESTAMPTZ, "infinity"),
        (JSON, "{not json"),
        (TEXT, "\ud800"),  # a lone surrogate: Python cannot encode it
        (TEXT, 5),
        (BYTEA, "AAEC"),
        (INTERVAL, "P0Y0M1DT0H0M0S"),
    ],
)
def test_anything_unusual_takes_the_python_way(column_type: ColumnType, json_value: Any) -> None:
    writer = _writer(column_type)
    document = {"id": 1, "v": json_value}
    written = _same_or_declined(writer, document)
    expected = _reference(writer, document)
    if not isinstance(expected, Exception):
        # Declined or not, RowWriter.row gives the Python bytes.
        assert writer.row(orjson.dumps(document)) == expected
    assert written is None or not isinstance(expected, Exception)


_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            UNAVAILABLE_VALUE,
            "NaN",
            "Infinity",
            "POSITIVE_INFINITY",
            "12.50",
            "-0.001",
            "1e3",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "2025-01-01T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00.Z",
            '{"k": 1}',
        ]
    ),
)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(column_type=st.sampled_from(ALL_TYPES), value=_JSON_VALUES)
def test_any_value_is_written_as_python_writes_it_or_declined(
    column_type: ColumnType, value: Any
) -> None:
    _same_or_declined(_writer(column_type), {"id": 3, "v": value})


_INSTANTS = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)
)


@given(instant=_INSTANTS, places=st.integers(min_value=0, max_value=6))
def test_utc_timestamps_are_written_natively_at_any_precision(
    instant: datetime, places: int
) -> None:
    unit = 10 ** (6 - places)
    instant = instant.replace(microsecond=instant.microsecond // unit * unit)
    text = (
        f"{instant.year:04d}-{instant.month:02d}-{instant.day:02d}"
        f"T{instant.hour:02d}:{instant.minute:02d}:{instant.second:02d}"
    )
    if places:
        text += "." + f"{instant.microsecond:06d}"[:places]
    written = _same_or_declined(_writer(TIMESTAMPTZ), {"id": 1, "v": f"{text}Z"})
    assert written is not None
    micros = (instant.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )
    assert pb.Row.FromString(written).fields[1].value.timestamptz == micros


def test_a_column_the_image_lacks_and_null() -> None:
    writer = RowWriter(
        TableSchema(
            "wire",
            "t",
            (ID, Column("v", TEXT), Column("w", INT4, missing=42), Column("x", DOUBLE)),
            ("id",),
        )
    )
    for document in ({"id": 1}, {"id": 1, "v": None, "x": None}, {"id": 1, "w": None}):
        assert writer.plan.row(document, False) == writer.reference_row(document)


def test_an_unknown_column_is_declined_unless_ignored() -> None:
    writer = _writer(INT4)
    document = {"id": 1, "v": 2, "dropped": "x"}
    assert writer.plan.row(document, False) is None
    assert writer.plan.row(document, True) == writer.reference_row(document, ignore_unknown=True)
    with pytest.raises(UnknownColumnsError):
        writer.row(orjson.dumps(document))


@pytest.mark.parametrize(("column_type", "placeholder"), [(TEXT, UNAVAILABLE_VALUE), (BYTEA, None)])
def test_a_toast_placeholder_is_declined(column_type: ColumnType, placeholder: Any) -> None:
    writer = _writer(column_type)
    for spelling in [placeholder] if placeholder else writer._columns[1][3]:
        assert writer.plan.row({"id": 1, "v": spelling}, False) is None
        with pytest.raises(UnavailableValueError):
            writer.row({"id": 1, "v": spelling})


def test_a_document_that_is_not_an_object_is_declined() -> None:
    writer = _writer(INT4)
    assert writer.plan.row([1, 2], False) is None
    assert writer.plan.row("x", False) is None


# -- whole answers ---------------------------------------------------------------------------

_TABLE = TableSchema(
    "wire",
    "answers",
    (
        ID,
        Column("name", TEXT),
        Column("balance", NUMERIC_12_2),
        Column("active", BOOL),
        Column("updated_at", TIMESTAMPTZ),
        Column("attrs", JSONB),
    ),
    ("id",),
)
_IMAGE = {
    "id": 42,
    "name": "row 42",
    "balance": "17.25",
    "active": True,
    "updated_at": "2025-06-01T08:00:00.25Z",
    "attrs": '{"tier": "gold"}',
}


def _python_answer(
    stored: StoredRow | None, *, lookup: bool, partition: int, applied: int, lag: int
) -> bytes:
    freshness = AnswerWriter("instance-7").freshness(
        lsn=(stored.lsn or 0) if stored else 0,
        commit_time_ms=(stored.commit_ts_ms or 0) if stored else 0,
        partition=partition,
        offset=stored.offset if stored else -1,
        applied_offset=applied,
        lag_records=lag,
    )
    row = RowWriter(_TABLE).reference_row(stored.image) if stored else None
    return (lookup_result if lookup else get_response)(row, freshness)


@pytest.mark.parametrize("lookup", [False, True])
@pytest.mark.parametrize(
    "stored",
    [
        None,
        StoredRow(123_456_789, 1_748_764_800_250, 17, orjson.dumps(_IMAGE)),
        StoredRow(None, None, 0, orjson.dumps(_IMAGE)),
        StoredRow(2**63 - 1, -5, 2**62, orjson.dumps({**_IMAGE, "name": None})),
    ],
)
@pytest.mark.parametrize(("partition", "applied", "lag"), [(0, -1, 0), (5, 99, 3), (2, 0, 2**40)])
def test_an_answer_is_the_one_composed_in_python(
    stored: StoredRow | None, lookup: bool, partition: int, applied: int, lag: int
) -> None:
    writer = RowWriter(_TABLE)
    answers = AnswerWriter("instance-7")
    value = stored.encode() if stored else None
    expected = _python_answer(stored, lookup=lookup, partition=partition, applied=applied, lag=lag)
    if lookup:
        (answer,) = answers.lookup_results(
            writer, [value], partition=partition, applied_offset=applied, lag_records=lag
        )
        assert answer == expected
        assert pb.LookupResult.FromString(answer).SerializeToString() == expected
    else:
        answer = answers.get_response(
            writer, value, partition=partition, applied_offset=applied, lag_records=lag
        )
        assert answer == expected
        assert pb.GetResponse.FromString(answer).SerializeToString() == expected


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x01\x00short",
        StoredRow(1, 2, 3, b"{}").encode().replace(b"\x01", b"\x02", 1),  # another version
        b"\x01\x80" + StoredRow(1, 2, 3, b"{}").encode()[2:],  # unknown flags
        StoredRow(1, 2, 3, b"not json").encode(),
        StoredRow(1, 2, 3, orjson.dumps({**_IMAGE, "extra": 1})).encode(),
        StoredRow(1, 2, 3, orjson.dumps({**_IMAGE, "name": UNAVAILABLE_VALUE})).encode(),
        StoredRow(1, 2, 3, orjson.dumps({**_IMAGE, "active": "yes"})).encode(),
    ],
)
def test_a_stored_value_the_python_path_must_judge_is_declined(value: bytes) -> None:
    writer = RowWriter(_TABLE)
    answers = AnswerWriter("i")
    assert answers.get_response(writer, value, partition=0, applied_offset=0, lag_records=0) is None
    assert (
        answers.lookup_results(writer, [value, None], partition=0, applied_offset=0, lag_records=0)[
            0
        ]
        is None
    )


def test_lookup_results_answer_each_value_in_order() -> None:
    writer = RowWriter(_TABLE)
    answers = AnswerWriter("i")
    values = [
        StoredRow(n, n * 10, n, orjson.dumps({**_IMAGE, "id": n})).encode() if n % 3 else None
        for n in range(1, 50)
    ]
    results = answers.lookup_results(writer, values, partition=1, applied_offset=60, lag_records=0)
    assert results == [
        answers.lookup_results(writer, [v], partition=1, applied_offset=60, lag_records=0)[0]
        for v in values
    ]
    found = [pb.LookupResult.FromString(r) for r in results if r is not None]
    assert [r.found for r in found] == [v is not None for v in values]


def test_a_row_written_before_is_answered_the_same_again() -> None:
    """The plan keeps the Rows it wrote; the second answer of a value (and of an equal value
    in another bytes object) is the first, with the second call's freshness."""
    writer = RowWriter(_TABLE)
    answers = AnswerWriter("instance-7")
    stored = StoredRow(5, 6, 7, orjson.dumps(_IMAGE))
    for partition, applied, lag in [(1, 10, 0), (1, 11, 3), (2, 12, 0)]:
        expected = _python_answer(
            stored, lookup=True, partition=partition, applied=applied, lag=lag
        )
        for value in (stored.encode(), bytes(bytearray(stored.encode()))):
            (answer,) = answers.lookup_results(
                writer, [value], partition=partition, applied_offset=applied, lag_records=lag
            )
            assert answer == expected
    expected = _python_answer(stored, lookup=False, partition=0, applied=1, lag=2)
    assert (
        answers.get_response(writer, stored.encode(), partition=0, applied_offset=1, lag_records=2)
        == expected
    )


def test_answers_stay_right_past_the_memo_of_written_rows() -> None:
    """Rows of ~100 KB: the plan's memo (16 MiB) empties several times over."""
    writer = RowWriter(_TABLE)
    answers = AnswerWriter("instance-7")
    values = [
        StoredRow(n, n, n, orjson.dumps({**_IMAGE, "id": n, "name": f"{n}" + "x" * 100_000}))
        for n in range(400)
    ]
    for _ in range(2):
        for stored in values[::7]:
            expected = _python_answer(stored, lookup=True, partition=0, applied=0, lag=0)
            (answer,) = answers.lookup_results(
                writer, [stored.encode()], partition=0, applied_offset=0, lag_records=0
            )
            assert answer == expected
        results = answers.lookup_results(
            writer, [v.encode() for v in values], partition=0, applied_offset=0, lag_records=0
        )
        assert [pb.LookupResult.FromString(r).row.fields[0].value.int for r in results if r] == [
            n for n in range(400)
        ]


def test_a_large_row_grows_the_buffer() -> None:
    writer = _writer(TEXT)
    text = "x" * 100_000 + "☺"
    document = {"id": 1, "v": text}
    assert writer.plan.row(document, False) == writer.reference_row(document)


def test_plan_columns_are_checked() -> None:
    writer = _writer(INT4)
    with pytest.raises(TypeError):
        type(writer.plan)(((1, 2),), orjson.loads)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        type(writer.plan)((("v", b"", 99, 0, 0, 0, str, (), b""),), orjson.loads)


# -- rows read straight from the stored JSON text ----------------------------------------------


def _spellings(document: dict[str, Any]) -> list[bytes]:
    """The same document as different JSON texts: compact, escaped to ASCII, spaced."""
    import json

    texts = [orjson.dumps(document)]
    try:
        texts.append(json.dumps(document, ensure_ascii=True).encode())
        texts.append(json.dumps(document, indent=1, ensure_ascii=False).encode())
    except ValueError:
        pass  # NaN and friends have no strict JSON spelling
    return texts


def _scanned_same_or_declined(writer: RowWriter, document: dict[str, Any]) -> list[bytes | None]:
    """Each spelling of ``document`` is read as the Python path reads what orjson parses of it
    (orjson writes a float infinity as null, for one)."""
    scanned = []
    for text in _spellings(document):
        try:
            expected = _reference(writer, orjson.loads(text))
        except orjson.JSONDecodeError as exc:
            expected = exc
        native = writer.plan.scan(text)
        if isinstance(expected, Exception):
            assert native is None, f"scanned {native!r} from {text!r} where Python raises"
        elif native is not None:
            assert native == expected, text
        scanned.append(native)
    return scanned


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(column_type=st.sampled_from(ALL_TYPES), value=_JSON_VALUES)
def test_any_stored_text_is_read_as_python_reads_it_or_declined(
    column_type: ColumnType, value: Any
) -> None:
    # Integers over 64 bits are beyond what a stored image can hold.
    with contextlib.suppress(orjson.JSONEncodeError):
        _scanned_same_or_declined(_writer(column_type), {"id": 3, "v": value})


@pytest.mark.parametrize(
    ("column_type", "json_value"),
    [
        (INT8, -(2**63)),
        (NUMERIC_12_2, "-1234.50"),
        (DOUBLE, 1.5e-300),
        (TEXT, 'quote " backslash \\ tab \t nul \u0000 é ☺ 😀'),
        (BOOL, False),
        (UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (DATE, 19000),
        (TIMESTAMPTZ, "2025-03-01T12:34:56.789Z"),
        (JSONB, '{"a": [1, 2.5e3, "x\\"y", {"b": null}], "c": true}'),
        (JSON, " 12 "),
    ],
)
def test_flat_rows_are_read_straight_from_their_text(
    column_type: ColumnType, json_value: Any
) -> None:
    scanned = _scanned_same_or_declined(_writer(column_type), {"id": 9, "v": json_value})
    assert all(s is not None for s in scanned)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"[]",
        b'{"id": 1,}',
        b'{"id": 01}',
        b'{"id": 1} x',
        b'{"id": 1, "id": 2}',
        b'{"id": 1, "v": "\\ud800"}',
        b'{"id": 1, "v": "\\x"}',
        b'{"id": 1, "v": "\xff"}',
        b'{"id": 1, "v": "\xed\xa0\x80"}',  # a surrogate in UTF-8
        b'{"id": 1, "v": "a\nb"}',  # a raw control character
        b'{"id": 1, "v": "__debezium_unavailable_value"}',
        b'{"id": 1, "v": ["a"]}',
        b'{"id": 1, "other": "x"}',
        b'{"i\\u0064": 1}',
        b'{"id": 9223372036854775808}',
        b'{"id": 1.0}',
        b'{"id": 1, "v": "x"',
    ],
)
def test_text_that_is_not_a_plain_stored_row_is_declined(text: bytes) -> None:
    assert _writer(TEXT).plan.scan(text) is None


@settings(max_examples=300)
@given(text=st.binary(max_size=80) | st.text(max_size=60).map(str.encode))
def test_any_bytes_are_declined_or_read_as_json(text: bytes) -> None:
    writer = _writer(JSONB)
    scanned = writer.plan.scan(b'{"id": 1, "v": ' + text + b"}")
    if scanned is not None:
        document = orjson.loads(b'{"id": 1, "v": ' + text + b"}")
        assert scanned == writer.reference_row(document)


def test_deep_json_values_are_left_to_python() -> None:
    writer = _writer(JSONB)
    deep = "[" * 200 + "]" * 200
    assert writer.plan.scan(orjson.dumps({"id": 1, "v": deep})) is None
    assert writer.row(orjson.dumps({"id": 1, "v": deep})) == writer.reference_row(
        {"id": 1, "v": deep}
    )


@settings(max_examples=300)
@given(inner=_JSON_VALUES, spaced=st.booleans())
def test_json_column_text_is_validated_as_python_does(inner: Any, spaced: bool) -> None:
    import json

    try:
        text = json.dumps(inner, indent=1 if spaced else None, allow_nan=False)
    except ValueError:
        return
    scanned = _scanned_same_or_declined(_writer(JSONB), {"id": 1, "v": text})
    assert scanned[0] is not None


# -- BatchGet framing --------------------------------------------------------------------------


@given(
    statuses=st.lists(
        st.sampled_from(["OK", "UNAVAILABLE", "NOT_FOUND", "INVALID_ARGUMENT", ""]), max_size=40
    ),
    text=st.text(max_size=300),
)
def test_batch_answers_frame_and_split_as_protobuf_does(statuses: list[str], text: str) -> None:
    from fabric.rpc.wire import (
        batch_get_response,
        batch_get_results,
        is_unavailable,
        unavailable_indexes,
    )

    results = [
        pb.LookupResult(status=status, message=text, found=bool(n % 2)).SerializeToString()
        for n, status in enumerate(statuses)
    ]
    framed = batch_get_response(results)
    assert (
        framed
        == pb.BatchGetResponse(
            results=[pb.LookupResult.FromString(r) for r in results]
        ).SerializeToString()
    )
    assert batch_get_results(framed) == results
    assert [is_unavailable(r) for r in results] == [s == "UNAVAILABLE" for s in statuses]
    # The text may spell an UNAVAILABLE status in a message: only the status counts.
    assert unavailable_indexes(framed, results) == [
        n for n, status in enumerate(statuses) if status == "UNAVAILABLE"
    ]


def test_a_batch_answer_with_other_fields_is_parsed_the_long_way() -> None:
    from fabric.rpc import _wire
    from fabric.rpc.wire import batch_get_results

    result = pb.LookupResult(status="OK").SerializeToString()
    unknown_field = b"\x10\x01"  # field 2, a varint: not what a BatchGetResponse holds here
    assert _wire.split_repeated(b"\x0a\x02OK" + unknown_field, 1) is None
    assert _wire.split_repeated(b"\x0a\x05OK", 1) is None  # truncated
    assert _wire.split_repeated(b"\x0a\xff", 1) is None  # a varint that never ends
    assert batch_get_results(b"\x0a" + bytes([len(result)]) + result) == [result]
    with pytest.raises(ValueError, match="field number"):
        _wire.frame_repeated([], 16)
