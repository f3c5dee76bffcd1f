"""Labelled rows -> the router's features (the same extractors inference uses)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.routing.classify import Classification, classify
from proxy.routing.features import structure_features, text_features
from proxy.routing.textscan import read_conversation


@dataclass
class Example:
    id: str
    category: str
    tier: int  # least adequate tier 1-4
    text: set[str]
    structure: list[str]
    heuristic: Classification


def featurize(body: Mapping[str, Any]) -> tuple[set[str], list[str], Classification]:
    messages = body.get("messages")
    conv = read_conversation(messages if isinstance(messages, list) else [])
    raw_tools = body.get("tools")
    tools = raw_tools if isinstance(raw_tools, list) else []
    c = classify(body)
    return text_features(conv, tools), structure_features(conv, tools, body, c), c


def examples(rows: Iterable[Mapping[str, Any]]) -> list[Example]:
    out = []
    for row in rows:
        text, structure, c = featurize(row["body"])
        out.append(Example(str(row["id"]), row["category"], int(row["adequate_tier"]), text, structure, c))
    return out


def rows_digest(rows: Iterable[Mapping[str, Any]]) -> str:
    h = hashlib.sha256()
    for row in sorted(rows, key=lambda r: str(r["id"])):
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows
