"""Feedback, calibration, reload and replay: ratings move routing; replay prints what would change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.app import create_app
from proxy.policy import Policy, load_policy
from proxy.training.feedback import posteriors, write_calibration
from proxy.training.replay import format_deltas, replay
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving

MASTER = "mk-test-master-0123456789abcdef"
QUESTION = {"model": "auto", "messages": [{"role": "user", "content": "What is the boiling point of water at sea level in Celsius?"}]}


@pytest.fixture
def served(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[tuple[ThreadedServer, Path]]:
    policies = policy_copy(tmp_path / "policies")
    app = create_app(make_settings(policy_dir=policies, master_key=MASTER), environ=environ)
    with serving(app) as srv:
        yield srv, policies


def admin(server: ThreadedServer, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"authorization": f"Bearer {MASTER}"}, timeout=20, **kw)


def new_key(server: ThreadedServer) -> str:
    resp = admin(server, "POST", "/admin/keys", json={"name": "fb"})
    assert resp.status_code == 201, resp.text
    return resp.json()["key"]


def call(server: ThreadedServer, key: str, path: str, body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers={"authorization": f"Bearer {key}"}, timeout=20)


def test_feedback_is_accepted_only_for_the_keys_own_decisions(served: tuple[ThreadedServer, Path]) -> None:
    server, _ = served
    mine, other = new_key(server), new_key(server)
    decision = call(server, mine, "/v1/route", QUESTION).json()
    ok = call(server, mine, "/v1/feedback", {"decision_id": decision["decision_id"], "rating": "bad", "reason": "too shallow"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["tier"] == decision["tier"] and ok.json()["category"] == decision["category"]
    foreign = call(server, other, "/v1/feedback", {"decision_id": decision["decision_id"], "rating": "good"})
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "decision_not_found"
    unknown = call(server, mine, "/v1/feedback", {"decision_id": "dec_nope", "rating": "good"})
    assert unknown.status_code == 404
    for bad in (
        {"decision_id": decision["decision_id"], "rating": "meh"},
        {"decision_id": decision["decision_id"], "score": 2},
        {"rating": "good"},
    ):
        resp = call(server, mine, "/v1/feedback", bad)
        assert resp.status_code == 400, (bad, resp.text)
    assert call(server, "sk-wrong", "/v1/feedback", {"decision_id": decision["decision_id"], "rating": "good"}).status_code == 401
    exported = [json.loads(line) for line in admin(server, "GET", "/admin/feedback").text.splitlines()]
    assert len(exported) == 1 and exported[0]["score"] == 0.0 and "messages" not in json.dumps(exported)
    assert exported[0]["features"]["adequacy"] is not None


def test_bad_ratings_move_the_category_up_a_tier_after_calibrate_and_reload(served: tuple[ThreadedServer, Path], tmp_path: Path) -> None:
    server, policies = served
    key = new_key(server)
    first = call(server, key, "/v1/route", QUESTION).json()
    for _ in range(12):
        d = call(server, key, "/v1/route", QUESTION).json()
        assert d["tier"] == first["tier"]
        assert call(server, key, "/v1/feedback", {"decision_id": d["decision_id"], "rating": "bad"}).status_code == 200
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(admin(server, "GET", "/admin/feedback").text)
    write_calibration(policies, feedback)
    before = call(server, key, "/v1/route", QUESTION).json()
    assert before["tier"] == first["tier"] and before["policy_hash"] == first["policy_hash"]  # nothing changes until reload
    reloaded = admin(server, "POST", "/admin/reload")
    assert reloaded.status_code == 200 and reloaded.json()["previous_policy_hash"] == first["policy_hash"]
    after = call(server, key, "/v1/route", QUESTION).json()
    assert after["policy_hash"] == reloaded.json()["policy_hash"] != first["policy_hash"]
    assert after["tier"] < first["tier"], after["reason"]  # a more capable tier
    assert after["category"] == first["category"]
    assert httpx.post(server.url + "/admin/reload", timeout=10).status_code == 401


def test_posteriors_are_beta_updates_of_what_the_router_believed() -> None:
    records = [{"category": "qa_retrieval", "tier": 4, "score": s, "features": {"adequacy": [1, 1, 0.95, 0.9]}} for s in (0, 0, 1)]
    post = posteriors(records, prior_strength=10)
    cell = post["qa_retrieval"][4]
    assert cell["alpha"] == pytest.approx(10 * 0.9 + 1) and cell["beta"] == pytest.approx(10 * 0.1 + 2)
    assert cell["factor"] == pytest.approx((10 / 13) / 0.9, abs=1e-3)


def test_replay_matches_a_hand_computed_case(policy: Policy, tmp_path: Path) -> None:
    nano, flash = policy.models["openai/gpt-4.1-nano"], policy.models["google/gemini-2.5-flash"]
    feats = {"category": "qa_retrieval", "complexity": 1, "adequacy": [1.0, 0.99, 0.95, 0.85], "input_tokens": 1000, "output_tokens": 200}
    records = [
        {"decision_id": "d1", "chosen_model": "openai/gpt-4.1-nano", "features": {**feats, "quality_target": 0.8}},
        {"decision_id": "d2", "chosen_model": "openai/gpt-4.1-nano", "features": {**feats, "quality_target": None}},
        {
            "decision_id": "d3",
            "chosen_model": "openai/gpt-4.1-nano",
            "features": {**feats, "category": "classification", "quality_target": 0.8},
        },
    ]
    stricter = policy_copy(tmp_path / "p")
    (stricter / "calibration.json").write_text(json.dumps({"factors": {"qa_retrieval": {"4": 0.5, "3": 0.5}}}))
    deltas = replay(records, load_policy(stricter, {}))
    qa, cls = deltas["qa_retrieval"], deltas["classification"]
    # qa: tiers 3 and 4 halved (0.475, 0.425) -> below 0.8 and 0.9 -> tier 2's cheapest model
    tier2 = min((m for m in policy.models.values() if m.tier == 2), key=lambda m: m.cost_usd(1000, 600 if m.reasoning_model else 200))
    assert tier2.id == flash.id
    assert qa.n == 2 and qa.changed == 2
    assert qa.cost_before == pytest.approx(2 * nano.cost_usd(1000, 200))
    assert qa.cost_after == pytest.approx(2 * flash.cost_usd(1000, 200))
    assert qa.adequacy_before == pytest.approx(2 * 0.85) and qa.adequacy_after == pytest.approx(2 * 0.99)
    # classification has no factor: its 0.85 >= 0.8 keeps a tier-4 model (the cheapest: nano or an equal-priced one)
    assert cls.n == 1 and policy.models[records[2]["chosen_model"]].tier == 4
    assert cls.adequacy_after == pytest.approx(0.85)
    text = format_deltas(deltas, "abc")
    assert "qa_retrieval" in text and "+0.140" in text


def test_a_task_retried_at_a_stronger_tier_marks_the_first_decision_bad() -> None:
    from proxy.observe.feedback import FeedbackStore

    store = FeedbackStore()
    store.remember("d1", "k1", 4, "openai/gpt-4.1-nano", {"category": "qa_retrieval"}, "h", task_id="t")
    store.remember("d2", "k1", 4, "openai/gpt-4.1-nano", {"category": "qa_retrieval"}, "h", task_id="t")  # same tier: no signal
    assert store.records() == []
    store.remember("d3", "k2", 1, "google/gemini-2.5-pro", {"category": "qa_retrieval"}, "h", task_id="t")  # another key's task
    assert store.records() == []
    store.remember("d4", "k1", 2, "google/gemini-2.5-flash", {"category": "qa_retrieval"}, "h", task_id="t")
    [signal] = store.records()
    assert signal["decision_id"] == "d2" and signal["score"] == 0.0 and signal["reason"] == "retried_stronger"
    assert signal["source"] == "implicit" and signal["tier"] == 4


def test_the_store_keeps_the_newest_decisions_and_their_features_exactly() -> None:
    from proxy.observe.feedback import DecisionNotFound, FeedbackStore

    store = FeedbackStore(kept=3)
    features = {"category": "coding", "adequacy": [1.0, 0.99459, 0.5], "input_tokens": 29, "tools": False}
    for i in range(5):
        store.remember(f"d{i}", "k1", 2, "openai/gpt-4.1", features, "h")
    with pytest.raises(DecisionNotFound):
        store.submit("d1", "k1", 1.0, None)  # beyond the newest 3
    with pytest.raises(DecisionNotFound):
        store.submit("d4", "k2", 1.0, None)  # another key's
    record = store.submit("d4", "k1", 1.0, "fine")
    assert record["features"] == features and record["category"] == "coding" and record["tier"] == 2
    assert record["model"] == "openai/gpt-4.1" and record["policy_hash"] == "h"
