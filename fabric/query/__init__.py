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

from fabric.query.parse import parse
from fabric.query.plan import MAX_KEYS, ReadPlan, bind
from fabric.query.statement import ParsedQuery
from fabric.query.values import KeyColumnType, coerce_key_value

__all__ = [
    "MAX_KEYS",
    "KeyColumnType",
    "ParsedQuery",
    "ReadPlan",
    "bind",
    "coerce_key_value",
    "parse",
]
