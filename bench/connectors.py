"""A benchmark's own connector: the sample spec's settings, for one table under its own prefix.

A benchmark captures its table through a connector, slot and publication of its own, so that it
never disturbs the sample's, and removes them when it is done.
"""

from __future__ import annotations

import json
from pathlib import Path

from fabric.config import REPO_ROOT


def bench_spec(folder: Path, *, name: str, prefix: str, table: str) -> Path:
    """Write the spec of connector ``name`` capturing ``table`` into ``<prefix>.<table>``."""
    spec = json.loads((REPO_ROOT / "connectors" / "auction.json").read_text())
    spec["name"] = name
    slot = "cdc_fabric_" + name.replace("-", "_")
    schema = table.split(".", maxsplit=1)[0]
    spec["config"].update(
        {
            "topic.prefix": prefix,
            "slot.name": slot,
            "publication.name": slot,
            "table.include.list": table,
            "message.prefix.include.list": f"cdc-fabric\\.truncate\\.{schema}\\..*",
        }
    )
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path
