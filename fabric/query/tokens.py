"""A statement's tokens, with psycopg's placeholders read as it reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fabric.errors import InvalidQueryError, UnsupportedQueryError
from fabric.query.statement import Param

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
class Token:
    kind: str  # word (unquoted, lower-cased), ident (quoted), string, number, param, symbol, end
    text: str  # the token's value: folded word, unquoted identifier, string contents …
    raw: str  # the token as written
    param: Param | None = None


def tokenize(sql: str, *, escaped_percent: bool) -> list[Token]:
    tokens: list[Token] = []
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
            tokens.append(Token("param", raw, raw, param))
        elif kind == "string":
            text = raw[1:-1].replace("''", "'")
            if escaped_percent:
                # psycopg reads every % of a statement with parameters as a placeholder or %%.
                if "%" in text.replace("%%", ""):
                    raise InvalidQueryError(f"a lone % in {raw}: write %% when passing params")
                text = text.replace("%%", "%")
            tokens.append(Token("string", text, raw))
        elif kind == "quoted":
            tokens.append(Token("ident", raw[1:-1].replace('""', '"'), raw))
        elif kind == "word":
            tokens.append(Token("word", raw.lower(), raw))
        else:
            tokens.append(Token(kind or "symbol", raw, raw))
    tokens.append(Token("end", "", "end of statement"))
    return tokens
