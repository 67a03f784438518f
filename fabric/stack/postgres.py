"""A private Postgres cluster: logical WAL, UTF-8, a CDC role and an application database.

The cluster lives in ``<state>/postgres`` and runs as an unprivileged OS user (``initdb`` refuses
root): the ``postgres`` user Debian's package creates when the stack runs as root, the invoking
user otherwise. The superuser is reached only through a Unix socket in a folder only that user (and
root) can enter; TCP on loopback takes passwords, which live in the stack's secrets file.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from fabric.config import LOOPBACK, StackConfig, read_env_file
from fabric.errors import StackError
from fabric.stack import tools
from fabric.stack.component import ComponentFiles
from fabric.stack.process import ProcessSpec

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
APP_PASSWORD = "FABRIC_PG_APP_PASSWORD"
CDC_PASSWORD = "FABRIC_PG_CDC_PASSWORD"

_HBA = """\
# Written by `fabric stack up`.
local   all          all                   trust
host    all          all   127.0.0.1/32    scram-sha-256
host    replication  all   127.0.0.1/32    scram-sha-256
"""


@dataclass
class PostgresComponent(ComponentFiles):
    config: StackConfig
    name: str = "postgres"
    stop_signal: signal.Signals = signal.SIGINT  # "fast" shutdown: roll back, checkpoint, exit
    start_timeout_s: float = 60.0

    @property
    def port(self) -> int:
        return self.config.ports.postgres

    def listen_ports(self) -> dict[str, int]:
        return {"FABRIC_PG_PORT": self.port}

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    def prepare(self) -> None:
        bin_dir = tools.postgres_bin_dir(self.config.postgres)
        owner = self._os_user()
        for folder in (self.home, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        self.socket_dir.chmod(0o700)
        _check_reachable(self.home, owner)
        _ensure_secrets(self.config)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir, owner)
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(_HBA)
        os.chown(hba, owner.pw_uid, owner.pw_gid)

    def process(self) -> ProcessSpec:
        bin_dir = tools.postgres_bin_dir(self.config.postgres)
        settings = {
            "port": str(self.port),
            "listen_addresses": LOOPBACK,
            "unix_socket_directories": str(self.socket_dir),
            "wal_level": "logical",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            # A connector restarted quickly must not find its slot still held by the old walsender.
            "wal_sender_timeout": "10s",
            "logging_collector": "off",
            "log_line_prefix": "%m [%p] ",
        }
        argv = [str(bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return ProcessSpec(
            name=self.name,
            argv=argv,
            log_file=self.log_file,
            pid_file=self.pid_file,
            cwd=self.home,
            user=self._run_as(),
        )

    def healthy(self) -> bool:
        try:
            with self._superuser_connection():
                return True
        except psycopg.Error:
            return False

    def after_start(self) -> None:
        """Create or refresh the application and CDC roles and the application database."""
        pg = self.config.postgres
        passwords = read_env_file(self.config.secrets_file)
        with self._superuser_connection() as conn:
            for role, password, extra in (
                (pg.app_user, passwords[APP_PASSWORD], sql.SQL("LOGIN")),
                (pg.cdc_user, passwords[CDC_PASSWORD], sql.SQL("LOGIN REPLICATION")),
            ):
                exists = conn.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", [role]
                ).fetchone()
                verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
                conn.execute(
                    sql.SQL("{} ROLE {} {} PASSWORD {}").format(
                        verb, sql.Identifier(role), extra, sql.Literal(password)
                    )
                )
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [pg.app_database]
            ).fetchone():
                conn.execute(
                    sql.SQL(
                        "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0"
                    ).format(sql.Identifier(pg.app_database), sql.Identifier(pg.app_user))
                )
            # A filtered publication may only be created by the tables' owner: the CDC role
            # inherits the application role's ownership, and may create the publication.
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(pg.app_user), sql.Identifier(pg.cdc_user)
                )
            )
            conn.execute(
                sql.SQL("GRANT CREATE, CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(pg.app_database), sql.Identifier(pg.cdc_user)
                )
            )

    def _superuser_connection(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        )

    def _initdb(self, bin_dir: Path, owner: pwd.struct_passwd) -> None:
        log.info("initialising Postgres cluster at %s", self.data_dir)
        argv = [
            str(bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "-E", "UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-instructions",
        ]  # fmt: skip
        result = subprocess.run(
            argv, cwd=self.home, user=self._run_as(), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise StackError(
                f"initdb failed (exit {result.returncode}) for {self.data_dir}:\n"
                f"{(result.stderr or result.stdout).strip()}"
            )

    def _run_as(self) -> str | None:
        return self.config.postgres.os_user if os.geteuid() == 0 else None

    def _os_user(self) -> pwd.struct_passwd:
        name = self._run_as()
        if name is None:
            return pwd.getpwuid(os.geteuid())
        try:
            return pwd.getpwnam(name)
        except KeyError:
            raise StackError(
                f"OS user {name!r} does not exist; Postgres must run as an unprivileged user: "
                "install Debian's postgresql package (it creates `postgres`) or set "
                "FABRIC_PG_OS_USER"
            ) from None


def _ensure_secrets(config: StackConfig) -> None:
    """Generate the stack's database passwords once; write them and a pgpass file, mode 0600."""
    current = read_env_file(config.secrets_file)
    for key in (APP_PASSWORD, CDC_PASSWORD):
        current.setdefault(key, secrets.token_urlsafe(18))
    _write_private(config.secrets_file, "".join(f"{k}={v}\n" for k, v in sorted(current.items())))
    pg = config.postgres
    lines = [
        f"{LOOPBACK}:{config.ports.postgres}:*:{pg.app_user}:{current[APP_PASSWORD]}",
        f"{LOOPBACK}:{config.ports.postgres}:*:{pg.cdc_user}:{current[CDC_PASSWORD]}",
    ]
    _write_private(config.pgpass_file, "\n".join(lines) + "\n")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


def _check_reachable(folder: Path, user: pwd.struct_passwd) -> None:
    """Fail early, and say why, when ``user`` cannot walk down to ``folder``."""
    if user.pw_uid == os.geteuid():
        return
    for parent in [folder, *folder.parents]:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == user.pw_gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            raise StackError(
                f"the {user.pw_name} user cannot enter {parent} "
                f"(mode {stat.filemode(st.st_mode)}), "
                f"so Postgres cannot use {folder}: set FABRIC_STATE_DIR to a folder under a "
                "world-traversable path such as /var/tmp"
            )
