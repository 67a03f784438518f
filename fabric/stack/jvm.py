"""What the two JVM components (the Kafka broker and the Connect worker) share: how they start."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fabric.config import JvmSettings
from fabric.stack import tools
from fabric.stack.jars import JarLayout

# Log4j2 to stdout, which the stack appends to the component's log file. Per-request and
# per-fetch chatter stays at WARN so that a log tail shows what matters.
_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.clients.name = org.apache.kafka.clients
logger.clients.level = warn
logger.reflections.name = org.reflections
logger.reflections.level = error
"""


def write_properties(path: Path, settings: Mapping[str, str | int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by `fabric stack up`; edits are overwritten on every start."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")


def java_argv(
    jvm: JvmSettings, jars: JarLayout, home: Path, heap: str, main_class: str, *args: str
) -> list[str]:
    log4j = home / "log4j2.properties"
    log4j.write_text(_LOG4J2)
    return [
        str(tools.java_binary(jvm)),
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={home}",
        "-cp",
        jars.classpath(),
        main_class,
        *args,
    ]
