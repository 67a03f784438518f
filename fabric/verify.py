"""Differential verification: the fabric's rows against the source rows in Postgres.

What is compared. For each table, every row (or the rows of ``sample`` primary keys drawn at
random in Postgres) is read from both sides and matched by primary key: a key only Postgres has is
*missing* in the fabric, a key only the fabric has is *extra*, and a key both have is compared
column by column, type and value (:func:`same_value`): NaN equals NaN, ``-0.0`` differs from
``0.0``, a ``Decimal`` must carry the scale psycopg returns (``1.50`` is not ``1.5``), and the
columns themselves must be the same. Postgres is read as psycopg returns rows to an application
(an enum array cast to ``text[]``, the one documented exception of docs/types.md).

Replication lag. The two sides are read at different moments and the fabric trails Postgres by
its replication lag, so a row written around the first pass can differ for no fault of the fabric.
Every key that mismatches is therefore read again on both sides — Postgres first, then the fabric
— until the two agree or ``recheck_s`` has passed, and only a key that still disagrees at its last
reading is reported. This is sound both ways:

- A mismatch that is lag disappears. All changes of one key travel on one partition of one topic,
  in commit order, and the fabric applies them in that order; so once it has applied what Postgres
  had committed when the key was re-read, its row equals that reading (unless the row changed
  again in between). A healthy fabric's lag is far below ``recheck_s``.
- A real divergence stays. A re-read can only clear a key whose two sides agree at that moment. A
  row the fabric lost, kept or stored wrong disagrees at every reading, whatever the lag; only a
  later change overwriting it could make it agree, and then the fabric is right again.

What remains after the deadline is a divergence, or a row changing so often that it never holds
still for one lag period (a hot row): re-run with a longer ``recheck_s`` or on a quiet table to tell
them apart. A sample draws its keys from Postgres, so it cannot find rows only the fabric has.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from fabric.catalog import read_table_schemas
from fabric.client import MAX_BATCH, FabricRow, Freshness, TableInfo, Topology
from fabric.core.types import TableSchema
from fabric.db import translated
from fabric.errors import InvalidKeyError

log = logging.getLogger(__name__)

Key = tuple[Any, ...]
Row = dict[str, Any]
DifferenceKind = Literal["missing", "extra", "differing"]

EXAMPLES = 5  # differences a report keeps whole, per table
_FIRST_PAUSE_S = 0.1
_MAX_PAUSE_S = 1.0


@dataclass(frozen=True)
class Difference:
    kind: DifferenceKind  # missing: only Postgres has the key; extra: only the fabric has it
    key: dict[str, Any]
    columns: tuple[str, ...]  # the columns that differ (differing only)
    source: Row | None  # the last readings of both sides
    fabric: Row | None


@dataclass(frozen=True)
class ComparedFreshness:
    """How current the fabric's side of the comparison was. Commit times are those of rows read
    by key (a sample, and every re-read); a scan's rows carry none in the client's API."""

    max_lag_records: int  # the largest partition lag any answer (or the topology) showed
    min_commit_time_ms: int | None
    max_commit_time_ms: int | None


@dataclass(frozen=True)
class TableReport:
    table: str
    sample: int | None  # the sample size asked for; None: every row
    compared: int  # keys compared: equal + missing + extra + differing
    equal: int
    missing: int
    extra: int
    differing: int
    columns: dict[str, int]  # differing column -> rows it differs in
    examples: tuple[Difference, ...]
    settled: int  # first-pass mismatches the re-reads saw agree: replication lag
    freshness: ComparedFreshness

    @property
    def ok(self) -> bool:
        return self.equal == self.compared


class FabricReads(Protocol):
    """What verification reads from the fabric (:class:`fabric.client.FabricClient` has it)."""

    def table_info(self, table: str) -> TableInfo: ...

    def topology(self) -> Topology: ...

    def scan(self, table: str) -> Iterator[dict[str, Any]]: ...

    def get_many_rows(
        self, table: str, keys: Sequence[Mapping[str, Any]]
    ) -> list[FabricRow | None]: ...


class SourceReads(Protocol):
    """What verification reads from Postgres (:class:`PostgresSource`)."""

    def primary_key(self, table: str) -> tuple[str, ...]: ...

    def rows(self, table: str) -> list[Row]: ...

    def sample_keys(self, table: str, count: int) -> list[Key]: ...

    def rows_for(self, table: str, keys: Sequence[Key]) -> list[Row]: ...


# -- the comparison ------------------------------------------------------------------------------


def same_value(a: Any, b: Any) -> bool:
    """Equal type and value; NaN equals NaN, ``-0.0`` differs from ``0.0``, a Decimal's scale
    counts. Aware datetimes compare by instant: the fabric returns UTC (docs/types.md)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return bool(a.keys() == b.keys()) and all(same_value(v, b[k]) for k, v in a.items())
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())
    return bool(a == b)


