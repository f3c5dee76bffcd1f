"""proxy/policy/artifact.py: the bundled router artifact loads packed (one int per feature, no
float rows kept) with the very values json gives, the router uses that very object, and the
exclusions are read as hard rules (checked against the categories)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from proxy.policy.artifact import DEFAULT_ARTIFACT, load_artifact
from proxy.policy.packed import Packed
from proxy.routing.learned import Router


def test_weights_are_packed_at_load_with_jsons_values_and_not_copied_by_the_router() -> None:
    plain = json.loads(gzip.decompress(DEFAULT_ARTIFACT.read_bytes()))
    loaded = load_artifact(DEFAULT_ARTIFACT)
    weights = loaded.data["weights"]
    assert isinstance(weights, Packed) and weights.size == 4  # 4-byte lanes: no weight near the old -300
    assert all(type(v) is int for v in weights.rows.values())  # no float rows kept
    assert weights.keys() == plain["weights"].keys()
    assert all(list(weights[k]) == v for k, v in plain["weights"].items())  # identical values (==, bit for bit)
    router = Router(loaded.data, loaded.digest)
    assert router.packed is weights and router.weights is weights  # no second copy


def test_the_bundled_exclusions_are_rules_not_weights() -> None:
    loaded = load_artifact(DEFAULT_ARTIFACT)
    assert loaded.data["exclusions"] == {"doc 0": ("long_document",), "doc 1": ("long_document",)}
    assert max(abs(w) for row in json.loads(gzip.decompress(DEFAULT_ARTIFACT.read_bytes()))["weights"].values() for w in row) < 100


def _write(tmp_path: Path, **changes: object) -> Path:
    data: dict[str, object] = {
        "categories": ["a", "b"],
        "tiers": [2],
        "bias": [0.5, -0.25, 0.125],
        "weights": {"x": [0.1, 0.2, 0.3], "y": [0.25, -1.5, 2.0]},
        "calibration": {"2": [[], []]},
    }
    data.update(changes)
    path = tmp_path / "r.json.gz"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    return path


def test_an_artifact_without_exclusions_has_none_and_weights_that_do_not_pack_stay_float_rows(tmp_path: Path) -> None:
    loaded = load_artifact(_write(tmp_path))
    assert loaded.data["exclusions"] == {} and isinstance(loaded.data["weights"], Packed)
    odd = load_artifact(_write(tmp_path, weights={"x": [0.1, 0.2, 3.141592653589793]}))
    assert odd.data["weights"] == {"x": (0.1, 0.2, 3.141592653589793)}  # the float path's rows, as tuples
    assert Router(odd.data, odd.digest).packed is None


@pytest.mark.parametrize("exclusions", [{"doc 0": ["nope"]}, {"doc 0": "a"}, ["doc 0"], {"doc 0": [1]}, {"doc 0": ["a", "b"]}])
def test_exclusions_must_name_the_artifacts_categories(tmp_path: Path, exclusions: object) -> None:
    with pytest.raises(ValueError, match="exclusions"):
        load_artifact(_write(tmp_path, exclusions=exclusions))
