"""`autoroute train | calibrate | replay`: build, measure and what-if the trained router."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from proxy.routing.learned import DEFAULT_ARTIFACT


def add_learn_commands(sub: Any) -> None:
    train = sub.add_parser("train", help="fit the trained router on the corpus's train split (needs the [train] extra)")
    train.add_argument("--corpus", type=Path, default=Path("corpus"), help="corpus directory with split.py (default ./corpus)")
    train.add_argument("--out", type=Path, default=DEFAULT_ARTIFACT, help="artifact path (default: the package's)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--policy",
        type=Path,
        default=Path("policies"),
        help="policy (registry, prices, quality_target) for the target offsets and the curve",
    )
    train.set_defaults(func=_train)

    cal = sub.add_parser("calibrate", help="cost/adequacy curve and reliability on the frozen test split; --feedback writes calibration")
    cal.add_argument("--policy", type=Path, default=Path("policies"))
    cal.add_argument("--corpus", type=Path, default=Path("corpus"))
    cal.add_argument("--feedback", type=Path, help="feedback JSONL (GET /admin/feedback): write <policy>/calibration.json")
    cal.add_argument("--prior-strength", type=float, default=20.0, help="pseudo-count of the prior per (category, tier)")
    cal.set_defaults(func=_calibrate)

    rep = sub.add_parser("replay", help="re-decide recorded decisions under another policy; per-category cost and adequacy deltas")
    rep.add_argument("records", type=Path, help="decision records JSONL (each with its `features`)")
    rep.add_argument("--policy", type=Path, required=True, help="the policy to try")
    rep.set_defaults(func=_replay)


def split_module(corpus: Path) -> ModuleType:
    path = corpus / "split.py"
    spec = importlib.util.spec_from_file_location("autoroute_corpus_split", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SystemExit(f"autoroute: {path} not found (the corpus directory holds split.py)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train(args: argparse.Namespace) -> int:
    from proxy.policy import load_policy
    from proxy.policy.routing import CATEGORIES
    from proxy.training import curve
    from proxy.training.dataset import examples, rows_digest
    from proxy.training.fit import train

    split = split_module(args.corpus)
    rows = split.corpus_rows("train", args.corpus)
    print(f"train split: {len(rows)} rows (test split and x.jsonl untouched)")
    ex = examples(rows)
    policy = replace(load_policy(args.policy, {}), router_artifact=None)
    from proxy.training.targets import tier_costs

    costs = tier_costs(rows, [e.heuristic for e in ex], policy)  # for the per-category target offsets
    target = policy.routing.quality_target
    raw, oof = train(ex, CATEGORIES, seed=args.seed, meta={"corpus": rows_digest(rows)}, costs=costs, target=target)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(raw)
    from proxy.routing.learned import load_router

    router = load_router(args.out)
    print(f"wrote {args.out} ({len(raw):,} bytes, sha256 {router.digest[:16]}): {dict(router.meta)}")
    print(f"per-category quality-target offsets (fitted at quality_target {target}): {router.offsets}")
    data = [
        (row, replace(e.heuristic, adequacy=(1.0, float(p[1]), float(p[2]), float(p[3])))) for row, e, p in zip(rows, ex, oof, strict=True)
    ]
    print(
        curve.format_curve(
            curve.curve(policy, data),
            "out-of-fold on the train split, calibrated on the same predictions (optimistic; choose quality_target with "
            "python -m proxy.training.cv; accuracy column = the heuristic's)",
        )
    )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from proxy.policy import load_policy
    from proxy.training import curve

    if args.feedback is not None:
        from proxy.training.feedback import write_calibration

        path = write_calibration(args.policy, args.feedback, args.prior_strength)
        print(f"wrote {path}; reload the proxy (POST /admin/reload or SIGHUP) to apply it")
        return 0
    policy = load_policy(args.policy, {})
    if policy.router_artifact is None:
        print("autoroute: the policy has no trained router (routing.yaml router); nothing to calibrate", file=sys.stderr)
        return 2
    split = split_module(args.corpus)
    test = curve.classified(policy, split.corpus_rows("test", args.corpus))
    print(curve.format_curve(curve.curve(policy, test), f"frozen test split (policy {policy.hash})"))
    print(curve.format_reliability(curve.reliability(test)))
    cross = curve.classified(policy, split.corpus_rows("cross", args.corpus))
    if cross:
        print(curve.format_curve(curve.curve(policy, cross), "cross-check set x.jsonl (independent writer)"))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from proxy.policy import load_policy
    from proxy.training.replay import format_deltas, replay

    policy = load_policy(args.policy, {})
    records = [json.loads(line) for line in args.records.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(format_deltas(replay(records, policy), policy.hash))
    return 0
