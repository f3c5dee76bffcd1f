"""Evaluate the router: the trained router on the corpus's frozen test split and x.jsonl (the
gates), and the heuristic alone on the older labelled sets (tests/eval/requests.jsonl etc.).

Trained router (corpus/, proxy/routing/learned.py): GATES are asserted ONLY on the frozen test
split (corpus/split.py, committed before training) and CROSS_GATES on x.jsonl (an independent
writer's set); never on the train split. Cost there = routed / always Claude Sonnet 4 with 400
output tokens per request (the issue's measure), at the policy's default quality_target.

    PYTHONPATH=$PWD python tests/eval/run_eval.py [--policy policies] [--verbose]

Prints category accuracy, the share of requests routed to a model of an adequate tier
(routed tier number <= the labelled cheapest adequate tier, i.e. at least as capable), and
the cost of the routed choices as a share of always using the tutorial's frontier default.
Costs use the classifier's token estimates (input, and output from max_tokens or the
category/complexity estimate). All models count as available.

"Always-frontier" (the issue's target, <= 25 %) is every request sent to Claude Sonnet 4:
the tutorial's frontier default (its matrix default for complex_coding and
agentic_tool_use, its high-complexity QA upgrade, the model it calls the best instruction
follower of Tier 1). Printed beside it, because a cheaper denominator tells more: each
category's own tier-1 default (Gemini 2.5 Pro for deep_reasoning and long_document, which
prices long inputs lower), the perfect-router floor against that (per request, the cheapest
model of the labelled adequate tier) and the tutorial's own matrix (its balanced rules
applied to the true labels).

Sets: requests.jsonl (187, the development set the classifier was tuned on), holdout.jsonl
(40, evaluated once after tuning, then two generic lexicon fixes were made) and
holdout2.jsonl (30, written later; the classifier was not tuned on it, one routing-policy
change followed it: QA and text generation at complexity 1 go to Flash, not Flash-Lite).
Their figures show how the heuristic generalises. Long documents are `{{doc:kind:words:seed}}` placeholders expanded
by tests/eval/docs.py.

Labelling rubric (fixed before the classifier was tuned):
  complexity 1 trivial, 2 easy, 3 moderate, 4 hard, 5 expert.
  adequate tier = the cheapest registry tier that does the job well: 4 lightweight (trivial
  lookups, clear-cut labels, short plain translations, one obvious tool call, trivial code
  edits), 3 workhorse (everyday writing and explanations, simple functions), 2 efficiency
  (real coding, multi-step reasoning, long documents, multi-step tool use, subtle
  extraction), 1 frontier (research-grade proofs, system design, high-stakes multi-document
  analysis, long-horizon autonomous agents, competition-grade creative writing).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from proxy.policy import Policy, load_policy  # noqa: E402
from proxy.routing.classify import classify  # noqa: E402
from proxy.routing.options import parse_route_options  # noqa: E402
from proxy.routing.selection import select  # noqa: E402
from tests.eval.docs import expand  # noqa: E402

REQUESTS = Path(__file__).with_name("requests.jsonl")
HOLDOUT = Path(__file__).with_name("holdout.jsonl")
HOLDOUT2 = Path(__file__).with_name("holdout2.jsonl")
GENERAL_FRONTIER = "anthropic/claude-sonnet-4"
CORPUS = ROOT / "corpus"
# Equal to the README's "Routing quality" claims (frozen test split / x.jsonl, default quality_target).
GATES = {"accuracy": 0.90, "adequate": 0.95, "cost_share": 0.27}
CROSS_GATES = {"accuracy": 0.93, "adequate": 0.95, "cost_share": 0.27}
TARGETS = {"accuracy": 0.90, "adequate": 0.97, "cost_share": 0.25}


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return expand(value) if "{{doc:" in value else value
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def load_requests(path: Path = REQUESTS) -> list[dict[str, Any]]:
    """The labelled requests with generated documents expanded."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["body"] = _expand(row["body"])
            rows.append(row)
    return rows


def frontier_default(policy: Policy, category: str) -> str:
    row = policy.routing.matrix[category]  # type: ignore[index]
    return row.default if policy.models[row.default].tier == 1 else GENERAL_FRONTIER


def tutorial_choice(policy: Policy, category: str, complexity: int, long_context: bool) -> str:
    """The tutorial's balanced rules on its plain matrix (no complexity map)."""
    row = policy.routing.matrix[category]  # type: ignore[index]
    if complexity >= 4 and row.high_complexity:
        return row.high_complexity
    if long_context and row.long_context:
        return row.long_context
    return row.default


@dataclass
class EvalResult:
    n: int = 0
    correct: int = 0
    adequate: int = 0
    routed_cost: float = 0.0
    frontier_cost: float = 0.0
    tutorial_cost: float = 0.0
    oracle_cost: float = 0.0
    sonnet_cost: float = 0.0
    complexity_exact: int = 0
    complexity_near: int = 0
    per_category: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    misses: list[str] = field(default_factory=list)
    inadequate: list[str] = field(default_factory=list)
    routed: Counter[str] = field(default_factory=Counter)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def adequate_share(self) -> float:
        return self.adequate / self.n if self.n else 0.0

    @property
    def cost_share(self) -> float:
        """Routed cost / always the tutorial's frontier default (Claude Sonnet 4)."""
        return self.routed_cost / self.sonnet_cost if self.sonnet_cost else 0.0

    @property
    def category_frontier_share(self) -> float:
        """Routed cost / each category's own tier-1 default."""
        return self.routed_cost / self.frontier_cost if self.frontier_cost else 0.0

    @property
    def oracle_share(self) -> float:
        """A perfect router's cost (cheapest model of an adequate tier) / each category's tier-1 default."""
        return self.oracle_cost / self.frontier_cost if self.frontier_cost else 0.0


