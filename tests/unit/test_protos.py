"""The generated API code in the package is exactly what scripts/gen-protos produces now."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fabric.config import REPO_ROOT

GENERATED = REPO_ROOT / "fabric" / "rpc" / "v1"


def test_generated_code_has_not_drifted_from_the_protos(tmp_path: Path) -> None:
    subprocess.run([str(REPO_ROOT / "scripts" / "gen-protos"), str(tmp_path)], check=True)
    fresh = {p.name: p.read_text() for p in (tmp_path / "fabric" / "rpc" / "v1").iterdir()}
    assert fresh, "scripts/gen-protos generated nothing"
    for name, text in fresh.items():
        committed = GENERATED / name
        assert committed.exists(), f"{committed} is missing: run scripts/gen-protos"
        assert committed.read_text() == text, f"{committed} is stale: run scripts/gen-protos"
