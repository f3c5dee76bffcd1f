"""corpus/ingest.py keeps only rows a trained router can use: labels in range, a valid request body."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _ingest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corpus_ingest", ROOT / "corpus" / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GOOD = {
    "id": "gz-1",
    "category": "qa_retrieval",
    "complexity": 1,
    "adequate_tier": 4,
    "body": {"model": "auto", "messages": [{"role": "user", "content": "hi?"}]},
}


def test_rows_with_bad_labels_or_bodies_are_dropped_with_a_reason(tmp_path: Path) -> None:
    ingest = _ingest()
    assert ingest.problem(GOOD, set()) is None
    assert ingest.problem(GOOD, {"gz-1"}) == "duplicate id"
    assert ingest.problem({**GOOD, "category": "poetry"}, set()) == "category out of range"
    assert ingest.problem({**GOOD, "adequate_tier": 5}, set()) == "adequate_tier out of range"
    assert ingest.problem({**GOOD, "complexity": True}, set()) == "complexity out of range"
    assert ingest.problem({**GOOD, "body": {"model": "auto", "messages": "hi"}}, set()).startswith("invalid request body")
    source = tmp_path / "gz.jsonl"
    rows = [GOOD, {**GOOD, "id": "gz-2", "body": {"messages": [{"role": "wizard", "content": "x"}]}}, {**GOOD, "id": "gz-1"}]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    target = tmp_path / "out.jsonl"
    kept, dropped = ingest.ingest(source, target, set())
    assert kept == 1 and sum(dropped.values()) == 3 and dropped["not JSON"] == 1 and dropped["duplicate id"] == 1
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == ["gz-1"]
