"""The source Postgres as a connector sees it: checks, truncate triggers, slot and publication.

It connects as the connector's own user, with the host, port, database and password of the
rendered spec (``database.*``): the operator's spec, not the fabric's default DSN, says which
database is captured and by whom. Only the host may differ (``FABRIC_CONNECTORS_SOURCE_HOST``),
for when Connect reaches the database by a name this machine cannot resolve, such as a Compose
service. Connections and psycopg errors go through :mod:`fabric.db`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, cast

import psycopg
from psycopg import sql

from fabric import db
from fabric.config import Endpoints
from fabric.connect.capture import TableInfo
from fabric.core.events import TRUNCATE_PREFIX
from fabric.errors import SourceDatabaseError, SpecError

log = logging.getLogger(__name__)

TRUNCATE_FUNCTION = ("public", "cdc_fabric_emit_truncate")
TRUNCATE_TRIGGER = "cdc_fabric_truncate"
# Compared with pg_proc.prosrc, so that an unchanged function is not rewritten on every apply.
TRUNCATE_FUNCTION_BODY = f"""
BEGIN
    PERFORM pg_catalog.pg_logical_emit_message(
        true,
        '{TRUNCATE_PREFIX}' || TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
        TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    RETURN NULL;
END
"""
MIN_SERVER_VERSION = 140000  # pgoutput forwards logical-decoding messages from Postgres 14 on
# Creating a trigger takes a SHARE ROW EXCLUSIVE lock: fail fast rather than queue the
# application's writes behind a long transaction.
_LOCK_TIMEOUT = "5s"

_TABLES_SQL = """
SELECT n.nspname::text, c.relname::text,
       EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
               WHERE k.conrelid = c.oid AND k.contype = 'p'),
       c.relreplident::text,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum),
       pg_catalog.pg_get_userbyid(c.relowner)::text,
       pg_catalog.pg_has_role(c.relowner, 'USAGE')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""

_ROLE_SQL = """
SELECT current_user::text, r.rolcanlogin, r.rolreplication, r.rolsuper,
       current_setting('wal_level'), current_setting('server_version_num')::int,
       has_database_privilege(current_database(), 'CREATE'), current_database()::text,
       EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s)
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""

_SLOT_SQL = """
SELECT slot_name::text, active, active_pid FROM pg_catalog.pg_replication_slots
WHERE slot_name = %s
"""

# Checks and drops in one statement: a slot in use is reported as such rather than as an error,
# and the window in which a walsender could take it between the check and the drop is tiny.
_DROP_SLOT_SQL = """
SELECT active, CASE WHEN NOT active THEN pg_catalog.pg_drop_replication_slot(slot_name) IS NULL END
FROM pg_catalog.pg_replication_slots WHERE slot_name = %s
"""


@dataclass(frozen=True)
class SourceParams:
    """Where and as whom the connector connects, from its config's ``database.*`` settings."""

    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    sslmode: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, str], where: str) -> SourceParams:
        required = ("database.hostname", "database.dbname", "database.user")
        missing = [k for k in required if not config.get(k)]
        if missing:
            raise SpecError(f"{where}: config must set {', '.join(missing)}")
        port = config.get("database.port", "5432")
        if not port.isdigit():
            raise SpecError(f"{where}: database.port must be a port number, got {port!r}")
        return cls(
            host=config["database.hostname"],
            port=int(port),
            dbname=config["database.dbname"],
            user=config["database.user"],
            password=config.get("database.password") or None,
            sslmode=config.get("database.sslmode") or None,
        )

    def conninfo(self) -> str:
        """A libpq connection string; it carries the password, so it is never shown."""
        params: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "application_name": "cdc-fabric-connectors",
        }
        if self.password:
            params["password"] = self.password
        if self.sslmode:
            params["sslmode"] = self.sslmode
        return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SourceInfo:
    """Facts about the source database and the connector user's standing in it."""

    user: str
    database: str
    can_login: bool
    replication: bool
    superuser: bool
    wal_level: str
    server_version: int  # server_version_num, e.g. 150018
    can_create: bool  # CREATE on the database, which creating a publication needs
    publication_exists: bool
    tables: tuple[TableInfo, ...]

    def problems(self, captured: Sequence[TableInfo], publication: str) -> list[str]:
        """Why a Debezium connector could not stream ``captured`` as this user, with the fix."""
        out = []
        if not (self.replication or self.superuser):
            out.append(
                f"role {self.user} lacks REPLICATION, which logical replication needs: as a "
                f"superuser run ALTER ROLE {self.user} REPLICATION"
            )
        if self.wal_level != "logical":
            out.append(
                f"wal_level is {self.wal_level}, logical decoding needs logical: run "
                "ALTER SYSTEM SET wal_level = logical, then restart Postgres"
            )
        if self.server_version < MIN_SERVER_VERSION:
            out.append(
                f"Postgres {self.server_version} is too old: pgoutput forwards the fabric's "
                "truncate markers (logical-decoding messages) from Postgres 14 on"
            )
        if not self.publication_exists and not (self.can_create or self.superuser):
            out.append(
                f"role {self.user} lacks CREATE on database {self.database}, needed to create "
                f"publication {publication}: "
                f"GRANT CREATE ON DATABASE {self.database} TO {self.user}"
            )
        out += [
            f"role {self.user} does not own {t.qualified} (owner {t.owner}), which the filtered "
            f"publication and the truncate trigger need: GRANT {t.owner} TO {self.user}"
            for t in captured
            if not t.owned
        ]
        return out


