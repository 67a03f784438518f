"""The difference between a spec and the config Connect is running, for display and for deciding
whether ``apply`` has anything to send."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fabric.connect.masking import Masker


@dataclass(frozen=True)
class ConfigDiff:
    """Settings the spec adds, removes or changes relative to the running config.

    Values are masked: two different passwords both show as ``********``, but the setting is still
    listed as changed. ``registered`` is False when Connect has no connector of that name, in which
    case every setting is ``added``.
    """

    name: str
    registered: bool
    added: Mapping[str, str]
    removed: Mapping[str, str]
    changed: Mapping[str, tuple[str, str]]  # setting -> (running, spec)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        """``+ key=value`` added, ``- key=value`` removed, ``~ key: old -> new`` changed."""
        out = [f"+ {k}={v}" for k, v in sorted(self.added.items())]
        out += [f"- {k}={v}" for k, v in sorted(self.removed.items())]
        out += [f"~ {k}: {old} -> {new}" for k, (old, new) in sorted(self.changed.items())]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "registered": self.registered,
            "added": dict(self.added),
            "removed": dict(self.removed),
            "changed": {k: {"running": a, "spec": b} for k, (a, b) in self.changed.items()},
        }


def diff_configs(
    name: str, running: Mapping[str, str] | None, desired: Mapping[str, str], masker: Masker
) -> ConfigDiff:
    """Compare raw values; keep only masked ones."""
    current = running or {}
    return ConfigDiff(
        name=name,
        registered=running is not None,
        added={k: masker.setting(k, v) for k, v in desired.items() if k not in current},
        removed={k: masker.setting(k, v) for k, v in current.items() if k not in desired},
        changed={
            k: (masker.setting(k, current[k]), masker.setting(k, v))
            for k, v in desired.items()
            if k in current and current[k] != v
        },
    )
