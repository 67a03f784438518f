"""Primary-key ``SELECT`` statements, parsed and planned as fabric lookups (pure: no I/O).

A service's key reads keep their SQL and run on the fabric instead of Postgres:
:func:`parse` accepts exactly these shapes (keywords in any case, identifiers quoted or not, a
trailing semicolon, psycopg's ``%s`` / ``%(name)s`` placeholders or integer and quoted-string
literals in their place)::

    SELECT * | col [AS name], ... FROM [schema.]table [[AS] alias]
    WHERE k = v                          -- one clause per key column, joined by AND, any order
       |  k IN (v, v, ...)               -- (a composite key multiplies its columns' values)
       |  k = ANY(%s)                    -- the parameter is a list, as psycopg adapts it
    [ORDER BY key_col [ASC|DESC], ...] [LIMIT n | ALL]

Everything else (joins, OR, non-key predicates, functions, casts, GROUP BY, subqueries …) raises
:class:`UnsupportedQueryError` naming the part, so the caller can send it to Postgres.

Row order. Without ``ORDER BY`` rows come in primary-key order, ascending: the order of a btree
scan of the primary-key index, which is what Postgres returns when it plans an index scan. SQL
promises no order without ``ORDER BY``, and Postgres keeps none for its other plans: a
sequential scan (what it picks for small tables) or a bitmap heap scan (for many keys) returns
the heap's physical order, which departs from key order as soon as rows are updated. Write
``ORDER BY`` when the order matters. With ``ORDER BY`` the rows come in that order; rows it leaves
tied (a composite key ordered by some of its columns) follow the primary key ascending, or
descending when the first ``ORDER BY`` item is ``DESC`` (a backward index scan's order); Postgres
orders such ties as its plan happens to. Text keys sort by code point, which is Postgres's order
under the ``C`` collation (the stack's databases); an enum key cannot be ordered here (its
labels' order is not in the topology).

Values are matched as Postgres matches them: a NULL value matches no row, a duplicate value gives
one row, an integer outside its column's range matches no row, and a quoted string (literal or
``str`` parameter) for a non-text key column is read as that column's type.
"""

from __future__ import annotations

import itertools
import math
import re
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn, Protocol

from fabric.errors import InvalidQueryError, UnsupportedQueryError

MAX_KEYS = 100_000

_INT_RANGES = {"int2": 2**15, "int4": 2**31, "int8": 2**63}
_TEXT_TYPES = frozenset({"text", "varchar", "bpchar"})
_BOOL_WORDS = {
    **dict.fromkeys(("t", "true", "y", "yes", "on", "1"), True),
    **dict.fromkeys(("f", "false", "n", "no", "off", "0"), False),
}
# Words whose presence means a shape this module does not answer, with how to name it.
_REFUSED_WORDS = {
    "join": "JOIN",
    "or": "OR",
    "not": "NOT",
    "group": "GROUP BY",
    "having": "HAVING",
    "union": "UNION",
    "intersect": "INTERSECT",
    "except": "EXCEPT",
    "offset": "OFFSET",
    "fetch": "FETCH",
    "for": "FOR UPDATE/SHARE (locking)",
    "distinct": "DISTINCT",
    "between": "BETWEEN",
    "like": "LIKE",
    "ilike": "ILIKE",
    "is": "IS [NOT] NULL",
    "with": "WITH (common table expressions)",
    "select": "a subquery",
    "window": "WINDOW",
    "returning": "RETURNING",
    "only": "ONLY",
    "nulls": "NULLS FIRST/LAST",
    "using": "USING",
    "collate": "COLLATE",
}
_JOINS = frozenset({"join", "inner", "left", "right", "full", "cross", "natural", "lateral"})
_KEYWORDS = frozenset(
    {"select", "from", "where", "and", "in", "any", "order", "by", "asc", "desc", "limit", "as"}
    | set(_REFUSED_WORDS)
)


class KeyColumnType(Protocol):
    """What planning needs of a key column (the topology's ``KeyColumn`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def pg_type(self) -> str: ...
    @property
    def base_type(self) -> str: ...
    @property
    def is_enum(self) -> bool: ...


# -- the parsed statement ----------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A placeholder: its position among the statement's placeholders, or its name."""

    key: int | str


