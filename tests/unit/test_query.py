"""fabric.query: every accepted statement shape, the lookups it plans, the rows it returns, and
the shapes it refuses with the message that names the refused part."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from fabric.client import KeyColumn
from fabric.errors import InvalidQueryError, UnsupportedQueryError
from fabric.query import ReadPlan, bind, coerce_key_value, parse

USERS = (KeyColumn("id", "bigint", "int8", False),)
BIDS = (
    KeyColumn("item_id", "bigint", "int8", False),
    KeyColumn("bid_no", "integer", "int4", False),
)
KEYS = {"public.users": USERS, "public.bids": BIDS, "shop.codes": USERS}

Params = Sequence[Any] | Mapping[str, Any] | None


def plan(sql: str, params: Params = None, key: Sequence[KeyColumn] | None = None) -> ReadPlan:
    parsed = parse(sql, with_params=params is not None)
    return bind(parsed, key or KEYS[parsed.qualified], params)


def user(id_: int, **values: Any) -> dict[str, Any]:
    return {"id": id_, "email": f"u{id_}@example.com", "rating": Decimal("1.50"), **values}


def bid(item_id: int, bid_no: int) -> dict[str, Any]:
    return {"bid_no": bid_no, "item_id": item_id, "amount": Decimal(item_id * 10 + bid_no)}


# -- accepted shapes ---------------------------------------------------------------------------


def test_star_by_key_with_a_positional_parameter() -> None:
    p = plan("SELECT * FROM users WHERE id = %s", (5,))
    assert (p.table, p.primary_key, p.keys, p.select, p.limit) == (
        "public.users",
        ("id",),
        ((5,),),
        None,
        None,
    )


def test_keywords_and_unquoted_names_fold_case_and_a_semicolon_ends_it() -> None:
    p = plan("select ID, Email from PUBLIC.USERS where ID = %(id)s;", {"id": 7, "unused": 1})
    assert p.table == "public.users"
    assert p.columns == ("id", "email")
    assert p.keys == ((7,),)


def test_quoted_identifiers_keep_their_case_and_quotes() -> None:
    key = (KeyColumn("Id", "bigint", "int8", False),)
    p = plan('SELECT "Id", "say ""hi""" FROM "public"."users" WHERE "Id" = 3', key=key)
    assert p.columns == ("Id", 'say "hi"')
    assert p.keys == ((3,),)


def test_a_composite_key_in_any_order_gives_the_key_in_constraint_order() -> None:
    p = plan("SELECT * FROM bids WHERE bid_no = %s AND item_id = %s", (2, 7))
    assert p.keys == ((7, 2),)


def test_in_lists_drop_duplicates_and_nulls() -> None:
    p = plan("SELECT id FROM users WHERE id IN (%s, %s, %s, %s)", (3, 1, 3, None))
    assert p.keys == ((3,), (1,))


def test_any_of_a_list_parameter() -> None:
    p = plan("SELECT id FROM users WHERE id = ANY(%s)", ([3, None, 1, 1],))
    assert p.keys == ((3,), (1,))


def test_integer_and_string_literals_read_as_the_key_type() -> None:
    p = plan("SELECT id FROM users WHERE id IN (1, -2, ' 3 ', '+4')")
    assert p.keys == ((1,), (-2,), (3,), (4,))


def test_integers_outside_the_column_range_match_no_row() -> None:
    p = plan("SELECT * FROM bids WHERE item_id = %s AND bid_no IN (%s, %s)", (1, 2**31, 5))
    assert p.keys == ((1, 5),)
    assert plan("SELECT * FROM users WHERE id = %s", (-(2**63) - 1,)).keys == ()


def test_in_lists_on_a_composite_key_multiply() -> None:
    p = plan("SELECT * FROM bids WHERE (item_id IN (2, 1)) AND (bid_no = ANY(%s))", ([1, 2],))
    assert p.keys == ((2, 1), (2, 2), (1, 1), (1, 2))


def test_a_value_may_come_first() -> None:
    assert plan("SELECT * FROM users WHERE %s = id", (9,)).keys == ((9,),)


def test_comments_and_whitespace() -> None:
    sql = "-- profile\n  SELECT /* columns */ id\n\tFROM users\nWHERE id = 1 -- one\n"
    assert plan(sql).keys == ((1,),)


