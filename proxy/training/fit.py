"""Fit the router (scikit-learn, build time only) and write the artifact `learned.py` reads.

One design matrix: text features (binary, scaled by 1/sqrt(count) per request) and structure
features (binary), vocabulary = features seen in at least MIN_DF training requests. Models:
one-vs-rest logistic regressions for the category (liblinear: seconds, not minutes), and for t = 2, 3, 4 a binary logistic
regression for "the least adequate tier is >= t" (a tier-t model is adequate). Calibration:
isotonic regression on 5-fold out-of-fold logits of the training rows (so the calibrator never
sees a prediction made on its own row). Two more steps: EXCLUSIONS (a structure feature rules a
category out when no training row bears it, e.g. long_document under 2,500 tokens: written into
the artifact's `exclusions` as a hard rule the router applies, the learned weights left as
fitted; the out-of-fold predictions apply it too), and, given
the rows' tier costs and the policy's quality_target, per-category target offsets fitted on the
same out-of-fold probabilities (`targets.py`). Seeded and deterministic: same rows, same bytes.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from proxy.training.dataset import Example

MIN_DF = 2
C_CATEGORY = 100.0
C_TIER = 20.0
STRUCTURE_VALUE = 0.1  # a structure feature's value (text features: 1/sqrt(count)); chosen by cv.py
FOLDS = 5
TIERS = (2, 3, 4)
MIN_CALIBRATION_ROWS = 80  # a category's own calibrator needs this many training rows predicted in it
# Structure features that rule a category out when no training row carrying one has that category
# (the rubric: a long document is several thousand words; no long_document row of the train split
# has its largest message under 2,500 tokens, while one writer's medium inputs were taken for one).
EXCLUSIONS = (("long_document", ("doc 0", "doc 1")),)


@dataclass(frozen=True)
class Config:
    """The fit's knobs (cross-validated with `python -m proxy.training.cv`; the defaults ship)."""

    c_category: float = C_CATEGORY
    c_tier: float = C_TIER
    min_df: int = MIN_DF
    balanced: bool = False  # class_weight="balanced" for the category models
    structure_value: float = STRUCTURE_VALUE
    by_writer: bool = True  # calibrate on leave-one-writer-out predictions (id prefix), not stratified folds
    per_category: float = 0.0  # weight of per-(predicted category) isotonic calibrators, blended with the global one
    target_offsets: bool = True  # per-category quality-target offsets (training/targets.py), when costs are given


DEFAULT = Config()


def _sklearn() -> Any:
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")  # BLAS threads fighting over a shared machine cost 30x here
    try:
        import numpy as np
        from scipy import sparse
        from sklearn.isotonic import IsotonicRegression
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(f"autoroute train needs the [train] extra (pip install -e '.[train]'): {exc}") from exc
    return np, sparse, IsotonicRegression, LogisticRegression, StratifiedKFold


def document_frequencies(examples: Sequence[Example]) -> Counter[str]:
    """Feature -> the number of examples that have it."""
    df: Counter[str] = Counter()
    for ex in examples:
        df.update(ex.text)
        df.update(set(ex.structure))
    return df


def vocabulary(examples: Sequence[Example], min_df: int = MIN_DF) -> dict[str, int]:
    df = document_frequencies(examples)
    return {f: i for i, f in enumerate(sorted(f for f, n in df.items() if n >= min_df))}


def by_frequency(features: Iterable[str], df: Mapping[str, int]) -> list[str]:
    """The features, most frequent first (ties alphabetically): the artifact's weight order. The
    loader allocates the rows in file order, so the rows most requests look up share cache lines
    and pages instead of being spread over the whole table (classify + select ~5% faster
    interleaved over the eval requests than in alphabetical order)."""
    return sorted(features, key=lambda f: (-df.get(f, 0), f))


def dumps(data: Mapping[str, Any]) -> bytes:
    """The artifact's JSON: keys sorted (reproducible bytes), except the weights' own order
    (`by_frequency`), which is kept. ASCII (\\u escapes, json's default): the loader's text then
    takes 1 byte a character, not 2."""
    rest = json.dumps({k: v for k, v in data.items() if k != "weights"}, sort_keys=True, separators=(",", ":"))
    weights = json.dumps(data["weights"], separators=(",", ":"))
    return (rest[:-1] + ',"weights":' + weights + "}").encode()


