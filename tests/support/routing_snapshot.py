"""Routing decisions of every corpus row and every eval request, as plain JSON (for the snapshot test).

    PYTHONPATH=$PWD python -m tests.support.routing_snapshot   # rewrites tests/eval/decisions.jsonl.gz

The first snapshot was made by the code before the router's inference was optimised (commit
fc88a95, issue 13), and the optimised code matched it. It is regenerated only when a change is
meant to move decisions (a retrained artifact, new rules), in that change's own commit.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from proxy.errors import ProxyError
from proxy.policy import Policy, load_policy
from proxy.routing.classify import Classification, classify
from proxy.routing.learned import router_for
from proxy.routing.options import RouteOptions
from proxy.routing.selection import select
from tests.eval.run_eval import CORPUS, load_requests

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = REPO / "tests" / "eval" / "decisions.jsonl.gz"
PREFERENCES = ("balanced", "cheapest", "best_quality")


def rows() -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, body) of every corpus row, then of every eval request."""
    for path in sorted(CORPUS.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                row = json.loads(line)
                yield f"{path.name}:{n}:{row.get('id')}", row["body"]
    for n, row in enumerate(load_requests()):
        yield f"requests.jsonl:{n}:{row.get('id')}", row["body"]


def _classification(c: Classification) -> dict[str, Any]:
    return {
        "category": c.category,
        "complexity": c.complexity,
        "level": c.level,
        "tokens": [c.estimated_input_tokens, c.estimated_output_tokens],
        "needs": [c.needs_tools, c.needs_vision, c.needs_long_context],
        "confidence": c.confidence,
        "adequacy": list(c.adequacy) if c.adequacy is not None else None,
        "signals": json.loads(json.dumps(c.signals, sort_keys=True, default=str)),
    }


def decision(body: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """What the router decides for `body`: heuristic and learned classification, and the plan per preference."""
    available = frozenset(policy.models)
    learned = classify(body, router_for(policy))
    out: dict[str, Any] = {"heuristic": _classification(classify(body)), "learned": _classification(learned), "plans": {}}
    for pref in PREFERENCES:
        try:
            plan = select(learned, policy, RouteOptions(preference=pref), available)
        except ProxyError as exc:
            out["plans"][pref] = {"error": str(exc)}
            continue
        out["plans"][pref] = {
            "primary": plan.primary,
            "fallbacks": list(plan.fallbacks),
            "cost": plan.estimated_cost_usd,
            "reason": plan.reason,
            "quality_target": plan.quality_target,
        }
    return out


def main() -> None:
    policy = load_policy(REPO / "policies", {})
    with gzip.open(SNAPSHOT, "wt", encoding="utf-8") as fh:
        for key, body in rows():
            fh.write(json.dumps({"key": key, **decision(body, policy)}, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
