"""`autoroute train` is reproducible and its artifact is what inference reads (needs the [train] extra)."""

from __future__ import annotations

import gzip
import json

import pytest

from proxy.cli.learn import split_module
from proxy.policy.routing import CATEGORIES
from proxy.routing.learned import Router, load_router
from proxy.training.dataset import examples
from tests.eval.run_eval import CORPUS

pytest.importorskip("sklearn")


def test_training_is_seeded_and_the_artifact_predicts_like_sklearn(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from proxy.training import fit

    rows = split_module(CORPUS).corpus_rows("train", CORPUS)[::8]  # a small slice: seconds, not minutes
    ex = examples(rows)
    first, _ = fit.train(ex, CATEGORIES, seed=3)
    second, oof = fit.train(ex, CATEGORIES, seed=3)
    assert first == second  # byte for byte
    assert oof.shape == (len(ex), 4)
    path = tmp_path / "r.json.gz"
    path.write_bytes(first)
    router = load_router(path)
    assert isinstance(router, Router) and router.meta["rows"] == len(ex)
    # no train row under 2,500 tokens is a long document: such requests are ruled out of it, by a
    # rule the artifact carries (the learned weights left as fitted: nothing like the old -300)
    data = json.loads(gzip.decompress(first))
    assert data["exclusions"]["doc 1"] == ["long_document"] and gzip.decompress(first).isascii()
    assert not any(e.category == "long_document" and "doc 1" in e.structure for e in ex)
    ld = list(CATEGORIES).index("long_document")
    assert router.excluded(["doc 1"]) == {ld} and abs(router.weights["doc 1"][ld]) < 50
    assert max(abs(w) for row in data["weights"].values() for w in row) < 50
    doc1 = [e for e in ex if "doc 1" in e.structure]
    assert doc1 and all(router.predict_features(e.text, e.structure).category != "long_document" for e in doc1)
    # the pure-Python logits equal the sparse matrix product sklearn's coefficients give (pruning aside)
    vocab = fit.vocabulary(ex)
    X = fit.matrix(ex[:5], vocab)
    names = {k: f for f, k in vocab.items()}
    for i, e in enumerate(ex[:5]):
        logits = router.logits(e.text, e.structure)
        row = X.getrow(i)
        expected = list(router.bias)
        for j, v in zip(row.indices, row.data, strict=True):
            for k, w in enumerate(router.weights.get(names[j], (0.0,) * len(expected))):
                expected[k] += v * w
        assert logits == pytest.approx(expected, abs=1e-6)


def test_the_artifact_lists_the_most_frequent_features_first(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from proxy.training import fit

    rows = split_module(CORPUS).corpus_rows("train", CORPUS)[::16]
    ex = examples(rows)
    raw, _ = fit.train(ex, CATEGORIES, seed=1)
    text = gzip.decompress(raw)
    data = json.loads(text)
    df = fit.document_frequencies(ex)
    order = [df[f] for f in data["weights"]]
    assert order == sorted(order, reverse=True) and order[0] > order[-1]  # the file's (and the loader's) order
    assert "bias" in list(data["weights"])[:3]  # every request has it
    rest = {k: v for k, v in data.items() if k != "weights"}
    assert text.startswith(json.dumps(rest, sort_keys=True, separators=(",", ":"))[:-1].encode())  # the rest: sorted keys
    path = tmp_path / "r.json.gz"
    path.write_bytes(raw)
    assert list(load_router(path).weights) == list(data["weights"])  # the process holds the rows in that order