def matrix(examples: Sequence[Example], vocab: dict[str, int], structure_value: float = STRUCTURE_VALUE) -> Any:
    np, sparse, *_ = _sklearn()
    rows, cols, vals = [], [], []
    for r, ex in enumerate(examples):
        scale = 1.0 / math.sqrt(len(ex.text)) if ex.text else 0.0
        for f in ex.text:
            j = vocab.get(f)
            if j is not None:
                rows.append(r)
                cols.append(j)
                vals.append(scale)
        for f in set(ex.structure):
            j = vocab.get(f)
            if j is not None:
                rows.append(r)
                cols.append(j)
                vals.append(structure_value)
    return sparse.csr_matrix((np.array(vals), (np.array(rows), np.array(cols))), shape=(len(examples), len(vocab)))


def _binary(X: Any, y: Any, C: float, seed: int, balanced: bool = False) -> tuple[Any, float]:
    _, _, _, LogisticRegression, _ = _sklearn()
    weight = "balanced" if balanced else None
    m = LogisticRegression(C=C, solver="liblinear", max_iter=500, random_state=seed, class_weight=weight).fit(X, y)
    return m.coef_[0], float(m.intercept_[0])


def _models(X: Any, cats: Any, tiers: Any, seed: int, categories: Sequence[str], cfg: Config = DEFAULT) -> tuple[Any, Any]:
    """(coefficients outputs x features, intercepts): one-vs-rest per category, then tiers 2, 3, 4."""
    np = _sklearn()[0]
    fitted = [_binary(X, (cats == c).astype(int), cfg.c_category, seed, cfg.balanced) for c in categories]
    fitted += [_binary(X, (tiers >= t).astype(int), cfg.c_tier, seed) for t in TIERS]
    return np.vstack([f[0] for f in fitted]), np.array([f[1] for f in fitted])


def exclusions(examples: Sequence[Example], vocab: dict[str, int], categories: Sequence[str]) -> dict[str, list[str]]:
    """The EXCLUSIONS the training rows bear out (feature -> categories it rules out): features of
    the vocabulary that no row of the category carries."""
    out: dict[str, list[str]] = {}
    for category, features in EXCLUSIONS:
        if category not in categories:
            continue
        for f in features:
            if f in vocab and not any(ex.category == category and f in ex.structure for ex in examples):
                out.setdefault(f, []).append(category)
    return out


def _exclude(cat_logits: Any, examples: Sequence[Example], rules: dict[str, list[str]], categories: Sequence[str]) -> None:
    """Apply `rules` to category logits (rows = examples, in place): a ruled-out category's logit is -inf."""
    for r, ex in enumerate(examples):
        for f in set(ex.structure) & rules.keys():
            for c in rules[f]:
                cat_logits[r, list(categories).index(c)] = -math.inf


def out_of_fold(examples: Sequence[Example], seed: int, categories: Sequence[str], cfg: Config = DEFAULT) -> tuple[Any, Any]:
    """(category logits, tier logits) for every training row from models that did not see it."""
    np, _, _, _, StratifiedKFold = _sklearn()
    cats = np.array([ex.category for ex in examples])
    tiers = np.array([ex.tier for ex in examples])
    strata = np.array([f"{ex.category}:{ex.tier}" for ex in examples])
    counts = Counter(strata)
    strata = np.array([s if counts[s] >= FOLDS else s.split(":")[0] for s in strata])
    cat_logits = np.zeros((len(examples), len(categories)))
    tier_logits = np.zeros((len(examples), len(TIERS)))
    writers = np.array([ex.id.split("-", 1)[0] for ex in examples])
    if cfg.by_writer and len(set(writers)) >= 3:
        folds = [(np.where(writers != w)[0], np.where(writers == w)[0]) for w in sorted(set(writers))]
    else:
        folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(strata, strata))
    for fit_idx, held_idx in folds:
        fold = [examples[i] for i in fit_idx]
        vocab = vocabulary(fold, cfg.min_df)
        X_fit, X_held = matrix(fold, vocab, cfg.structure_value), matrix([examples[i] for i in held_idx], vocab, cfg.structure_value)
        W, b = _models(X_fit, cats[fit_idx], tiers[fit_idx], seed, categories, cfg)
        logits = np.asarray(X_held @ W.T) + b
        _exclude(logits, [examples[i] for i in held_idx], exclusions(fold, vocab, categories), categories)
        cat_logits[held_idx] = logits[:, : len(categories)]
        tier_logits[held_idx] = logits[:, len(categories) :]
    return cat_logits, tier_logits


