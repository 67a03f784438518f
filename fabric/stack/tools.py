"""The programs the stack runs on: Java, Maven and Debian's Postgres, found or installed here."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from fabric.config import JvmSettings, PostgresSettings
from fabric.errors import MissingToolError

log = logging.getLogger(__name__)

MIN_JAVA = 17
EXACT_DOUBLE_KEYS_JAVA = 19
_JVM_ROOT = Path("/usr/lib/jvm")
_PG_ROOT = Path("/usr/lib/postgresql")


def java_binary(jvm: JvmSettings) -> Path:
    """The ``java`` to run Kafka and Connect with; Java 17 or newer.

    FABRIC_JAVA_HOME (or JAVA_HOME) decides when set. Otherwise the newest Java among the one on
    PATH and those under /usr/lib/jvm: Connect prints double-precision key columns with
    ``Double.toString``, whose digits changed in JDK 19, and the fabric rebuilds keys the JDK 19+
    way (fabric/core/keyjson.py), so a newer JDK installed beside Debian's default 17 is the one
    to use.
    """
    if jvm.java_home is not None:
        candidate = jvm.java_home / "bin" / "java"
        if not candidate.exists():
            raise MissingToolError(
                f"no java at {candidate}: FABRIC_JAVA_HOME (or JAVA_HOME) must name a JDK or JRE"
            )
        version = _java_major(candidate)
    else:
        found = [Path(p) for p in [shutil.which("java")] if p is not None]
        found += sorted(_JVM_ROOT.glob("*/bin/java"))
        if not found:
            raise MissingToolError(
                "Java is not installed: Kafka and Connect need Java 17 or newer "
                "(apt-get install openjdk-17-jre-headless, or set FABRIC_JAVA_HOME)"
            )
        versions = {path.resolve(): _java_major(path) for path in found}
        candidate, version = max(versions.items(), key=lambda item: item[1])
    if version < MIN_JAVA:
        raise MissingToolError(
            f"{candidate} is Java {version}; Kafka and Connect need Java {MIN_JAVA} or newer "
            "(set FABRIC_JAVA_HOME to a newer JDK)"
        )
    if version < EXACT_DOUBLE_KEYS_JAVA:
        log.warning(
            "Connect runs on Java %d: keys with double precision columns match lookups only on "
            "Java %d or newer (set FABRIC_JAVA_HOME)",
            version,
            EXACT_DOUBLE_KEYS_JAVA,
        )
    return candidate


def maven_binary() -> Path:
    found = shutil.which("mvn")
    if found is None:
        raise MissingToolError(
            "Maven is not installed and the Kafka/Connect/Debezium jars are not resolved yet: "
            "apt-get install maven (needed once; later starts run offline)"
        )
    return Path(found)


def postgres_bin_dir(settings: PostgresSettings) -> Path:
    """Debian's Postgres server binaries, installed with apt-get when missing and allowed."""
    if settings.bin_dir is not None:
        if not (settings.bin_dir / "postgres").exists():
            raise MissingToolError(f"FABRIC_PG_BIN_DIR={settings.bin_dir} has no postgres binary")
        return settings.bin_dir
    found = _newest_pg_bin()
    if found is not None:
        return found
    _apt_install("postgresql")
    found = _newest_pg_bin()
    if found is None:
        raise MissingToolError("apt-get installed postgresql but no server binaries appeared")
    return found


def _newest_pg_bin() -> Path | None:
    if not _PG_ROOT.is_dir():
        return None
    majors = sorted(
        (
            int(p.name)
            for p in _PG_ROOT.iterdir()
            if p.name.isdigit() and (p / "bin" / "initdb").exists()
        ),
        reverse=True,
    )
    return _PG_ROOT / str(majors[0]) / "bin" if majors else None


def _apt_install(package: str) -> None:
    if os.geteuid() != 0:
        raise MissingToolError(
            f"the Postgres server is not installed; as root run: apt-get install -y {package} "
            "(or set FABRIC_PG_BIN_DIR to a folder holding initdb and postgres)"
        )
    if shutil.which("apt-get") is None:
        raise MissingToolError(
            f"the Postgres server is not installed and apt-get is unavailable: install {package} "
            "with this system's package manager, or set FABRIC_PG_BIN_DIR"
        )
    log.info("installing package=%s with apt-get", package)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).splitlines()[-10:])
            raise MissingToolError(f"`{' '.join(argv)}` failed (exit {result.returncode}):\n{tail}")


def _java_major(java: Path) -> int:
    try:
        result = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise MissingToolError(f"cannot run {java}: {exc.strerror}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr)
    if match is None:
        raise MissingToolError(f"cannot tell the Java version of {java}: {result.stderr.strip()}")
    major = int(match.group(1))
    # Java 8 and older report "1.8.0_…".
    return int(match.group(2) or 0) if major == 1 else major