def differing_columns(source: Row, fabric: Row) -> tuple[str, ...]:
    """The columns whose values differ; a column one side lacks differs."""
    names = list(source) + [name for name in fabric if name not in source]
    return tuple(
        name
        for name in names
        if name not in source or name not in fabric or not same_value(source[name], fabric[name])
    )


def mismatch(
    source: Row | None, fabric: Row | None
) -> tuple[DifferenceKind, tuple[str, ...]] | None:
    """None when both sides agree (a key neither side has agrees too)."""
    if source is None:
        return None if fabric is None else ("extra", ())
    if fabric is None:
        return ("missing", ())
    columns = differing_columns(source, fabric)
    return ("differing", columns) if columns else None


# -- one table -----------------------------------------------------------------------------------


def verify(
    client: FabricReads,
    conn: psycopg.Connection[Any],
    tables: Iterable[str],
    *,
    sample: int | None = None,
    recheck_s: float = 10.0,
) -> list[TableReport]:
    """Compare ``tables`` (``schema.table``; a bare name means ``public``) in the fabric with
    Postgres; see the module's docstring. ``conn`` must see each commit as it happens
    (autocommit, as :func:`fabric.db.connect` opens it): a re-read inside one repeatable-read
    transaction would see its first snapshot forever. A full verify holds a table's Postgres rows
    in memory; sample a table too large for that."""
    source = PostgresSource(conn)
    return [
        verify_table(client, source, table, sample=sample, recheck_s=recheck_s) for table in tables
    ]


