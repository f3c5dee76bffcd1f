"""The trained router's artifact as the policy carries it: the parsed file and its sha256.

The policy layer only reads and checks it (it is part of the policy, and of its hash);
`proxy/routing/learned.py` turns it into the model that predicts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ARTIFACT = Path(__file__).resolve().parents[1] / "routing" / "model" / "router.json.gz"
REQUIRED = ("categories", "tiers", "bias", "weights", "calibration")


@dataclass(frozen=True)
class RouterArtifact:
    digest: str  # sha256 of the file's bytes
    data: Mapping[str, Any] = field(repr=False, compare=False)


def load_artifact(path: Path | str = DEFAULT_ARTIFACT) -> RouterArtifact:
    """Read an artifact (gzip JSON). Raises OSError / ValueError on a missing or broken file."""
    raw = Path(path).read_bytes()
    data = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw, parse_float=_Floats())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a router artifact")
    for name in REQUIRED:
        if name not in data:
            raise ValueError(f"{path}: not a router artifact (no {name!r})")
    offsets = data.get("target_offsets", {})
    if not isinstance(offsets, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in offsets.values()):
        raise ValueError(f"{path}: target_offsets must map categories to numbers")
    weights = data["weights"]
    if isinstance(weights, dict):  # tuples: the router keeps these very objects (tuple(t) is t)
        data["weights"] = {k: tuple(v) if isinstance(v, list) else v for k, v in weights.items()}
    return RouterArtifact(hashlib.sha256(raw).hexdigest(), data)


class _Floats:
    """json's parse_float that returns one float object per distinct literal. The bundled
    artifact has ~430k weights (4 decimals) but ~18k distinct values: sharing them, and keeping
    the weight vectors as tuples the router does not copy again, takes ~15 MB off the process's
    live memory. The values are exactly float(literal), as json gives them. (Not a dict
    subclass: json takes an empty, falsy one for "no parse_float".)"""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def __call__(self, text: str) -> float:
        value = self._seen.get(text)
        if value is None:
            value = self._seen[text] = float(text)
        return value