@dataclass(frozen=True)
class Literal:
    value: int | str


Operand = Param | Literal


@dataclass(frozen=True)
class Condition:
    """``column = v``, ``column IN (v, ...)``, or ``column = ANY(param)`` (``array``)."""

    column: str
    operands: tuple[Operand, ...]
    array: bool = False


@dataclass(frozen=True)
class SelectItem:
    column: str
    name: str  # the result column's name: the alias, else the column


@dataclass(frozen=True)
class OrderItem:
    column: str
    descending: bool


@dataclass(frozen=True)
class ParsedQuery:
    schema: str
    table: str
    select: tuple[SelectItem, ...] | None  # None: *
    conditions: tuple[Condition, ...]
    order_by: tuple[OrderItem, ...]
    limit: Operand | None  # None: no LIMIT (or LIMIT ALL)
    placeholders: int  # how many positional placeholders; 0 for named ones
    named: bool  # the placeholders are %(name)s

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


# -- tokens ----------------------------------------------------------------------------------


_TOKEN = re.compile(
    r"""
    (?P<space>\s+|--[^\n]*|/\*.*?\*/)
  | (?P<param>%\((?P<name>[^)]*)\)[sbt]|%[sbt])
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)
  | (?P<symbol>::|<>|!=|<=|>=|\|\||[=<>(),.*;+\-/%\[\]|&^~!@#:?])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # word (unquoted, lower-cased), ident (quoted), string, number, param, symbol, end
    text: str  # the token's value: folded word, unquoted identifier, string contents …
    raw: str  # the token as written
    param: Param | None = None


def _tokens(sql: str, *, escaped_percent: bool) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    positional = 0
    while position < len(sql):
        match = _TOKEN.match(sql, position)
        if match is None:
            raise UnsupportedQueryError(f"cannot read the statement at {sql[position:][:20]!r}")
        position = match.end()
        kind = match.lastgroup
        raw = match.group()
        if kind == "space":
            continue
        if kind == "param":
            name = match.group("name")
            param = Param(name) if name is not None else Param(positional)
            positional += name is None
            tokens.append(_Token("param", raw, raw, param))
        elif kind == "string":
            text = raw[1:-1].replace("''", "'")
            if escaped_percent:
                # psycopg reads every % of a statement with parameters as a placeholder or %%.
                if "%" in text.replace("%%", ""):
                    raise InvalidQueryError(f"a lone % in {raw}: write %% when passing params")
                text = text.replace("%%", "%")
            tokens.append(_Token("string", text, raw))
        elif kind == "quoted":
            tokens.append(_Token("ident", raw[1:-1].replace('""', '"'), raw))
        elif kind == "word":
            tokens.append(_Token("word", raw.lower(), raw))
        else:
            tokens.append(_Token(kind or "symbol", raw, raw))
    tokens.append(_Token("end", "", "end of statement"))
    return tokens


# -- the parser ------------------------------------------------------------------------------


def parse(sql: str, *, with_params: bool = True) -> ParsedQuery:
    """The statement's table, columns, key conditions, order and limit.

    ``with_params`` says whether parameters will be passed (psycopg then reads ``%%`` in string
    literals as ``%``). Raises :class:`UnsupportedQueryError` naming the part that is not one of
    the accepted shapes, :class:`InvalidQueryError` when placeholders mix styles.
    """
    return _Parser(_tokens(sql, escaped_percent=with_params)).statement()


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._at = 0
        self._alias: str | None = None
        self._table = ""
        self._qualifiers: list[tuple[str, str]] = []  # (qualifier, column), checked after FROM

    # -- token helpers

    @property
    def _peek(self) -> _Token:
        return self._tokens[self._at]

    def _next(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _is(self, *words: str) -> bool:
        token = self._peek
        return (token.kind == "word" and token.text in words) or (
            token.kind == "symbol" and token.text in words
        )

    def _take(self, *words: str) -> bool:
        if self._is(*words):
            self._at += 1
            return True
        return False

    def _expect(self, word: str, where: str) -> None:
        if not self._take(word):
            self._refuse(f"expected {word.upper()} {where}")

    def _refuse(self, expected: str) -> NoReturn:
        token = self._peek
        if token.kind == "word" and token.text in _REFUSED_WORDS:
            raise UnsupportedQueryError(
                f"{_REFUSED_WORDS[token.text]} is not supported: only primary-key reads are"
            )
        if token.kind == "symbol" and token.text in ("<", ">", "<=", ">=", "<>", "!="):
            raise UnsupportedQueryError(
                f"the comparison {token.text} is not supported: only = , IN and = ANY on keys"
            )
        if token.kind == "symbol" and token.text == "::":
            raise UnsupportedQueryError("casts (::) are not supported: pass a typed parameter")
        raise UnsupportedQueryError(f"{expected}, found {token.raw!r}")

    def _identifier(self, what: str) -> str:
        token = self._peek
        if token.kind == "ident" or (token.kind == "word" and token.text not in _KEYWORDS):
            self._at += 1
            return token.text
        self._refuse(f"expected {what}")

    # -- grammar

    def statement(self) -> ParsedQuery:
        self._expect("select", "at the start")
        select = self._select_list()
        self._expect("from", "after the select list")
        schema, table = self._table_ref()
        self._expect("where", "after the table: a key read names its key")
        conditions = tuple(self._conditions())
        order_by = tuple(self._order_by(select)) if self._take("order") else ()
        limit = self._limit() if self._take("limit") else None
        if self._take(";") and self._peek.kind != "end":
            raise UnsupportedQueryError("several statements are not supported: send one")
        if self._peek.kind != "end":
            self._refuse("expected the end of the statement")
        params = [t.param for t in self._tokens if t.param is not None]
        named = [p for p in params if isinstance(p.key, str)]
        if named and len(named) != len(params):
            raise InvalidQueryError("the statement mixes %s and %(name)s placeholders")
        return ParsedQuery(
            schema=schema,
            table=table,
            select=select,
            conditions=conditions,
            order_by=order_by,
            limit=limit,
            placeholders=0 if named else len(params),
            named=bool(named),
        )

    def _select_list(self) -> tuple[SelectItem, ...] | None:
        if self._take("*"):
            return None
        items = []
        while True:
            column = self._column_ref()
            name = self._identifier("a column alias") if self._take("as") else column
            if self._is("("):
                raise UnsupportedQueryError(f"the function {column}() is not supported")
            items.append(SelectItem(column, name))
            if not self._take(","):
                return tuple(items)

    def _table_ref(self) -> tuple[str, str]:
        name = self._identifier("a table name")
        schema = "public"
        if self._take("."):
            schema, name = name, self._identifier("a table name after the schema")
        if self._is("("):
            raise UnsupportedQueryError(f"the table function {name}() is not supported")
        self._table = name
        if (
            self._take("as")
            or self._peek.kind == "ident"
            or (self._peek.kind == "word" and self._peek.text not in _KEYWORDS | _JOINS)
        ):
            self._alias = self._identifier("a table alias")
        if self._is(",", *_JOINS):
            raise UnsupportedQueryError("JOIN is not supported: only one table is read")
        self._check_qualifiers()
        return schema, name

    def _column_ref(self) -> str:
        if self._is("("):
            raise UnsupportedQueryError("an expression in parentheses is not supported")
        column = self._identifier("a column name")
        if self._is("("):
            raise UnsupportedQueryError(f"the function {column}() is not supported")
        if self._take("."):
            qualifier, column = column, self._identifier("a column name")
            self._qualifiers.append((qualifier, column))
            if self._table:
                self._check_qualifiers()
        return column

    def _check_qualifiers(self) -> None:
        for qualifier, column in self._qualifiers:
            if qualifier != (self._alias or self._table):
                raise UnsupportedQueryError(
                    f"{qualifier}.{column} names another table: only {self._table} is read"
                )

    def _conditions(self) -> Iterator[Condition]:
        while True:
            if self._take("("):
                yield from self._conditions()
                self._expect(")", "to close the parenthesis")
            else:
                yield self._condition()
            if not self._take("and"):
                return

    def _condition(self) -> Condition:
        if self._peek.kind in ("param", "string", "number") or self._is("-"):
            operand = self._operand()  # v = column, as some code writes it
            self._expect("=", "after a value: only column = value compares")
            return Condition(self._column_ref(), (operand,))
        column = self._column_ref()
        if self._take("in"):
            if self._peek.kind == "param":
                raise UnsupportedQueryError(
                    f"{column} IN %s is psycopg 2's tuple syntax: write {column} = ANY(%s)"
                    " with a list"
                )
            self._expect("(", "after IN")
            if self._is("select"):
                raise UnsupportedQueryError("a subquery is not supported")
            operands = [self._operand()]
            while self._take(","):
                operands.append(self._operand())
            self._expect(")", "to close the IN list")
            return Condition(column, tuple(operands))
        self._expect("=", f"after {column}: only =, IN and = ANY compare a key")
        if self._take("any"):
            self._expect("(", "after ANY")
            if self._peek.kind != "param":
                self._refuse("expected a list parameter in ANY(…)")
            param = self._next().param
            assert param is not None
            self._expect(")", "to close ANY(")
            return Condition(column, (param,), array=True)
        return Condition(column, (self._operand(),))

    def _operand(self) -> Operand:
        negative = self._take("-")
        token = self._next()
        if token.kind == "param" and not negative:
            assert token.param is not None
            return token.param
        if token.kind == "number" and token.text.isdigit():
            return Literal(-int(token.text) if negative else int(token.text))
        if token.kind == "number":
            raise UnsupportedQueryError(
                f"the literal {token.raw} is not supported: only integers and quoted strings"
            )
        if token.kind == "string" and not negative:
            return Literal(token.text)
        if token.kind == "word" and self._peek.kind == "string":  # E'…', date '…', U&'…'
            spelled = token.raw + ("" if len(token.raw) == 1 else " ") + self._peek.raw
            raise UnsupportedQueryError(
                f"the literal {spelled} is not supported: pass it as a parameter"
            )
        if token.kind == "word" and token.text in ("null", "true", "false"):
            raise UnsupportedQueryError(
                f"the literal {token.raw.upper()} is not supported: pass it as a parameter"
            )
        if token.kind == "word" and token.text == "select":
            raise UnsupportedQueryError("a subquery is not supported")
        if token.kind == "word" and self._is("("):
            raise UnsupportedQueryError(f"the function {token.raw}() is not supported")
        if token.kind in ("word", "ident"):
            raise UnsupportedQueryError(
                f"comparing with the column {token.text} is not supported: only with values"
            )
        self._at -= 1
        self._refuse("expected a value: a parameter, an integer or a quoted string")

    def _order_by(self, select: tuple[SelectItem, ...] | None) -> Iterator[OrderItem]:
        self._expect("by", "after ORDER")
        aliases = {item.name: item.column for item in select or ()}
        while True:
            if self._peek.kind == "number":
                raise UnsupportedQueryError("ORDER BY a column position is not supported")
            column = self._column_ref()
            column = aliases.get(column, column)
            descending = self._take("desc")
            if not descending:
                self._take("asc")
            if self._is("nulls", "using", "collate"):
                self._refuse("")
            yield OrderItem(column, descending)
            if not self._take(","):
                return

    def _limit(self) -> Operand | None:
        if self._take("all"):
            return None
        if self._peek.kind == "word" and self._peek.text == "null":
            self._at += 1
            return None
        return self._operand()


# -- binding: the statement, the table's key and the parameters give the lookups -------------


@dataclass(frozen=True)
class ReadPlan:
    """The lookups a statement needs and how to turn their rows into its result."""

    table: str
    primary_key: tuple[str, ...]
    keys: tuple[tuple[Any, ...], ...]  # distinct, in primary-key order
    select: tuple[SelectItem, ...] | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    sort_keys: tuple[Callable[[Any], Any], ...]  # per key column, Postgres's order

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the statement names (to check against the table's columns)."""
        return tuple(item.column for item in self.select or ())

    def check_columns(self, known: Collection[str]) -> None:
        """Raise :class:`InvalidQueryError` if the statement names a column not in ``known``."""
        for column in self.columns:
            if column not in known:
                raise InvalidQueryError(f"column {column} does not exist in {self.table}")

    def result(self, rows: Sequence[Mapping[str, Any] | None], *, as_dicts: bool) -> list[Any]:
        """The statement's rows from the lookups' answers (``None``: no such key), as tuples in
        select-list order, or as dicts, like a psycopg cursor's ``fetchall()``."""
        found: dict[tuple[Any, ...], Mapping[str, Any]] = {}
        for row in rows:
            if row is not None:
                self.check_columns(row.keys())
                found.setdefault(tuple(row[name] for name in self.primary_key), row)
        ordered = self._ordered(list(found.values()))
        if self.limit is not None:
            ordered = ordered[: self.limit]
        names = [i.name for i in self.select] if self.select is not None else None
        columns = [i.column for i in self.select] if self.select is not None else None
        if as_dicts:
            if names is None or columns is None:
                return [dict(row) for row in ordered]
            return [dict(zip(names, (row[c] for c in columns), strict=True)) for row in ordered]
        if columns is None:
            return [tuple(row.values()) for row in ordered]
        return [tuple(row[c] for c in columns) for row in ordered]

    def _ordered(self, rows: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        position = {name: i for i, name in enumerate(self.primary_key)}

        def by(columns: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
            return lambda row: tuple(self.sort_keys[position[c]](row[c]) for c in columns)

        backward = bool(self.order_by) and self.order_by[0].descending
        rows.sort(key=by(self.primary_key), reverse=backward)
        for item in reversed(self.order_by):
            rows.sort(key=by([item.column]), reverse=item.descending)  # stable: ties keep order
        return rows


def bind(
    query: ParsedQuery,
    key_columns: Sequence[KeyColumnType],
    params: Sequence[Any] | Mapping[str, Any] | None,
) -> ReadPlan:
    """The lookups of ``query`` on a table whose primary key is ``key_columns`` (in the
    constraint's order), with ``params`` bound as psycopg binds them.

    Raises :class:`UnsupportedQueryError` when the conditions do not fix every key column (or
    name others), :class:`InvalidQueryError` when the parameters do not fit the placeholders.
    """
    by_name = {c.name: c for c in key_columns}
    primary_key = tuple(c.name for c in key_columns)
    _check_shape(query, by_name, primary_key)
    values = _ParamValues(query, params)
    constrained: dict[str, list[Any]] = {}
    for condition in query.conditions:
        column = by_name[condition.column]
        operands = (
            values.array(condition.operands[0], column.name)
            if condition.array
            else [values.value(o) for o in condition.operands]
        )
        constrained[column.name] = _key_values(operands, column)
    count = 1
    for candidates in constrained.values():
        count *= len(candidates)
    if count > MAX_KEYS:
        raise UnsupportedQueryError(f"the conditions name {count} keys; at most {MAX_KEYS}")
    keys = tuple(itertools.product(*(constrained[name] for name in primary_key)))
    return ReadPlan(
        table=query.qualified,
        primary_key=primary_key,
        keys=keys,
        select=query.select,
        order_by=query.order_by,
        limit=None if query.limit is None else _limit(values.value(query.limit)),
        sort_keys=tuple(_sort_key(c) for c in key_columns),
    )


def _check_shape(
    query: ParsedQuery, by_name: Mapping[str, KeyColumnType], primary_key: tuple[str, ...]
) -> None:
    """Refuse conditions that are not one per key column, and orders not on key columns."""
    constrained: set[str] = set()
    for condition in query.conditions:
        if condition.column not in by_name:
            raise UnsupportedQueryError(
                f"the condition on {condition.column} is not supported: only the key of "
                f"{query.qualified} ({', '.join(primary_key)}) can be looked up"
            )
        if condition.column in constrained:
            raise UnsupportedQueryError(f"{condition.column} is constrained twice")
        constrained.add(condition.column)
    missing = [name for name in primary_key if name not in constrained]
    if missing:
        raise UnsupportedQueryError(
            f"the conditions leave {', '.join(missing)} open: a key read fixes every key column "
            f"of {query.qualified} ({', '.join(primary_key)}); scan a key prefix with the client"
        )
    for item in query.order_by:
        column = by_name.get(item.column)
        if column is None:
            raise UnsupportedQueryError(
                f"ORDER BY {item.column} is not supported: only key columns order a key read"
            )
        if column.is_enum:
            raise UnsupportedQueryError(
                f"ORDER BY the enum column {item.column} is not supported: its labels' order "
                "is not known here"
            )


class _ParamValues:
    def __init__(
        self, query: ParsedQuery, params: Sequence[Any] | Mapping[str, Any] | None
    ) -> None:
        if query.named:
            if not isinstance(params, Mapping):
                raise InvalidQueryError("%(name)s placeholders take a mapping of parameters")
        elif params is not None:
            if isinstance(params, Mapping | str | bytes) or not isinstance(params, Sequence):
                raise InvalidQueryError("%s placeholders take a sequence of parameters")
            if len(params) != query.placeholders:
                raise InvalidQueryError(
                    f"the query has {query.placeholders} placeholders but {len(params)} "
                    "parameters were passed"
                )
        elif query.placeholders:
            raise InvalidQueryError(f"the query has {query.placeholders} placeholders, no params")
        self._params = params

    def value(self, operand: Operand) -> Any:
        if isinstance(operand, Literal):
            return operand.value
        if isinstance(operand.key, str):
            assert isinstance(self._params, Mapping)
            if operand.key not in self._params:
                raise InvalidQueryError(f"no parameter named {operand.key!r} was passed")
            return self._params[operand.key]
        assert isinstance(self._params, Sequence)
        return self._params[operand.key]

    def array(self, operand: Operand, column: str) -> list[Any]:
        value = self.value(operand)
        if not isinstance(value, list):
            raise InvalidQueryError(
                f"{column} = ANY(…) takes a list (psycopg adapts only lists to arrays), "
                f"got {type(value).__name__}"
            )
        return value


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidQueryError(f"LIMIT takes an integer, got {value!r:.40}")
    if value < 0:
        raise InvalidQueryError("LIMIT must not be negative")
    return value


def _key_values(values: Sequence[Any], column: KeyColumnType) -> list[Any]:
    """The values that can match ``column``: NULLs, out-of-range integers and duplicates go."""
    kept: list[Any] = []
    seen: set[Any] = set()
    base = "text" if column.is_enum else column.base_type
    for given in values:
        if given is None:
            continue
        value = coerce_key_value(given, base, column.pg_type, column.name)
        bound = _INT_RANGES.get(base)
        if bound is not None and isinstance(value, int) and not -bound <= value < bound:
            continue
        marker = (type(value), value) if not isinstance(value, Decimal) else value
        try:
            if marker in seen:
                continue
            seen.add(marker)
        except TypeError:  # unhashable (a key type the server refuses): let it say why
            pass
        kept.append(value)
    return kept


def coerce_key_value(value: Any, base_type: str, pg_type: str, column: str = "") -> Any:
    """``value`` as the Python type of a key column, reading a ``str`` as Postgres reads a quoted
    literal of that type (``'42'`` for a bigint is 42). Other values pass as they are: the key
    codec checks them. Raises :class:`UnsupportedQueryError` for a string this module cannot
    read as the column's type."""
    if not isinstance(value, str) or base_type in _TEXT_TYPES:
        if isinstance(value, int) and not isinstance(value, bool) and base_type == "float8":
            return float(value)
        return value
    text = value.strip()
    reader = _STRING_READERS.get(base_type)
    try:
        if reader is not None:
            return reader(text)
    except (ValueError, InvalidOperation, KeyError):
        pass
    # Postgres reads more spellings than these readers (dates especially): never call a
    # string invalid here, let Postgres (the fallback) decide.
    raise UnsupportedQueryError(
        f"cannot read {value!r:.40} as {pg_type}"
        + (f" for the key column {column}" if column else "")
        + ": pass a value of its Python type"
    )


def _read_int(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(text)
    return int(text)


_STRING_READERS: dict[str, Callable[[str], Any]] = {
    "int2": _read_int,
    "int4": _read_int,
    "int8": _read_int,
    "numeric": Decimal,
    "float8": float,
    "uuid": uuid.UUID,
    "date": date.fromisoformat,
    "bool": lambda text: _BOOL_WORDS[text.lower()],
}


def _sort_key(column: KeyColumnType) -> Callable[[Any], Any]:
    """Postgres's order for the column's values: NaN sorts above every number, ``character(n)``
    ignores its padding, text compares by code point (the ``C`` collation)."""
    if column.base_type in ("numeric", "float8", "float4"):
        return lambda v: (1, 0) if _is_nan(v) else (0, v)
    if column.base_type == "bpchar":
        return lambda v: v.rstrip(" ")
    return lambda v: v


def _is_nan(value: Any) -> bool:
    return (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, Decimal) and value.is_nan()
    )
