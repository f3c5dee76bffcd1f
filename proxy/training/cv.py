"""Cross-validation of the trained router on the TRAIN split only (how every fit choice is made).

Two schemes, both scored through the real inference path (the fitted artifact data loaded into
`learned.Router`, probabilities into the dial of `policies/`, at the policy's quality_target):

* leave-one-writer-out: fit on the other writers' train rows (every TRAINING_FILES writer, by id
  prefix), score one writer's train rows: the best proxy for "requests written elsewhere";
* stratified 5-fold over all train rows.

Each fold's model is calibrated, and its per-category target offsets fitted, by its own inner
cross-validation (as `autoroute train` does), so no probability or offset is ever made on a row
its calibrator, offsets or model saw. The test split and x.jsonl are
never read.

    PYTHONPATH=$PWD python -m proxy.training.cv [--c-category 100] [--c-tier 20] [--no-target-offsets] [--which writers|folds] [-v]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from proxy.training.dataset import Example
from proxy.training.fit import DEFAULT, Config

ROOT = Path(__file__).resolve().parents[2]


def writer(row_id: str) -> str:
    return row_id.split("-", 1)[0]


def predict_held(
    fit_ex: Sequence[Example],
    held_ex: Sequence[Example],
    categories: Sequence[str],
    cfg: Config,
    seed: int,
    costs: tuple[Any, Any] | None = None,
    target: float | None = None,
) -> list[Any]:
    """Predictions (learned.Prediction) for `held_ex` from a model fitted and calibrated on `fit_ex` only
    (`costs`: tier_costs of the `fit_ex` rows, for the per-category target offsets)."""
    from proxy.routing.learned import Router
    from proxy.training.fit import fit_data

    data, _ = fit_data(fit_ex, categories, seed, cfg, costs, target)
    router = Router(data, "cv")
    return [router.predict_features(e.text, e.structure) for e in held_ex]


def schemes(rows: Sequence[Mapping[str, Any]], which: str, seed: int) -> list[tuple[str, str, list[int], list[int]]]:
    """(scheme, fold name, fit indices, held indices)."""
    out: list[tuple[str, str, list[int], list[int]]] = []
    if which in ("both", "writers"):
        for w in sorted({writer(str(r["id"])) for r in rows}):
            held = [i for i, r in enumerate(rows) if writer(str(r["id"])) == w]
            out.append(("writer", w, [i for i in range(len(rows)) if writer(str(rows[i]["id"])) != w], held))
    if which in ("both", "folds"):
        from sklearn.model_selection import StratifiedKFold

        strata = [f"{r['category']}:{r['adequate_tier']}" for r in rows]
        for k, (fit_idx, held_idx) in enumerate(StratifiedKFold(5, shuffle=True, random_state=seed + 101).split(strata, strata)):
            out.append(("5-fold", f"fold{k}", [int(i) for i in fit_idx], [int(i) for i in held_idx]))
    return out


def score(policy: Any, data: Sequence[tuple[Mapping[str, Any], Any]], target: float | None) -> Any:
    from proxy.training import curve

    return curve.point(policy, data, target)


def run(cfg: Config, which: str = "both", seed: int = 0, verbose: bool = False, targets: Sequence[float] = ()) -> dict[str, Any]:
    from proxy.cli.learn import split_module
    from proxy.policy import load_policy
    from proxy.policy.routing import CATEGORIES
    from proxy.training.dataset import examples

    corpus = ROOT / "corpus"
    rows = split_module(corpus).corpus_rows("train", corpus)
    started = time.monotonic()
    ex = examples(rows)
    policy = replace(load_policy(ROOT / "policies", {}), router_artifact=None)
    from proxy.training.targets import tier_costs

    cost, tier = tier_costs(rows, [e.heuristic for e in ex], policy)
    print(f"train split: {len(rows)} rows, featurised in {time.monotonic() - started:.0f} s; config {cfg}")
    pooled: dict[str, list[tuple[Mapping[str, Any], Any]]] = defaultdict(list)
    results: dict[str, Any] = {}
    for scheme, name, fit_idx, held_idx in schemes(rows, which, seed):
        fit_costs = (cost[fit_idx], tier[fit_idx])
        preds = predict_held(
            [ex[i] for i in fit_idx], [ex[i] for i in held_idx], CATEGORIES, cfg, seed, fit_costs, policy.routing.quality_target
        )
        data = [
            (rows[i], replace(ex[i].heuristic, category=p.category, adequacy=p.adequacy, slack=p.slack))
            for i, p in zip(held_idx, preds, strict=True)
        ]
        pooled[scheme] += data
        if scheme == "writer":
            p = score(policy, data, None)
            results[name] = p
            print(
                f"  held-out writer {name}: n={p.n:4d}  accuracy {p.accuracy:.3f}  adequate {p.adequacy:.3f}  cost {p.cost_share:.3f}  (oracle {p.oracle_share:.3f})"
            )
            if verbose:
                print("    confusion (label -> predicted, off-diagonal counts): " + confusion(data))
    for scheme, data in pooled.items():
        p = score(policy, data, None)
        results[scheme] = p
        print(
            f"{scheme:7s} pooled n={p.n:4d}  accuracy {p.accuracy:.3f}  adequate {p.adequacy:.3f}  cost {p.cost_share:.3f}"
            f"  (oracle {p.oracle_share:.3f})  at quality_target {policy.routing.quality_target}"
        )
        for t in targets:
            q = score(policy, data, t)
            print(f"    target {t:.2f}: adequate {q.adequacy:.3f}  cost {q.cost_share:.3f}")
        matched = cost_at(policy, data, (0.94, 0.95, 0.96))
        print(
            "    the dial swept (tier models compared at equal adequacy): "
            + ", ".join(f"adequate {a:.2f} at cost {c:.3f} (target {t:.2f})" for a, c, t in matched)
        )
        if verbose:
            print("  cost by category (routed / oracle share of always-Sonnet):  " + cost_by_category(policy, data))
    print(f"elapsed {time.monotonic() - started:.0f} s")
    return results


def cost_at(policy: Any, data: Sequence[tuple[Mapping[str, Any], Any]], wanted: Sequence[float]) -> list[tuple[float, float, float]]:
    """(adequacy, cost, target) of the cheapest swept target reaching each wanted adequacy."""
    points = [score(policy, data, t / 100) for t in range(50, 100)]
    out = []
    for a in wanted:
        reach = [p for p in points if p.adequacy >= a]
        if reach:
            best = min(reach, key=lambda p: p.cost_share)
            out.append((a, best.cost_share, best.target))
    return out


def confusion(data: Sequence[tuple[Mapping[str, Any], Any]]) -> str:
    pairs = Counter((row["category"], c.category) for row, c in data if row["category"] != c.category)
    return ", ".join(f"{a}->{b} {n}" for (a, b), n in pairs.most_common(8))


def cost_by_category(policy: Any, data: Sequence[tuple[Mapping[str, Any], Any]]) -> str:
    by: dict[str, list[tuple[Mapping[str, Any], Any]]] = defaultdict(list)
    for row, c in data:
        by[row["category"]].append((row, c))
    parts = []
    for cat, items in sorted(by.items()):
        p = score(policy, items, None)
        parts.append(f"{cat} {p.adequacy:.2f}/{p.cost_share:.2f}/{p.oracle_share:.2f}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cross-validate the router on the train split")
    parser.add_argument("--c-category", type=float, default=DEFAULT.c_category)
    parser.add_argument("--c-tier", type=float, default=DEFAULT.c_tier)
    parser.add_argument("--min-df", type=int, default=DEFAULT.min_df)
    parser.add_argument("--balanced", action="store_true")
    parser.add_argument(
        "--by-writer",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT.by_writer,
        help="calibrate on leave-one-writer-out predictions",
    )
    parser.add_argument("--structure-value", type=float, default=DEFAULT.structure_value)
    parser.add_argument("--per-category", type=float, default=DEFAULT.per_category)
    parser.add_argument(
        "--target-offsets",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT.target_offsets,
        help="fit per-category quality-target offsets (training/targets.py)",
    )
    parser.add_argument("--which", choices=("both", "writers", "folds"), default="both")
    parser.add_argument("--targets", type=float, nargs="*", default=())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="The least populated class")
    cfg = Config(
        c_category=args.c_category,
        c_tier=args.c_tier,
        min_df=args.min_df,
        balanced=args.balanced,
        by_writer=args.by_writer,
        structure_value=args.structure_value,
        per_category=args.per_category,
        target_offsets=args.target_offsets,
    )
    run(cfg, args.which, args.seed, args.verbose, args.targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