def fit_data(
    examples: Sequence[Example],
    categories: Sequence[str],
    seed: int = 0,
    cfg: Config = DEFAULT,
    costs: tuple[Any, Any] | None = None,
    target: float | None = None,
) -> tuple[dict[str, Any], Any]:
    """(the artifact's data without meta, out-of-fold adequacy probabilities per row: array n x 4).

    `costs` (targets.tier_costs of the same rows) and `target` (the policy's quality_target):
    fit the per-category target offsets on the out-of-fold probabilities (cfg.target_offsets)."""
    np, _, IsotonicRegression, _, _ = _sklearn()
    tiers = np.array([ex.tier for ex in examples])
    oof_cat, oof_tier = out_of_fold(examples, seed, categories, cfg)
    calibration: dict[str, list[list[float]]] = {}
    oof_probs = np.ones((len(examples), 4))
    for k, t in enumerate(TIERS):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(oof_tier[:, k], (tiers >= t).astype(float))
        calibration[str(t)] = [[round(float(x), 5) for x in iso.X_thresholds_], [round(float(y), 5) for y in iso.y_thresholds_]]
        oof_probs[:, k + 1] = np.minimum(oof_probs[:, k], iso.predict(oof_tier[:, k]))
    if cfg.per_category > 0:
        predicted = np.array(categories)[oof_cat.argmax(axis=1)]
        for c in categories:
            rows = predicted == c
            if rows.sum() < MIN_CALIBRATION_ROWS:
                continue
            for k, t in enumerate(TIERS):
                iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                    oof_tier[rows, k], (tiers[rows] >= t).astype(float)
                )
                calibration[f"{c}:{t}"] = [[round(float(x), 5) for x in iso.X_thresholds_], [round(float(y), 5) for y in iso.y_thresholds_]]
    oof_accuracy = float(np.mean(np.array(categories)[oof_cat.argmax(axis=1)] == np.array([ex.category for ex in examples])))
    offsets: dict[str, float] = {}
    if cfg.target_offsets and costs is not None and target is not None:
        from proxy.training.targets import choose_offsets

        predicted = [categories[j] for j in oof_cat.argmax(axis=1)]
        offsets = choose_offsets(oof_probs, predicted, tiers, costs[0], costs[1], target)

    df = document_frequencies(examples)
    vocab = vocabulary(examples, cfg.min_df)
    X = matrix(examples, vocab, cfg.structure_value)
    W, b = _models(X, np.array([ex.category for ex in examples]), tiers, seed, categories, cfg)  # outputs x features
    weights = {}
    for f in by_frequency(vocab, df):
        col = W[:, vocab[f]]
        if float(np.abs(col).max()) >= 1e-3:
            weights[f] = [round(float(v), 4) for v in col]
    data = {
        "version": 1,
        "categories": list(categories),
        "tiers": list(TIERS),
        "bias": [round(float(v), 5) for v in b],
        "weights": weights,
        "calibration": calibration,
        "calibration_blend": cfg.per_category,
        "exclusions": exclusions(examples, vocab, categories),
        "structure_value": cfg.structure_value,
        "target_offsets": offsets,
        "meta": {**asdict(cfg), "oof_category_accuracy": round(oof_accuracy, 4), "offsets_at_target": target if offsets else None},
    }
    return data, oof_probs


def train(
    examples: Sequence[Example],
    categories: Sequence[str],
    seed: int = 0,
    meta: dict[str, Any] | None = None,
    cfg: Config = DEFAULT,
    costs: tuple[Any, Any] | None = None,
    target: float | None = None,
) -> tuple[bytes, Any]:
    """(artifact bytes, out-of-fold adequacy probabilities per row: array n x 4)."""
    import sklearn

    data, oof_probs = fit_data(examples, categories, seed, cfg, costs, target)
    data["meta"] = {
        **(meta or {}),
        **data["meta"],
        "seed": seed,
        "rows": len(examples),
        "features": len(data["weights"]),
        "folds": FOLDS,
        "sklearn": sklearn.__version__,
    }
    raw = dumps(data)
    return gzip.compress(raw, compresslevel=9, mtime=0), oof_probs
