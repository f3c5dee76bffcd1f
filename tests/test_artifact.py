"""proxy/policy/artifact.py: the bundled router artifact loads with the very values json gives,
its weight vectors as tuples the router keeps as they are, and equal weights sharing one float."""

from __future__ import annotations

import gzip
import json

from proxy.policy.artifact import DEFAULT_ARTIFACT, load_artifact
from proxy.routing.learned import Router


def test_weights_are_jsons_values_shared_and_not_copied_by_the_router() -> None:
    plain = json.loads(gzip.decompress(DEFAULT_ARTIFACT.read_bytes()))
    loaded = load_artifact(DEFAULT_ARTIFACT)
    weights = loaded.data["weights"]
    assert weights.keys() == plain["weights"].keys()
    assert all(list(weights[k]) == v for k, v in plain["weights"].items())  # identical values (==, bit for bit)
    assert all(isinstance(v, tuple) for v in weights.values())
    objects = {id(x) for v in weights.values() for x in v}
    assert len(objects) < sum(len(v) for v in weights.values()) / 5  # equal literals share one float
    router = Router(loaded.data, loaded.digest)
    name = next(iter(weights))
    assert router.weights[name] is weights[name]  # no second copy
