"""Write a modified copy of policies/ for one test."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def policy_copy(
    dest: Path,
    *,
    deployments: dict[str, dict[str, Any]] | None = None,
    extra_deployments: list[dict[str, Any]] | None = None,
    files: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Copy policies/ to `dest`, merging `deployments[id]` into that deployment, appending
    `extra_deployments`, and writing `files[name]` as whole YAML files."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in POLICIES.glob("*.yaml"):
        shutil.copy(path, dest / path.name)
    registry = yaml.safe_load((POLICIES / "models.yaml").read_text())
    for dep in registry["deployments"]:
        dep.update((deployments or {}).get(dep["id"], {}))
    registry["deployments"] += extra_deployments or []
    (dest / "models.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
    for name, content in (files or {}).items():
        (dest / name).write_text(yaml.safe_dump(content, sort_keys=False))
    return dest


def fast_dispatch(**changes: Any) -> dict[str, Any]:
    """policies/dispatch.yaml with one quick retry and breakers that never open (tests that
    send many failing requests), then `changes`."""
    dispatch = yaml.safe_load((POLICIES / "dispatch.yaml").read_text())
    dispatch.update(retries=1, retry_base_delay=0.0, retry_max_delay=0.0)
    dispatch["cooldown"] = {**dispatch.get("cooldown", {}), "failures": 1000}
    dispatch.update(changes)
    return dispatch
