"""The corpus's frozen train/test split (a rule, not a list, so rows added later split the same way).

A row is in the TEST split when the first 8 hex digits of sha256("autoroute-split-v1:" + id),
read as an integer, modulo 100 is below 20 (about 20 % of every generator's rows, every
category, every tier: the hash does not look at the content). The rule was committed before
any model was trained or any threshold was tuned (see corpus/README.md); `test_ids.txt` lists
the test ids that existed at the freeze and a test checks the rule still puts them there.

    python corpus/split.py            # counts per file / split / category
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SALT = "autoroute-split-v1:"
TEST_PERCENT = 20
TRAINING_FILES = tuple(f"g{i}.jsonl" for i in range(1, 29))  # g1..g28, in the order they were written
CROSS_CHECK_FILE = "x.jsonl"  # written by a generator that never saw the rest: never train or tune on it


def is_test(row_id: str) -> bool:
    return int(hashlib.sha256((SALT + row_id).encode()).hexdigest()[:8], 16) % 100 < TEST_PERCENT


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:  # a file being appended to may end mid-line
                    continue


def corpus_rows(split: str, directory: Path = HERE) -> list[dict[str, Any]]:
    """`train`, `test` (the frozen split of g1-g4) or `cross` (x.jsonl)."""
    if split == "cross":
        return list(read_rows(directory / CROSS_CHECK_FILE))
    want_test = split == "test"
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}")
    rows = []
    for name in TRAINING_FILES:
        path = directory / name
        if path.is_file():
            rows.extend(r for r in read_rows(path) if is_test(str(r["id"])) == want_test)
    return rows


def main() -> int:
    for split in ("train", "test", "cross"):
        rows = corpus_rows(split)
        cats = Counter(r["category"] for r in rows)
        tiers = Counter(r["adequate_tier"] for r in rows)
        print(f"{split:5s} {len(rows):5d}  tiers {dict(sorted(tiers.items()))}  {dict(sorted(cats.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
