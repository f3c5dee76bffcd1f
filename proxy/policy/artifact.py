"""The trained router's artifact as the policy carries it: the parsed file and its sha256.

The policy layer only reads and checks it (it is part of the policy, and of its hash);
`proxy/routing/learned.py` turns it into the model that predicts. The weight rows are packed as
they are read (`proxy/policy/packed.py`): `data["weights"]` is a `Packed` (one int per feature,
a Mapping view back to the float rows), or, for an artifact whose weights do not pack, a dict of
float tuples. `data["exclusions"]` (feature -> categories it rules out) is always present.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.policy.packed import Packed

DEFAULT_ARTIFACT = Path(__file__).resolve().parents[1] / "routing" / "model" / "router.json.gz"
REQUIRED = ("categories", "tiers", "bias", "weights", "calibration")


@dataclass(frozen=True)
class RouterArtifact:
    digest: str  # sha256 of the file's bytes
    data: Mapping[str, Any] = field(repr=False, compare=False)


def load_artifact(path: Path | str = DEFAULT_ARTIFACT) -> RouterArtifact:
    """Read an artifact (gzip JSON). Raises OSError / ValueError on a missing or broken file."""
    raw = Path(path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    data = json.loads(_text(raw), parse_float=_Floats())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a router artifact")
    for name in REQUIRED:
        if name not in data:
            raise ValueError(f"{path}: not a router artifact (no {name!r})")
    offsets = data.get("target_offsets", {})
    if not isinstance(offsets, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in offsets.values()):
        raise ValueError(f"{path}: target_offsets must map categories to numbers")
    data["exclusions"] = _exclusions(data.get("exclusions", {}), data["categories"], path)
    weights = data["weights"]
    if isinstance(weights, dict) and isinstance(data["bias"], list):
        packed = Packed.of(weights, len(data["bias"]), consume=True)  # the float rows go as each is packed
        data["weights"] = packed if packed is not None else {k: tuple(v) if isinstance(v, list) else v for k, v in weights.items()}
    return RouterArtifact(digest, data)


def _text(raw: bytes) -> str:
    """The file's JSON text. Gunzipped into one buffer of the size the gzip trailer gives (no
    doubling reallocations) and decoded before parsing, so the bytes are gone while json works."""
    if raw[:2] == b"\x1f\x8b":
        try:
            size = min(int.from_bytes(raw[-4:], "little"), 32 * len(raw))  # the trailer's size, a hint only (bounded)
            raw = zlib.decompress(raw, wbits=31, bufsize=max(size, 1))
        except zlib.error as exc:
            raise ValueError(f"not a gzip file: {exc}") from exc
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 JSON: {exc}") from exc


def _exclusions(value: Any, categories: Any, path: Path | str) -> dict[str, tuple[str, ...]]:
    """The artifact's hard rules: structure feature -> the categories it rules out."""
    known = set(categories) if isinstance(categories, list) else set()
    if not isinstance(value, dict) or not all(
        isinstance(cats, list) and all(isinstance(c, str) and c in known for c in cats) and len(set(cats)) < len(known)
        for cats in value.values()
    ):
        raise ValueError(f"{path}: exclusions must map features to lists of the artifact's categories (not all of them)")
    return {str(f): tuple(cats) for f, cats in value.items()}


class _Floats:
    """json's parse_float that returns one float object per distinct literal. The bundled
    artifact has ~800k weights (4 decimals) but ~18k distinct values: sharing them keeps the
    parsed float rows, which live only until they are packed, ~15 MB smaller at the load's peak.
    The values are exactly float(literal), as json gives them. (Not a dict subclass: json takes
    an empty, falsy one for "no parse_float".)"""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def __call__(self, text: str) -> float:
        value = self._seen.get(text)
        if value is None:
            value = self._seen[text] = float(text)
        return value
