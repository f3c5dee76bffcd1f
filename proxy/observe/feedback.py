"""Feedback on routing decisions (owns: `POST /v1/feedback`, implicit signals, `GET /admin/feedback`).

Every routed decision is remembered (the newest `KEPT_DECISIONS`) with the key that made it and the
features the router used (category, per-tier adequacy, token estimates: never prompt text).
A rating arrives as `{"decision_id", "rating": "good"|"bad"}` or `{"decision_id", "score": 0..1}`
with an optional `reason`, under the same key: an unknown decision id, or one made by another
key, is 404 (a key cannot probe or rate another key's traffic). Implicit signals are recorded
by the proxy (vocab.ImplicitSignal): an upstream error (the routed model and its fallbacks
failed), an answer cut at the token limit (finish_reason "length"), a tool call whose arguments
do not parse as JSON (proxy/request/signals.py), and the same task (X-Task-Id) routed again to
a more capable tier (a retry with a stronger preference or target). `GET /admin/feedback` returns the records as JSONL, the input of
`autoroute calibrate --feedback` (per (category, tier) Beta posteriors -> calibration.json).
With AUTOROUTE_FEEDBACK_FILE set, each record is also appended to that file.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from starlette.responses import Response

from proxy.errors import InvalidRequest, NotFound
from proxy.vocab import ImplicitSignal

MAX_REASON = 500
RATINGS = {"good": 1.0, "bad": 0.0}


class DecisionNotFound(NotFound):
    default_code = "decision_not_found"


# Routed decisions kept for rating. Each costs ~0.45 KB (its features as compact JSON in a tuple;
# a dict of dicts cost ~0.7 KB): 20,000 hold ~9 MB. At 100,000 the store was most of the memory a
# process gained over its first 100k requests (+80 MB in the bench soak).
KEPT_DECISIONS = 20_000


class FeedbackStore:
    def __init__(self, kept: int = KEPT_DECISIONS, path: Path | None = None, records_kept: int = 100_000) -> None:
        self.kept = kept
        self.path = path
        # decision id -> (key id, tier, model, features as JSON, policy hash)
        self._decisions: OrderedDict[str, tuple[str | None, int, str, str, str]] = OrderedDict()
        self._records: list[dict[str, Any]] = []
        self._records_kept = records_kept
        self._tasks: OrderedDict[tuple[str | None, str], str] = OrderedDict()  # (key, task) -> its last decision

    def remember(
        self,
        decision_id: str,
        key_id: str | None,
        tier: int,
        model: str,
        features: Mapping[str, Any],
        policy_hash: str,
        task_id: str | None = None,
    ) -> None:
        """Keep a routed decision; a retry of the same task (X-Task-Id) at a higher tier marks the previous one bad."""
        if task_id:
            previous = self._tasks.get((key_id, task_id))
            self._tasks[(key_id, task_id)] = decision_id
            while len(self._tasks) > self.kept:
                self._tasks.popitem(last=False)
            before = self._decisions.get(previous) if previous else None
            if before is not None and previous is not None and tier < before[1]:
                self.submit(previous, key_id, 0.0, ImplicitSignal.RETRIED_STRONGER, source="implicit")
        # a str: orjson's bytes keep the 4 KB block they were written into
        self._decisions[decision_id] = (key_id, tier, model, orjson.dumps(features).decode(), policy_hash)
        while len(self._decisions) > self.kept:
            self._decisions.popitem(last=False)

    def submit(self, decision_id: str, key_id: str | None, score: float, reason: str | None, source: str = "explicit") -> dict[str, Any]:
        known = self._decisions.get(decision_id)
        if known is None or known[0] != key_id:
            raise DecisionNotFound(f"no decision {decision_id!r} made by this key (decisions are kept for the last {self.kept:,})")
        _, tier, model, packed, policy_hash = known
        features = orjson.loads(packed)
        record = {
            "decision_id": decision_id,
            "ts": round(time.time(), 3),
            "source": source,
            "score": score,
            "reason": reason,
            "category": features.get("category"),
            "tier": tier,
            "model": model,
            "policy_hash": policy_hash,
            "features": features,
        }
        self._records.append(record)
        del self._records[: max(0, len(self._records) - self._records_kept)]
        if self.path is not None:
            with self.path.open("ab") as fh:
                fh.write(orjson.dumps(record) + b"\n")
        return record

    def implicit(self, decision_id: str, key_id: str | None, signal: str) -> None:
        """A bad outcome the proxy saw itself (upstream_error, truncated, tool_call_unparsable)."""
        if decision_id in self._decisions:
            self.submit(decision_id, key_id, 0.0, signal, source="implicit")

    def records(self) -> list[dict[str, Any]]:
        return list(self._records)


def parse_feedback(body: Any) -> tuple[str, float, str | None]:
    """(decision_id, score 0..1, reason) from a `POST /v1/feedback` body, or InvalidRequest."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the body must be a JSON object with decision_id and rating or score")
    unknown = set(body) - {"decision_id", "rating", "score", "reason"}
    if unknown:
        raise InvalidRequest(
            f"unknown field(s) {', '.join(sorted(unknown))}; use decision_id, rating, score, reason", param=sorted(unknown)[0]
        )
    decision_id = body.get("decision_id")
    if not isinstance(decision_id, str) or not decision_id or len(decision_id) > 200:
        raise InvalidRequest("decision_id must be the x-autoroute-decision-id of a request", param="decision_id")
    rating, score = body.get("rating"), body.get("score")
    if (rating is None) == (score is None):
        raise InvalidRequest("give exactly one of rating ('good' or 'bad') and score (0 to 1)", param="rating")
    if rating is not None:
        if rating not in RATINGS:
            raise InvalidRequest("rating must be 'good' or 'bad'", param="rating")
        value = RATINGS[rating]
    else:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
            raise InvalidRequest("score must be a number from 0 (bad) to 1 (good)", param="score")
        value = float(score)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidRequest("reason must be a string", param="reason")
    return decision_id, value, reason[:MAX_REASON] if reason else None


def export(store: FeedbackStore) -> Response:
    return Response(b"".join(orjson.dumps(r) + b"\n" for r in store.records()), media_type="application/x-ndjson")