def test_aliases_of_the_table_and_the_columns() -> None:
    p = plan("SELECT u.id AS user_id, email FROM users AS u WHERE u.id = 1 ORDER BY user_id DESC")
    assert [(i.column, i.name) for i in p.select or ()] == [("id", "user_id"), ("email", "email")]
    assert [(o.column, o.descending) for o in p.order_by] == [("id", True)]
    assert plan("SELECT users.id FROM public.users WHERE users.id = 1").columns == ("id",)
    assert plan("SELECT x.id FROM users x WHERE x.id = 1").columns == ("id",)


def test_order_by_and_limit() -> None:
    p = plan("SELECT * FROM bids WHERE item_id IN (1, 2) AND bid_no = 1 ORDER BY item_id DESC, "
             "bid_no ASC LIMIT 3")  # fmt: skip
    assert [(o.column, o.descending) for o in p.order_by] == [("item_id", True), ("bid_no", False)]
    assert p.limit == 3


@pytest.mark.parametrize(
    ("tail", "params", "limit"),
    [("LIMIT ALL", None, None), ("LIMIT NULL", None, None), ("LIMIT %s", [None], None),
     ("LIMIT %s", [0], 0), ("LIMIT %s", ["4"], 4), ("LIMIT 2", None, 2)],
)  # fmt: skip
def test_limit_forms(tail: str, params: list[Any] | None, limit: int | None) -> None:
    assert plan(f"SELECT * FROM users WHERE id = 1 {tail}", params).limit == limit


def test_psycopg_placeholder_forms_and_percent_escapes() -> None:
    key = (KeyColumn("code", "text", "text", False),)
    p = plan("SELECT * FROM shop.codes WHERE code IN (%b, %t, '50%%')", ("a", "b"), key)
    assert p.keys == (("a",), ("b",), ("50%",))
    p = plan("SELECT * FROM shop.codes WHERE code = '50%%'", None, key)
    assert p.keys == (("50%%",),)  # without params psycopg sends the statement as it is
    assert plan("SELECT * FROM users WHERE id = %(k)b", {"k": 2}).keys == ((2,),)


def test_strings_read_as_the_key_column_type() -> None:
    assert coerce_key_value(" 42 ", "int8", "bigint") == 42
    assert coerce_key_value("1.50", "numeric", "numeric(4,2)") == Decimal("1.50")
    assert coerce_key_value("NaN", "float8", "double precision") != 0
    assert coerce_key_value(3, "float8", "double precision") == 3.0
    some = uuid.uuid4()
    assert coerce_key_value(str(some).upper(), "uuid", "uuid") == some
    assert coerce_key_value("2020-02-29", "date", "date") == date(2020, 2, 29)
    assert coerce_key_value("yes", "bool", "boolean") is True
    assert coerce_key_value("42", "text", "text") == "42"
    assert coerce_key_value(42, "int8", "bigint") == 42


# -- rows: order, duplicates, projection -------------------------------------------------------


def test_rows_come_in_key_order_without_order_by_and_missing_keys_give_none() -> None:
    p = plan("SELECT id, email FROM users WHERE id IN (9, 2, 5, 7)")
    rows = [user(9), user(2), None, user(5)]
    assert p.result(rows, as_dicts=False) == [
        (2, "u2@example.com"),
        (5, "u5@example.com"),
        (9, "u9@example.com"),
    ]


def test_order_by_desc_and_limit_after_ordering() -> None:
    p = plan("SELECT id FROM users WHERE id IN (9, 2, 5) ORDER BY id DESC LIMIT 2")
    assert p.result([user(9), user(2), user(5)], as_dicts=False) == [(9,), (5,)]


def test_ties_follow_the_index_direction_of_the_first_order_item() -> None:
    rows = [bid(1, 1), bid(2, 1), bid(1, 2), bid(2, 2)]
    sql = "SELECT item_id, bid_no FROM bids WHERE item_id IN (1, 2) AND bid_no IN (1, 2)"
    assert plan(sql).result(rows, as_dicts=False) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert plan(sql + " ORDER BY item_id DESC").result(rows, as_dicts=False) == [
        (2, 2),
        (2, 1),
        (1, 2),
        (1, 1),
    ]
    assert plan(sql + " ORDER BY bid_no DESC, item_id").result(rows, as_dicts=False) == [
        (1, 2),
        (2, 2),
        (1, 1),
        (2, 1),
    ]


def test_a_row_found_twice_is_returned_once() -> None:
    p = plan("SELECT * FROM users WHERE id IN (%s, %s)", (1, Decimal(1)))
    assert p.result([user(1), user(1)], as_dicts=False) == [tuple(user(1).values())]


