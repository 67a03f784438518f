"""The parser: exactly the accepted ``SELECT`` shapes, everything else refused by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

from fabric.errors import InvalidQueryError, UnsupportedQueryError
from fabric.query.statement import Condition, Literal, Operand, OrderItem, ParsedQuery, SelectItem
from fabric.query.tokens import Token, tokenize

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


def parse(sql: str, *, with_params: bool = True) -> ParsedQuery:
    """The statement's table, columns, key conditions, order and limit.

    ``with_params`` says whether parameters will be passed (psycopg then reads ``%%`` in string
    literals as ``%``). Raises :class:`UnsupportedQueryError` naming the part that is not one of
    the accepted shapes, :class:`InvalidQueryError` when placeholders mix styles.
    """
    return _Parser(tokenize(sql, escaped_percent=with_params)).statement()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._at = 0
        self._alias: str | None = None
        self._table = ""
        self._qualifiers: list[tuple[str, str]] = []  # (qualifier, column), checked after FROM

    # -- token helpers

    @property
    def _peek(self) -> Token:
        return self._tokens[self._at]

    def _next(self) -> Token:
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
