"""Connector specs: declarative JSON files, one connector each, rendered from the configuration.

A spec file holds ``{"name": "...", "config": {...}}``. The name is a literal: it is the
connector's identity on Connect and the handle operators use (``fabric connectors status
auction``). Config values may hold placeholders filled from ``FabricConfig.spec_values``:

- ``${NAME}``: the value of ``NAME``; a missing or empty value is an error;
- ``${NAME:-default}``: the value of ``NAME``, or ``default`` when it is missing or empty.

``NAME`` is upper case (``[A-Z_][A-Z0-9_]*``); anything else between ``${`` and ``}``, such as a
Connect config provider reference ``${file:/path:key}``, is passed to Connect untouched. A default
cannot contain ``}``. JSON numbers and booleans are accepted and sent as Connect's strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fabric.connect.masking import looks_secret
from fabric.errors import SpecError

_PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")
# Connect accepts more, but these survive URLs, file names and shells unquoted.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ConnectorSpec:
    """A rendered spec: the exact config that is sent to Connect (secrets included).

    ``source`` is the file it came from, or ``None`` for a config read back from Connect.
    """

    name: str
    config: Mapping[str, str]
    source: Path | None

    @property
    def connector_class(self) -> str:
        return self.config.get("connector.class", "")

    def request_config(self) -> dict[str, str]:
        """The config as Connect stores it: the spec's settings plus ``name``."""
        return {**self.config, "name": self.name}


@dataclass(frozen=True)
class SpecTemplate:
    """A spec file as written: placeholders not yet filled."""

    name: str
    config: Mapping[str, str]
    source: Path

    def placeholders(self) -> set[str]:
        return {m.group(1) for v in self.config.values() for m in _PLACEHOLDER.finditer(v)}

    def render(
        self, values: Mapping[str, str], *, secrets_file: Path | None = None
    ) -> ConnectorSpec:
        """Fill every placeholder from ``values``.

        Raises :class:`SpecError` naming every placeholder without a value, where it is used and
        how to provide it.
        """
        missing: dict[str, list[str]] = {}
        config = {key: _fill(key, raw, values, missing) for key, raw in self.config.items()}
        if missing:
            lines = [_missing_message(self.source, n, k, secrets_file) for n, k in missing.items()]
            raise SpecError("\n".join(lines))
        return ConnectorSpec(self.name, config, self.source)


def load_spec(path: Path) -> SpecTemplate:
    """Parse and check one spec file. Raises :class:`SpecError` saying what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"connector spec {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read connector spec {path}: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(doc, dict):
        raise SpecError(f'{path}: expected a JSON object {{"name": ..., "config": {{...}}}}')
    unknown = sorted(set(doc) - {"name", "config"})
    if unknown:
        raise SpecError(f"{path}: unknown top-level keys {unknown}; a spec has name and config")
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError(
            f"{path}: name must be a literal of letters, digits, '.', '_' and '-', got {name!r}"
        )
    raw_config = doc.get("config")
    if not isinstance(raw_config, dict) or not raw_config:
        raise SpecError(f"{path}: config must be a non-empty JSON object of settings")
    config = {str(k): _setting(path, str(k), v) for k, v in raw_config.items()}
    if config.get("name", name) != name:
        raise SpecError(f"{path}: config.name {config['name']!r} differs from name {name!r}")
    config.pop("name", None)
    if not config.get("connector.class"):
        raise SpecError(f"{path}: config must set connector.class")
    return SpecTemplate(name, config, path)


def load_specs(directory: Path) -> list[SpecTemplate]:
    """Every ``*.json`` spec in ``directory``, by file name. Connector names must be unique."""
    if not directory.is_dir():
        raise SpecError(
            f"connector spec folder {directory} does not exist: create it, "
            "or point FABRIC_CONNECTORS_DIR at the folder holding the *.json specs"
        )
    templates = [load_spec(p) for p in sorted(directory.glob("*.json"))]
    if not templates:
        raise SpecError(
            f"no connector specs (*.json) in {directory}: add one, "
            "or point FABRIC_CONNECTORS_DIR at the folder holding them"
        )
    _check_unique(templates)
    return templates


def select_specs(directory: Path, selectors: Sequence[str]) -> list[SpecTemplate]:
    """The specs named by ``selectors`` (a file path or a connector name each); all in
    ``directory`` when there are none."""
    if not selectors:
        return load_specs(directory)
    in_dir: dict[str, SpecTemplate] | None = None
    chosen: list[SpecTemplate] = []
    for selector in selectors:
        path = Path(selector)
        if selector.endswith(".json") or path.is_file():
            chosen.append(load_spec(path))
            continue
        if in_dir is None:
            in_dir = {t.name: t for t in load_specs(directory)}
        if selector not in in_dir:
            known = ", ".join(sorted(in_dir)) or "none"
            raise SpecError(
                f"no connector spec named {selector!r} in {directory} (known: {known}); "
                "name a spec file by its path or a connector by its name"
            )
        chosen.append(in_dir[selector])
    _check_unique(chosen)
    return chosen


def _fill(key: str, raw: str, values: Mapping[str, str], missing: dict[str, list[str]]) -> str:
    """``raw`` with its placeholders filled; names without a value are added to ``missing``."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = values.get(name) or default
        if value is None:
            missing.setdefault(name, []).append(key)
            return match.group(0)
        return value

    return _PLACEHOLDER.sub(one, raw)


def _setting(path: Path, key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise SpecError(
        f"{path}: config.{key} must be a string, number or boolean, got {type(value).__name__}"
    )


def _check_unique(templates: Sequence[SpecTemplate]) -> None:
    seen: dict[str, Path] = {}
    for t in templates:
        if t.name in seen and seen[t.name] != t.source:
            raise SpecError(f"connector {t.name!r} is defined twice: {seen[t.name]} and {t.source}")
        seen[t.name] = t.source


def _missing_message(source: Path, name: str, keys: list[str], secrets_file: Path | None) -> str:
    where = ", ".join(sorted(set(keys)))
    how = f"set the environment variable {name}"
    if looks_secret(name):
        file = str(secrets_file) if secrets_file else "the stack's secrets.env"
        how += f", or add {name}=... to the secrets file {file} (`fabric stack up` writes it)"
    return f"{source}: ${{{name}}} (in {where}) has no value: {how}"
