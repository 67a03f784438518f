"""The Kafka, Connect and Debezium jars, resolved from Maven Central once by ``stack/pom.xml``.

Resolution writes ``<lib>/kafka`` (the broker and worker classpath) and ``<lib>/plugins`` (the
Connect plugin path, one folder per plugin), then a stamp holding a hash of the pom. Later starts
find the stamp and run offline; editing the pom (a version bump) resolves again.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fabric.errors import StackError
from fabric.stack import tools

log = logging.getLogger(__name__)

DEBEZIUM_PLUGIN = "debezium-connector-postgres"


@dataclass(frozen=True)
class JarLayout:
    root: Path

    @property
    def classpath_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def plugin_path(self) -> Path:
        return self.root / "plugins"

    @property
    def stamp(self) -> Path:
        return self.root / "resolved.sha256"

    def classpath(self) -> str:
        return str(self.classpath_dir / "*")


def ensure_resolved(pom: Path, lib_dir: Path) -> tuple[JarLayout, bool]:
    """Resolve the jars unless already resolved for this pom; returns (layout, downloaded)."""
    layout = JarLayout(lib_dir)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if _has_jars(layout) and _stamp(layout) == digest:
        return layout, False
    mvn = tools.maven_binary()
    for stale in (layout.classpath_dir, layout.plugin_path):
        shutil.rmtree(stale, ignore_errors=True)
    log.info("resolving Kafka, Connect and Debezium jars from Maven Central into %s", lib_dir)
    argv = [str(mvn), "-B", "-q", "-f", str(pom), f"-Dfabric.lib={lib_dir}", "package"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        raise StackError(
            f"Maven could not resolve the stack's jars (exit {result.returncode}); "
            f"check that Maven Central is reachable, then rerun:\n{tail}"
        )
    if not _has_jars(layout):
        raise StackError(f"Maven finished but {lib_dir} lacks the broker jars or Debezium plugin")
    layout.stamp.write_text(digest + "\n")
    return layout, True


def _stamp(layout: JarLayout) -> str | None:
    try:
        return layout.stamp.read_text().strip()
    except FileNotFoundError:
        return None


def _has_jars(layout: JarLayout) -> bool:
    return (
        any(layout.classpath_dir.glob("kafka_2.13-*.jar"))
        and any(layout.classpath_dir.glob("connect-runtime-*.jar"))
        and (layout.plugin_path / DEBEZIUM_PLUGIN).is_dir()
    )
