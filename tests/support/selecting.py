"""Shared pieces of the selection tests (tests/test_selection*.py): the shipped policy, every
model available, a Classification builder and a policy with fields overridden."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.policy import Policy, load_policy
from proxy.routing.classify import Classification, level_for
from tests.support.policies import POLICIES


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(POLICIES, {})


@pytest.fixture(scope="module")
def everything(policy: Policy) -> frozenset[str]:
    return frozenset(policy.models)


def cls(category: str, complexity: int, *, inp: int = 500, out: int = 400, tools: bool = False, vision: bool = False) -> Classification:
    return Classification(
        category=category,
        complexity=complexity,
        level=level_for(complexity),
        estimated_input_tokens=inp,
        estimated_output_tokens=out,
        needs_tools=tools,
        needs_vision=vision,
        needs_long_context=inp > 50_000,
        confidence=0.9,
        signals={},
    )


def custom_policy(tmp_path: Path, routing: dict[str, Any] | None = None, models: dict[str, dict[str, Any]] | None = None) -> Policy:
    """The shipped policy with routing fields and registry model fields overridden."""
    registry = yaml.safe_load((POLICIES / "models.yaml").read_text())
    for model in registry["models"]:
        model.update((models or {}).get(model["id"], {}))
    data = yaml.safe_load((POLICIES / "routing.yaml").read_text())
    data.update(routing or {})
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(registry))
    (tmp_path / "routing.yaml").write_text(yaml.safe_dump(data))
    return load_policy(tmp_path, {})