def test_dicts_carry_the_select_names_and_star_keeps_table_column_order() -> None:
    p = plan("SELECT rating, id AS key FROM users WHERE id = 1")
    assert p.result([user(1)], as_dicts=True) == [{"rating": Decimal("1.50"), "key": 1}]
    star = plan("SELECT * FROM users WHERE id = 1").result([user(1)], as_dicts=True)
    assert list(star[0]) == ["id", "email", "rating"]


def test_nan_sorts_above_every_number_and_char_padding_is_ignored() -> None:
    key = (KeyColumn("k", "numeric", "numeric", False),)
    p = plan("SELECT k FROM shop.codes WHERE k = ANY(%s)", ([1],), key)
    rows = [{"k": Decimal("NaN")}, {"k": Decimal("Infinity")}, {"k": Decimal("-1")}]
    assert [str(r[0]) for r in p.result(rows, as_dicts=False)] == ["-1", "Infinity", "NaN"]
    key = (KeyColumn("k", "character(3)", "bpchar", False),)
    p = plan("SELECT k FROM shop.codes WHERE k = ANY(%s) ORDER BY k", (["a"],), key)
    assert p.result([{"k": "a  "}, {"k": "a\t "}], as_dicts=False) == [("a  ",), ("a\t ",)]


def test_an_unknown_column_is_an_invalid_query() -> None:
    p = plan("SELECT id, nickname FROM users WHERE id = 1")
    with pytest.raises(InvalidQueryError) as caught:
        p.result([user(1)], as_dicts=False)
    assert str(caught.value) == "column nickname does not exist in public.users"


# -- refused shapes ----------------------------------------------------------------------------

UNSUPPORTED = [
    ("SELECT * FROM users u JOIN items i ON i.seller_id = u.id WHERE u.id = 1",
     "JOIN is not supported: only one table is read"),
    ("SELECT * FROM users, items WHERE id = 1", "JOIN is not supported: only one table is read"),
    ("SELECT * FROM users WHERE id = 1 OR id = 2",
     "OR is not supported: only primary-key reads are"),
    ("SELECT * FROM users WHERE email = %s",
     "the condition on email is not supported: only the key of public.users (id) can be looked "
     "up"),
    ("SELECT * FROM users WHERE id = 1 AND is_active = 'true'",
     "the condition on is_active is not supported: only the key of public.users (id) can be "
     "looked up"),
    ("SELECT * FROM users WHERE lower(email) = 'a'", "the function lower() is not supported"),
    ("SELECT count(*) FROM users WHERE id = 1", "the function count() is not supported"),
    ("SELECT id FROM users WHERE id = 1 GROUP BY id",
     "GROUP BY is not supported: only primary-key reads are"),
    ("SELECT * FROM users WHERE id IN (SELECT seller_id FROM items)",
     "a subquery is not supported"),
    ("SELECT * FROM users WHERE id > 5",
     "the comparison > is not supported: only = , IN and = ANY on keys"),
    ("SELECT * FROM bids WHERE item_id = 1",
     "the conditions leave bid_no open: a key read fixes every key column of public.bids "
     "(item_id, bid_no); scan a key prefix with the client"),
    ("SELECT * FROM users WHERE id = 1 ORDER BY email",
     "ORDER BY email is not supported: only key columns order a key read"),
    ("SELECT * FROM users WHERE id = 1 LIMIT 1 OFFSET 1",
     "OFFSET is not supported: only primary-key reads are"),
    ("SELECT * FROM users",
     "expected WHERE after the table: a key read names its key, found 'end of statement'"),
    ("SELECT * FROM users WHERE id = %s::bigint",
     "casts (::) are not supported: pass a typed parameter"),
    ("SELECT DISTINCT id FROM users WHERE id = 1",
     "DISTINCT is not supported: only primary-key reads are"),
    ("SELECT * FROM users WHERE id = 1; SELECT 1",
     "several statements are not supported: send one"),
    ("UPDATE users SET email = 'x' WHERE id = 1", "expected SELECT at the start, found 'UPDATE'"),
    ("SELECT * FROM users WHERE id IN %s",
     "id IN %s is psycopg 2's tuple syntax: write id = ANY(%s) with a list"),
    ("SELECT * FROM users WHERE id IS NULL",
     "IS [NOT] NULL is not supported: only primary-key reads are"),
    ("WITH u AS (SELECT 1) SELECT * FROM u WHERE id = 1",
     "WITH (common table expressions) is not supported: only primary-key reads are"),
    ("SELECT * FROM users WHERE id = 1 AND id = 2", "id is constrained twice"),
    ("SELECT * FROM users WHERE id = 1.5",
     "the literal 1.5 is not supported: only integers and quoted strings"),
    ("SELECT * FROM users WHERE id = NULL",
     "the literal NULL is not supported: pass it as a parameter"),
    ("SELECT * FROM users WHERE id = 1 FOR UPDATE",
     "FOR UPDATE/SHARE (locking) is not supported: only primary-key reads are"),
    ("SELECT * FROM users WHERE NOT id = 1", "NOT is not supported: only primary-key reads are"),
    ("SELECT * FROM users WHERE id = ANY(ARRAY[1, 2])",
     "expected a list parameter in ANY(…), found 'ARRAY'"),
    ("SELECT * FROM users WHERE id = seller_id",
     "comparing with the column seller_id is not supported: only with values"),
    ("SELECT * FROM users WHERE id = 1 ORDER BY 1",
     "ORDER BY a column position is not supported"),
    ("SELECT * FROM users WHERE id = 'abc'",
     "cannot read 'abc' as bigint for the key column id: pass a value of its Python type"),
    ("SELECT * FROM users WHERE id = 1 ORDER BY id NULLS FIRST",
     "NULLS FIRST/LAST is not supported: only primary-key reads are"),
    ("SELECT * FROM users WHERE id = E'1'",
     "the literal E'1' is not supported: pass it as a parameter"),
    ("SELECT * FROM users WHERE id IN (1, int8 '2')",
     "the literal int8 '2' is not supported: pass it as a parameter"),
    ("SELECT * FROM users WHERE id = $1", "cannot read the statement at '$1'"),
    ("SELECT * FROM users WHERE id = 1 UNION SELECT * FROM users WHERE id = 2",
     "UNION is not supported: only primary-key reads are"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "message"), UNSUPPORTED)
