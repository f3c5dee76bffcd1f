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
    data = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a router artifact")
    for name in REQUIRED:
        if name not in data:
            raise ValueError(f"{path}: not a router artifact (no {name!r})")
    return RouterArtifact(hashlib.sha256(raw).hexdigest(), data)