def verify_table(
    fabric: FabricReads,
    source: SourceReads,
    table: str,
    *,
    sample: int | None = None,
    recheck_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TableReport:
    if sample is not None and sample < 1:
        raise ValueError(f"a sample is at least one key, got {sample}")
    info = fabric.table_info(table)
    name = info.table
    columns = source.primary_key(name)
    if columns != info.primary_key:
        raise InvalidKeyError(
            f"{name}: Postgres keys rows by ({', '.join(columns)}), the fabric by "
            f"({', '.join(info.primary_key)}): the table was re-keyed; capture it again"
        )
    reads = _Reads(fabric, source, name, columns)
    if sample is None:
        source_rows = _by_key(source.rows(name), columns)
        fabric_rows = reads.scan()
        keys = list(source_rows) + [k for k in fabric_rows if k not in source_rows]
    else:
        keys = source.sample_keys(name, sample)
        source_rows, fabric_rows = reads.both(keys)
    pending = reads.disagreeing(keys, source_rows, fabric_rows)
    left = _recheck(reads, pending, clock() + recheck_s, clock, sleep)
    report = _report(reads, sample, len(keys), left, len(pending) - len(left))
    log.info(
        "verified table=%s compared=%d equal=%d missing=%d extra=%d differing=%d settled=%d",
        name,
        report.compared,
        report.equal,
        report.missing,
        report.extra,
        report.differing,
        report.settled,
    )
    return report


def _recheck(
    reads: _Reads,
    pending: dict[Key, Difference],
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> dict[Key, Difference]:
    """Read the mismatching keys again, both sides, until they agree or ``deadline`` passes;
    return those still disagreeing, with their last readings."""
    pause = _FIRST_PAUSE_S
    while pending and clock() < deadline:
        sleep(max(0.0, min(pause, deadline - clock())))
        pause = min(pause * 2, _MAX_PAUSE_S)
        keys = list(pending)
        pending = reads.disagreeing(keys, *reads.both(keys))
        log.debug("recheck table=%s keys=%d still=%d", reads.table, len(keys), len(pending))
    return pending


def _report(
    reads: _Reads, sample: int | None, compared: int, left: dict[Key, Difference], settled: int
) -> TableReport:
    kinds = Counter(d.kind for d in left.values())
    columns = Counter(name for d in left.values() for name in d.columns)
    examples = tuple(itertools.islice(left.values(), EXAMPLES))
    return TableReport(
        table=reads.table,
        sample=sample,
        compared=compared,
        equal=compared - len(left),
        missing=kinds["missing"],
        extra=kinds["extra"],
        differing=kinds["differing"],
        columns=dict(columns.most_common()),
        examples=examples,
        settled=settled,
        freshness=reads.freshness(),
    )


def _by_key(rows: Iterable[Row], columns: tuple[str, ...]) -> dict[Key, Row]:
    return {tuple(row[name] for name in columns): row for row in rows}


class _Reads:
    """Both sides' reads of one table, and the freshness of every fabric answer seen."""

    def __init__(
        self, fabric: FabricReads, source: SourceReads, table: str, columns: tuple[str, ...]
    ) -> None:
        self.table = table
        self._fabric = fabric
        self._source = source
        self.columns = columns
        self._lag = 0
        self._commits: tuple[int, int] | None = None  # the earliest and the latest seen

    def scan(self) -> dict[Key, Row]:
        """Every fabric row; the lag is the partitions' as the topology shows them around it."""
        self._topology_lag()
        rows = _by_key(self._fabric.scan(self.table), self.columns)
        self._topology_lag()
        return rows

    def both(self, keys: Sequence[Key]) -> tuple[dict[Key, Row], dict[Key, Row]]:
        """The rows of ``keys``: Postgres first, then the fabric, which so has had every moment
        in between to catch up with what Postgres answered."""
        source_rows = _by_key(self._source.rows_for(self.table, keys), self.columns)
        return source_rows, self._fabric_rows(keys)

    def disagreeing(
        self, keys: Iterable[Key], source_rows: dict[Key, Row], fabric_rows: dict[Key, Row]
    ) -> dict[Key, Difference]:
        found: dict[Key, Difference] = {}
        for key in keys:
            source_row, fabric_row = source_rows.get(key), fabric_rows.get(key)
            differs = mismatch(source_row, fabric_row)
            if differs is not None:
                named = dict(zip(self.columns, key, strict=True))
                found[key] = Difference(differs[0], named, differs[1], source_row, fabric_row)
        return found

    def _fabric_rows(self, keys: Sequence[Key]) -> dict[Key, Row]:
        found: dict[Key, Row] = {}
        for start in range(0, len(keys), MAX_BATCH):
            chunk = keys[start : start + MAX_BATCH]
            named = [dict(zip(self.columns, key, strict=True)) for key in chunk]
            for key, row in zip(chunk, self._fabric.get_many_rows(self.table, named), strict=True):
                if row is not None:
                    self._observe(row.freshness)
                    found[key] = row.values
        return found

    def _observe(self, freshness: Freshness) -> None:
        self._lag = max(self._lag, freshness.lag_records)
        at, commits = freshness.commit_time_ms, self._commits
        if at:
            self._commits = (min(commits[0], at), max(commits[1], at)) if commits else (at, at)

    def _topology_lag(self) -> None:
        info = self._fabric.topology().table(self.table)
        if info is not None and info.partitions:
            self._lag = max(self._lag, *(p.lag_records for p in info.partitions))

    def freshness(self) -> ComparedFreshness:
        first, last = self._commits or (None, None)
        return ComparedFreshness(self._lag, first, last)


# -- Postgres ------------------------------------------------------------------------------------


class PostgresSource:
    """The source rows as psycopg returns them to an application: every column, in table order.

    An enum array is read as ``text[]``: psycopg returns an unregistered enum array as its text
    (``'{a,b}'``), the fabric as the list of labels psycopg returns for the cast.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._schemas: dict[str, TableSchema] = {}

    def primary_key(self, table: str) -> tuple[str, ...]:
        key = self._schema(table).primary_key
        if not key:
            raise InvalidKeyError(f"{table} has no primary key to compare rows by")
        return key

    def rows(self, table: str) -> list[Row]:
        schema = self._schema(table)
        query = sql.SQL("SELECT {} FROM {}").format(_select_list(schema), _name(schema))
        return self._fetch(query, [], f"reading the rows of {table}")

    def sample_keys(self, table: str, count: int) -> list[Key]:
        schema = self._schema(table)
        # A top-N sort over the keys alone: one pass over the key index or the table.
        query = sql.SQL("SELECT {} FROM {} ORDER BY random() LIMIT %s").format(
            sql.SQL(", ").join(map(sql.Identifier, schema.primary_key)), _name(schema)
        )
        with translated(f"sampling the keys of {table}"):
            return [tuple(row) for row in self._conn.execute(query, [count]).fetchall()]

    def rows_for(self, table: str, keys: Sequence[Key]) -> list[Row]:
        schema = self._schema(table)
        types = {c.name: c.type.pg_type for c in schema.columns}
        key = schema.primary_key
        # Each key column's values as one array cast to the column's own type (format_type()'s
        # text, valid SQL), so that a char(n) or numeric(p,s) key compares as the column does.
        query = sql.SQL("SELECT {} FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
            _select_list(schema),
            _name(schema),
            sql.SQL(", ").join(map(sql.Identifier, key)),
            sql.SQL(", ").join([sql.SQL("%s::{}[]").format(sql.SQL(types[name])) for name in key]),
        )
        rows: list[Row] = []
        for start in range(0, len(keys), MAX_BATCH):
            chunk = keys[start : start + MAX_BATCH]
            params = [[k[i] for k in chunk] for i in range(len(key))]
            rows.extend(self._fetch(query, params, f"reading rows of {table} by key"))
        return rows

    def _fetch(self, query: sql.Composed, params: list[Any], action: str) -> list[Row]:
        with translated(action), self._conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()

    def _schema(self, table: str) -> TableSchema:
        schema = self._schemas.get(table)
        if schema is None:
            schema = self._schemas[table] = read_table_schemas(self._conn, [table])[table]
        return schema


def _name(schema: TableSchema) -> sql.Identifier:
    return sql.Identifier(schema.schema, schema.name)


def _select_list(schema: TableSchema) -> sql.Composed:
    parts: list[sql.Composable] = []
    for column in schema.columns:
        name = sql.Identifier(column.name)
        if column.type.is_array and column.type.is_enum:
            parts.append(sql.SQL("{}::text[] AS {}").format(name, name))
        else:
            parts.append(name)
    return sql.SQL(", ").join(parts)