def evaluate(policy: Policy, rows: list[dict[str, Any]]) -> EvalResult:
    available = frozenset(policy.models)
    result = EvalResult()
    for row in rows:
        body = row["body"]
        c = classify(body)
        options = parse_route_options(body.get("model", "auto"), body, {}, None)
        plan = select(c, policy, options, available)
        spec = policy.models[plan.primary]
        inp, out = c.estimated_input_tokens, plan.output_tokens
        result.n += 1
        result.routed[plan.primary] += 1
        stats = result.per_category[row["category"]]
        stats["n"] += 1
        if c.category == row["category"]:
            result.correct += 1
            stats["correct"] += 1
        else:
            result.misses.append(f"{row['id']}: {row['category']} -> {c.category} ({dict(c.signals)['scores']})")
        if abs(c.complexity - row["complexity"]) <= 1:
            result.complexity_near += 1
        if c.complexity == row["complexity"]:
            result.complexity_exact += 1
        if spec.tier <= row["adequate_tier"]:
            result.adequate += 1
            stats["adequate"] += 1
        else:
            result.inadequate.append(
                f"{row['id']}: tier {spec.tier} ({plan.primary}) > adequate {row['adequate_tier']}"
                f" [label {row['category']}/{row['complexity']}, got {c.category}/{c.complexity}]"
            )
        result.routed_cost += spec.cost_usd(inp, out)
        result.frontier_cost += policy.models[frontier_default(policy, row["category"])].cost_usd(inp, out)
        tut = tutorial_choice(policy, row["category"], row["complexity"], c.needs_long_context)
        result.tutorial_cost += policy.models[tut].cost_usd(inp, out)
        result.sonnet_cost += policy.models[GENERAL_FRONTIER].cost_usd(inp, out)
        result.oracle_cost += min(
            m.cost_usd(inp, out)
            for m in policy.models.values()
            if m.tier <= row["adequate_tier"] and not m.local and m.context_window >= inp + out
        )
    return result


def report(result: EvalResult, verbose: bool = False, title: str = "evaluation set") -> str:
    lines = [
        f"{title}: {result.n} labelled requests",
        f"  category accuracy          {result.accuracy:6.1%}   (target >= {TARGETS['accuracy']:.0%})",
        f"  routed to an adequate tier {result.adequate_share:6.1%}   (target >= {TARGETS['adequate']:.0%})",
        f"  cost vs always-frontier    {result.cost_share:6.1%}   (target <= {TARGETS['cost_share']:.0%};"
        f" ${result.routed_cost:.4f} vs ${result.sonnet_cost:.4f} always Claude Sonnet 4)",
        f"  cost vs category tier-1    {result.category_frontier_share:6.1%}   (each category's own tier-1 default;"
        f" a perfect router: {result.oracle_share:.1%})",
        f"  cost vs tutorial matrix    {result.routed_cost / result.tutorial_cost if result.tutorial_cost else 0:6.1%}"
        f"   (${result.tutorial_cost:.4f} with the tutorial's balanced rules)",
        f"  complexity exact / +-1     {result.complexity_exact / result.n:6.1%} / {result.complexity_near / result.n:.1%}",
        "  per category (accuracy, adequate):",
    ]
    for category, stats in sorted(result.per_category.items()):
        lines.append(f"    {category:18s} n={stats['n']:3d}  {stats['correct'] / stats['n']:6.1%}  {stats['adequate'] / stats['n']:6.1%}")
    lines.append("  routed models: " + ", ".join(f"{m} {n}" for m, n in result.routed.most_common()))
    if verbose:
        lines += ["  misclassified:"] + [f"    {m}" for m in result.misses]
        lines += ["  inadequate tier:"] + [f"    {m}" for m in result.inadequate]
    return "\n".join(lines)


def corpus_points(policy: Policy) -> dict[str, Any]:
    """The trained router at the default quality_target on the frozen test split and on x.jsonl."""
    from proxy.cli.learn import split_module
    from proxy.training import curve

    split = split_module(CORPUS)
    return {name: curve.point(policy, curve.classified(policy, split.corpus_rows(name, CORPUS)), None) for name in ("test", "cross")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", default=str(ROOT / "policies"))
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    policy = load_policy(args.policy, {})
    for name, p in corpus_points(policy).items():
        gates = GATES if name == "test" else CROSS_GATES
        print(
            f"trained router, {'frozen test split' if name == 'test' else 'cross-check x.jsonl'} ({p.n} rows, quality_target "
            f"{policy.routing.quality_target}): accuracy {p.accuracy:.3f} (gate {gates['accuracy']}), adequate {p.adequacy:.3f} "
            f"(gate {gates['adequate']}), cost {p.cost_share:.3f} of always-Sonnet (gate {gates['cost_share']}; oracle {p.oracle_share:.3f})"
        )
    print("heuristic alone (classify without the trained router, the decision matrix):")
    result = evaluate(policy, load_requests())
    print(report(result, args.verbose))
    for path, title in (
        (HOLDOUT, "held-out set 1 (seen once, then two lexicon fixes)"),
        (HOLDOUT2, "held-out set 2 (classifier not tuned on it)"),
    ):
        if path.is_file():
            print(report(evaluate(policy, load_requests(path)), args.verbose, title=title))
    met = {
        "accuracy": result.accuracy >= TARGETS["accuracy"],
        "adequate": result.adequate_share >= TARGETS["adequate"],
        "cost_share": result.cost_share <= TARGETS["cost_share"],
    }
    print("issue targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items()))
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