def test_unsupported_shapes_name_the_refused_part(sql: str, message: str) -> None:
    with pytest.raises(UnsupportedQueryError) as caught:
        plan(sql)
    assert str(caught.value) == message


def test_ordering_by_an_enum_key_is_refused() -> None:
    key = (KeyColumn("status", "item_status", "public.item_status", True),)
    assert plan("SELECT * FROM shop.codes WHERE status = 'sold'", None, key).keys == (("sold",),)
    with pytest.raises(UnsupportedQueryError) as caught:
        plan("SELECT * FROM shop.codes WHERE status IN ('a', 'b') ORDER BY status", None, key)
    assert str(caught.value) == (
        "ORDER BY the enum column status is not supported: its labels' order is not known here"
    )


def test_a_string_for_a_key_type_without_a_reader_is_refused() -> None:
    key = (KeyColumn("at", "timestamp with time zone", "timestamptz", False),)
    with pytest.raises(UnsupportedQueryError) as caught:
        plan("SELECT * FROM shop.codes WHERE at = %s", ("2020-01-01",), key)
    assert str(caught.value) == (
        "cannot read '2020-01-01' as timestamp with time zone for the key column at: pass a "
        "value of its Python type"
    )


INVALID = [
    ("SELECT * FROM users WHERE id IN (%s, %(x)s)", {"x": 1},
     "the statement mixes %s and %(name)s placeholders"),
    ("SELECT * FROM users WHERE id = %s", (), "the query has 1 placeholders but 0 parameters were "
     "passed"),
    ("SELECT * FROM users WHERE id = 1", [1], "the query has 0 placeholders but 1 parameters were "
     "passed"),
    ("SELECT * FROM users WHERE id = %s", None, "the query has 1 placeholders, no params"),
    ("SELECT * FROM users WHERE id = %(id)s", {"key": 1}, "no parameter named 'id' was passed"),
    ("SELECT * FROM users WHERE id = %(id)s", [1], "%(name)s placeholders take a mapping of "
     "parameters"),
    ("SELECT * FROM users WHERE id = %s", {"id": 1}, "%s placeholders take a sequence of "
     "parameters"),
    ("SELECT * FROM users WHERE id = ANY(%s)", [(1, 2)], "id = ANY(…) takes a list (psycopg adapts "
     "only lists to arrays), got tuple"),
    ("SELECT * FROM users WHERE id = 1 LIMIT -1", None, "LIMIT must not be negative"),
    ("SELECT * FROM users WHERE id = 1 LIMIT %s", ["x"], "LIMIT takes an integer, got 'x'"),
    ("SELECT * FROM users WHERE id = %s AND email = '5%'", [1], "a lone % in '5%': write %% when "
     "passing params"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "params", "message"), INVALID)
def test_malformed_statements_and_parameters(sql: str, params: Params, message: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        plan(sql, params)
    assert str(caught.value) == message
