"""Feedback -> calibration.json: per (category, tier) Beta posteriors of adequacy.

For each (category, routed tier) with feedback, the prior is Beta(k·m, k·(1-m)): m = the mean
P(adequate) the router gave those decisions (what it believed), k = the prior strength. Each
rating adds its score to the successes and 1 - score to the failures. The factor written is
posterior mean / m, which `proxy/routing/dial.py` multiplies into the router's probability for
that tier (and, through monotonicity, every cheaper tier) of that category: "bad" ratings
lower P(adequate) below the quality target and the next decisions move up a tier.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from proxy.policy import CALIBRATION_FILE


def posteriors(records: Iterable[Mapping[str, Any]], prior_strength: float = 20.0) -> dict[str, dict[int, dict[str, float]]]:
    sums: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])  # good, bad, sum(m), n
    for r in records:
        category, tier = r.get("category"), r.get("tier")
        if not isinstance(category, str) or not isinstance(tier, int) or not 1 <= tier <= 4:
            continue
        score = float(r.get("score", 0.0))
        adequacy = (r.get("features") or {}).get("adequacy")
        believed = float(adequacy[tier - 1]) if isinstance(adequacy, list) and len(adequacy) == 4 else 0.9
        acc = sums[(category, tier)]
        acc[0] += score
        acc[1] += 1.0 - score
        acc[2] += believed
        acc[3] += 1
    out: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    for (category, tier), (good, bad, believed_sum, n) in sorted(sums.items()):
        m = min(max(believed_sum / n, 0.01), 0.999)
        alpha, beta = prior_strength * m + good, prior_strength * (1 - m) + bad
        mean = alpha / (alpha + beta)
        out[category][tier] = {
            "alpha": round(alpha, 4),
            "beta": round(beta, 4),
            "prior": round(m, 4),
            "posterior": round(mean, 4),
            "factor": round(mean / m, 4),
        }
    return dict(out)


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_calibration(policy_dir: Path, feedback: Path, prior_strength: float = 20.0) -> Path:
    post = posteriors(read_records(feedback), prior_strength)
    data = {
        "source": str(feedback),
        "prior_strength": prior_strength,
        "factors": {cat: {str(t): v["factor"] for t, v in tiers.items()} for cat, tiers in post.items()},
        "posteriors": {cat: {str(t): v for t, v in tiers.items()} for cat, tiers in post.items()},
    }
    path = policy_dir / CALIBRATION_FILE
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
