"""Copy a writer's JSONL into the corpus, keeping only valid rows.

    PYTHONPATH=$PWD python corpus/ingest.py /work/corpus/g5.jsonl [/work/corpus/g6.jsonl ...]

A row is kept when its line is a JSON object, its id is a new string, its labels are in range
(one of the eight categories, complexity 1-5, adequate_tier 1-4) and its body passes the proxy's
own chat-completions validation (proxy/api/chat.py: what a client would get a 400 for). Prints,
per file, how many rows were kept and why the others were dropped. The split rule (split.py)
then places every kept row on the train or test side by its id, as for every other row.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from proxy.api.chat import parse_chat_request  # noqa: E402
from proxy.errors import ProxyError  # noqa: E402
from proxy.policy.routing import CATEGORIES  # noqa: E402


def problem(row: Any, seen: set[str]) -> str | None:
    """Why a row cannot be used, or None."""
    if not isinstance(row, dict):
        return "not an object"
    rid = row.get("id")
    if not isinstance(rid, str) or not rid:
        return "no id"
    if rid in seen:
        return "duplicate id"
    if row.get("category") not in CATEGORIES:
        return "category out of range"
    for field, lo, hi in (("complexity", 1, 5), ("adequate_tier", 1, 4)):
        value = row.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            return f"{field} out of range"
    body = row.get("body")
    if not isinstance(body, dict):
        return "body is not an object"
    try:
        parse_chat_request(json.dumps(body).encode())
    except ProxyError as exc:
        return f"invalid request body ({exc.param or 'body'})"
    return None


def ingest(source: Path, target: Path, seen: set[str]) -> tuple[int, Counter[str]]:
    kept, dropped = [], Counter[str]()
    for line in source.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            dropped["not JSON"] += 1
            continue
        why = problem(row, seen)
        if why is not None:
            dropped[why] += 1
            continue
        seen.add(row["id"])
        kept.append(json.dumps(row, ensure_ascii=False))
    target.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    return len(kept), dropped


def existing_ids() -> set[str]:
    ids: set[str] = set()
    for path in sorted(HERE.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                ids.add(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return ids


def main(argv: list[str]) -> int:
    seen = existing_ids()
    for name in argv:
        source = Path(name)
        target = HERE / source.name
        seen -= (
            {str(json.loads(line)["id"]) for line in target.read_text(encoding="utf-8").splitlines() if line.strip()}
            if target.is_file()
            else set()
        )
        kept, dropped = ingest(source, target, seen)
        print(f"{source} -> {target.relative_to(ROOT)}: kept {kept}, dropped {sum(dropped.values())} {dict(dropped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