class SlotDrop(StrEnum):
    DROPPED = "dropped"
    ABSENT = "absent"
    ACTIVE = "active"  # a walsender is streaming from it; not dropped


@dataclass(frozen=True)
class SlotInfo:
    name: str
    active: bool
    active_pid: int | None


class SourceDatabase(Protocol):
    """What the connector manager needs from the source database."""

    def inspect(self, publication: str) -> SourceInfo: ...

    def install_truncate_triggers(self, tables: Sequence[TableInfo]) -> list[str]: ...

    def slot(self, name: str) -> SlotInfo | None: ...

    def drop_slot(self, name: str) -> SlotDrop: ...

    def drop_publication(self, name: str) -> bool: ...

    def align_publication(self, name: str, tables: Sequence[TableInfo]) -> bool: ...

    def close(self) -> None: ...


class PostgresSource:
    """:class:`SourceDatabase` over one psycopg connection, opened on first use."""

    def __init__(self, params: SourceParams, endpoints: Endpoints) -> None:
        self.params = params
        self._endpoints = endpoints
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None:
            try:
                self._conn = db.connect(self._endpoints, dsn=self.params.conninfo())
            except SourceDatabaseError as exc:
                raise SourceDatabaseError(
                    f"{exc} (the fabric checks the source as the connector's user, at the spec's "
                    "database.hostname; if only Connect can reach that name, set "
                    "FABRIC_CONNECTORS_SOURCE_HOST to the host this machine reaches it at)"
                ) from exc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def inspect(self, publication: str) -> SourceInfo:
        conn = self._connection()
        with db.translated(f"inspecting database {self.params.dbname} as {self.params.user}"):
            role = conn.execute(_ROLE_SQL, [publication]).fetchone()
            rows = conn.execute(_TABLES_SQL).fetchall()
        if role is None:
            raise SourceDatabaseError(f"role {self.params.user} is not visible in pg_roles")
        tables = tuple(
            TableInfo(
                schema=str(r[0]),
                name=str(r[1]),
                has_primary_key=bool(r[2]),
                replica_identity=str(r[3]),
                columns=tuple(str(c) for c in cast(list[object], r[4])),
                owner=str(r[5]),
                owned=bool(r[6]),
            )
            for r in rows
        )
        return SourceInfo(
            user=str(role[0]),
            can_login=bool(role[1]),
            replication=bool(role[2]),
            superuser=bool(role[3]),
            wal_level=str(role[4]),
            server_version=cast(int, role[5]),
            can_create=bool(role[6]),
            database=str(role[7]),
            publication_exists=bool(role[8]),
            tables=tables,
        )

    def install_truncate_triggers(self, tables: Sequence[TableInfo]) -> list[str]:
        """Create the truncate-marker function (or update it if its body differs) and a trigger on
        each table that lacks one; return the tables that got a new trigger. Idempotent: nothing
        is written, and no table is locked, when everything is in place.

        Each table gets its own short transaction, so no table stays locked while the next one's
        lock is awaited.
        """
        conn = self._connection()
        with db.translated("installing the truncate-marker function"), self._guarded(conn):
            self._install_function(conn)
        installed: list[str] = []
        for table in tables:
            with (
                db.translated(
                    f"installing the truncate trigger on {table.qualified} (it needs a brief "
                    f"SHARE ROW EXCLUSIVE lock; lock_timeout {_LOCK_TIMEOUT})"
                ),
                self._guarded(conn),
            ):
                if self._has_trigger(conn, table):
                    continue
                conn.execute(
                    sql.SQL(
                        "CREATE TRIGGER {} AFTER TRUNCATE ON {} "
                        "FOR EACH STATEMENT EXECUTE FUNCTION {}()"
                    ).format(
                        sql.Identifier(TRUNCATE_TRIGGER),
                        sql.Identifier(table.schema, table.name),
                        sql.Identifier(*TRUNCATE_FUNCTION),
                    )
                )
            installed.append(table.qualified)
            log.info("truncate trigger installed table=%s", table.qualified)
        return installed

    @staticmethod
    @contextmanager
    def _guarded(conn: psycopg.Connection[tuple[object, ...]]) -> Iterator[None]:
        """A transaction with a lock timeout, serialized against concurrent installs."""
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(_LOCK_TIMEOUT)))
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdc-fabric.truncate-triggers'))")
            yield

    @staticmethod
    def _install_function(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        schema, name = TRUNCATE_FUNCTION
        current = conn.execute(
            "SELECT p.prosrc FROM pg_catalog.pg_proc p "
            "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = %s AND p.proname = %s AND p.pronargs = 0",
            [schema, name],
        ).fetchone()
        if current is not None and current[0] == TRUNCATE_FUNCTION_BODY:
            return
        function = sql.Identifier(schema, name)
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}"
            ).format(function, sql.Literal(TRUNCATE_FUNCTION_BODY))
        )
        comment = (
            f"cdc-fabric: emits the transactional logical-decoding message "
            f"'{TRUNCATE_PREFIX}<schema>.<table>' when a captured table is truncated; "
            "Debezium publishes it to <topic.prefix>.message"
        )
        conn.execute(
            sql.SQL("COMMENT ON FUNCTION {}() IS {}").format(function, sql.Literal(comment))
        )
        log.info("truncate function installed function=%s.%s", schema, name)

    def slot(self, name: str) -> SlotInfo | None:
        with db.translated(f"reading replication slot {name}"):
            row = self._connection().execute(_SLOT_SQL, [name]).fetchone()
        if row is None:
            return None
        return SlotInfo(str(row[0]), bool(row[1]), cast(int | None, row[2]))

    def drop_slot(self, name: str) -> SlotDrop:
        """Drop the slot unless a walsender holds it (then it is left alone: ``ACTIVE``)."""
        with db.translated(f"dropping replication slot {name}"):
            row = self._connection().execute(_DROP_SLOT_SQL, [name]).fetchone()
        if row is None:
            return SlotDrop.ABSENT
        if row[0]:
            return SlotDrop.ACTIVE
        log.info("replication slot dropped slot=%s", name)
        return SlotDrop.DROPPED

    def align_publication(self, name: str, tables: Sequence[TableInfo]) -> bool:
        """Make the publication publish exactly ``tables``' inserts, updates and deletes; True
        if it had to be created or changed.

        The fabric owns the publication rather than Debezium: with ``skipped.operations=t``,
        Debezium 3.6 alters a publication with a statement Postgres rejects (debezium#7474), and
        a connector whose table list grew then captures nothing while still reporting RUNNING.
        Truncates are not published: the truncate triggers' messages carry them.
        """
        conn = self._connection()
        wanted = sorted((t.schema, t.name) for t in tables)
        listed = sql.SQL(", ").join(sql.Identifier(schema, table) for schema, table in wanted)
        with db.translated(f"updating publication {name}"):
            exists = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", [name]
            ).fetchone()
            if exists is None:
                conn.execute(
                    sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH (publish = {})").format(
                        sql.Identifier(name), listed, sql.Literal("insert, update, delete")
                    )
                )
                log.info("publication created publication=%s tables=%d", name, len(wanted))
                return True
            current = sorted(
                (str(schema), str(table))
                for schema, table in conn.execute(
                    "SELECT schemaname, tablename FROM pg_catalog.pg_publication_tables "
                    "WHERE pubname = %s",
                    [name],
                ).fetchall()
            )
            if current == wanted:
                return False
            conn.execute(
                sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(sql.Identifier(name), listed)
            )
        log.info("publication updated publication=%s tables=%d", name, len(wanted))
        return True

    def drop_publication(self, name: str) -> bool:
        """Drop the publication; False if there was none."""
        conn = self._connection()
        with db.translated(f"dropping publication {name}"):
            exists = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", [name]
            ).fetchone()
            if exists is None:
                return False
            conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
        log.info("publication dropped publication=%s", name)
        return True

    @staticmethod
    def _has_trigger(conn: psycopg.Connection[tuple[object, ...]], table: TableInfo) -> bool:
        row = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_trigger t "
            "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND t.tgname = %s",
            [table.schema, table.name, TRUNCATE_TRIGGER],
        ).fetchone()
        return row is not None
