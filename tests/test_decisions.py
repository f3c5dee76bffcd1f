"""proxy/observe/decisions.py: the JSON log line, what it must never contain, the capped Redis stream,
non-blocking writes with counted failures, and GET /admin/decisions."""

from __future__ import annotations

import asyncio
import logging
import uuid
from types import SimpleNamespace
from typing import Any

import fakeredis
import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from proxy.admin.auth import require_admin as require_admin_default
from proxy.errors import PermissionDenied
from proxy.keys.store import KeyStore
from proxy.observe.decisions import STREAM_KEY, DecisionRecord, Decisions, decisions_route, secret_values
from proxy.observe.metrics import Metrics
from proxy.settings import Settings

PROMPT = "Please refactor my function calculate_quarterly_revenue_for_acme"
OPENAI_KEY = "sk-proj-THISISNOTAREALKEY0123456789"
MASTER = "master-key-for-tests-0123456789"


def full_record(**overrides: Any) -> DecisionRecord:
    fields: dict[str, Any] = dict(
        decision_id="dec-1",
        status=200,
        outcome="ok",
        key_name="team-a",
        key_id="k_123",
        requested_model="auto",
        preference="balanced",
        category="complex_coding",
        complexity=3,
        level="moderate",
        confidence=0.82,
        chosen_model="openai/gpt-4.1",
        used_model="anthropic/claude-sonnet-4",
        plan=["openai/gpt-4.1", "anthropic/claude-sonnet-4"],
        reason="matrix default",
        policy_hash="abc123",
        attempts=[
            {
                "model": "openai/gpt-4.1",
                "provider": "openai",
                "deployment": "openai",
                "status": 503,
                "kind": "server_error",
                "reason": "HTTP 503",
                "seconds": 0.4,
                "body": "upstream said " + PROMPT,
                "headers": {"authorization": "Bearer " + OPENAI_KEY},
            },
            {"model": "anthropic/claude-sonnet-4", "provider": "anthropic", "deployment": "anthropic", "status": 200, "seconds": 2.1},
        ],
        stream=True,
        input_tokens=812,
        output_tokens=240,
        cost_usd=0.006,
        estimated_cost_usd=0.007,
        total_s=2.6,
        upstream_s=2.5,
        ttft_s=0.4,
        prompt=PROMPT,
    )
    fields.update(overrides)
    return DecisionRecord(**fields)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def lost(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("autoroute_decision_log_errors_total", {"reason": reason}) or 0.0


def logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The records as a JSON formatter writes them: round-tripped through orjson."""
    return [orjson.loads(orjson.dumps(r.decision)) for r in caplog.records if r.name == "autoroute.decision" and r.levelno == logging.INFO]


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every attribute of every log record: whatever any formatter could print."""
    return "".join(repr(vars(r)) + r.getMessage() for r in caplog.records)


# ── the log line ─────────────────────────────────────────────────────────────────────
async def test_log_line_has_every_field(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="autoroute.decision")
    d = Decisions(fakeredis.FakeAsyncRedis(), kept=0)
    raw = d.record(full_record())
    [line] = logged(caplog)
    assert orjson.loads(raw) == line  # the stream entry is the same record
    assert caplog.records[0].getMessage() == "decision dec-1 complex_coding -> anthropic/claude-sonnet-4 status=200 cost_usd=0.006000"
    assert line["decision_id"] == "dec-1"
    assert line["key_name"] == "team-a" and line["key_id"] == "k_123"
    assert line["category"] == "complex_coding" and line["complexity"] == 3
    assert line["chosen_model"] == "openai/gpt-4.1" and line["used_model"] == "anthropic/claude-sonnet-4"
    assert [a["status"] for a in line["attempts"]] == [503, 200]
    assert line["attempts"][0] == {
        "model": "openai/gpt-4.1",
        "provider": "openai",
        "deployment": "openai",
        "status": 503,
        "kind": "server_error",
        "reason": "HTTP 503",
        "seconds": 0.4,
    }
    assert (line["input_tokens"], line["output_tokens"]) == (812, 240)
    assert line["cost_usd"] == 0.006 and line["estimated_cost_usd"] == 0.007
    assert (line["total_s"], line["upstream_s"], line["ttft_s"]) == (2.6, 2.5, 0.4)
    assert line["overhead_s"] == pytest.approx(0.1)
    assert line["status"] == 200 and line["outcome"] == "ok"
    assert line["policy_hash"] == "abc123" and line["plan"] == ["openai/gpt-4.1", "anthropic/claude-sonnet-4"]
    assert isinstance(line["ts"], float)


async def test_never_prompt_text_by_default_nor_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="autoroute.decision")
    environ = {"OPENAI_API_KEY": OPENAI_KEY, "AUTOROUTE_MASTER_KEY": MASTER, "HOME": "/home/someone-long"}
    d = Decisions(fakeredis.FakeAsyncRedis(), kept=0, secrets=secret_values(environ))
    raw = d.record(
        full_record(
            reason=f"fell back after 401 with key {OPENAI_KEY}",
            attempts=[{"model": "m", "reason": f"auth failed for {MASTER}", "body": PROMPT}],
        )
    )
    text = everything_logged(caplog) + raw.decode()
    assert PROMPT not in text and "calculate_quarterly" not in text
    assert OPENAI_KEY not in text and MASTER not in text
    [line] = logged(caplog)
    assert "prompt" not in line
    assert line["reason"] == "fell back after 401 with key ***"
    assert line["attempts"] == [{"model": "m", "reason": "auth failed for ***"}]
    assert "/home/someone-long" not in secret_values(environ)  # only secret-looking names are scrubbed


async def test_prompt_logged_only_when_policy_asks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="autoroute.decision")
    d = Decisions(fakeredis.FakeAsyncRedis(), kept=0, log_prompts=True)
    d.record(full_record(prompt="x" * 10_000))
    d.record(full_record(prompt=PROMPT))
    first, second = logged(caplog)
    assert len(first["prompt"]) == 4001 and first["prompt"].endswith("…")
    assert second["prompt"] == PROMPT


# ── the stream ───────────────────────────────────────────────────────────────────────
async def test_stream_written_and_read_back_newest_first(metrics: Metrics) -> None:
    r = fakeredis.FakeAsyncRedis()
    d = Decisions(r, kept=100, metrics=metrics)
    for i in range(5):
        d.record(full_record(decision_id=f"d{i}"))
    assert await d.flush()
    assert await r.xlen(STREAM_KEY) == 5
    items = await d.recent(3)
    assert [i["decision_id"] for i in items] == ["d4", "d3", "d2"]
    assert "prompt" not in items[0]
    older = await d.recent(10, before=items[-1]["stream_id"])
    assert [i["decision_id"] for i in older] == ["d1", "d0"]
    await d.aclose()
    assert lost(metrics, "write_error") == 0 and lost(metrics, "dropped") == 0


class CountingRedis(fakeredis.FakeAsyncRedis):  # type: ignore[misc]
    """Counts pipelines executed (one Redis round trip each)."""

    round_trips = 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = super().pipeline(*args, **kwargs)
        run = pipe.execute

        async def execute(*a: Any, **k: Any) -> Any:
            type(self).round_trips += 1
            return await run(*a, **k)

        pipe.execute = execute
        return pipe


async def test_a_trickle_of_records_is_written_in_one_round_trip_per_linger() -> None:
    CountingRedis.round_trips = 0
    r = CountingRedis()
    d = Decisions(r, kept=100, linger_s=0.3)
    for i in range(6):  # one request every 10 ms, as at concurrency 1
        d.record(full_record(decision_id=f"d{i}"))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    assert await r.xlen(STREAM_KEY) == 6
    assert CountingRedis.round_trips == 1
    await d.aclose()


async def test_a_full_batch_and_a_reader_do_not_wait_for_the_linger() -> None:
    r = fakeredis.FakeAsyncRedis()
    d = Decisions(r, kept=100, linger_s=30.0, batch_size=3)
    for i in range(3):
        d.record(full_record(decision_id=f"full{i}"))
    for _ in range(100):  # a full batch goes at once
        if await r.xlen(STREAM_KEY) == 3:
            break
        await asyncio.sleep(0.01)
    assert await r.xlen(STREAM_KEY) == 3
    d.record(full_record(decision_id="mine"))
    started = asyncio.get_running_loop().time()
    newest = await d.recent(1)  # this replica's own record, without waiting 30 s
    assert newest[0]["decision_id"] == "mine"
    assert asyncio.get_running_loop().time() - started < 5
    await d.aclose()


@pytest.mark.redis
async def test_stream_capped_on_real_redis(metrics: Metrics, redis_url: str) -> None:
    r = aioredis.Redis.from_url(redis_url, socket_timeout=2)
    key = f"ar:{{decisions-test-{uuid.uuid4().hex}}}:stream"
    d = Decisions(r, kept=50, metrics=metrics, stream_key=key, batch_size=64)
    try:
        for i in range(1000):
            d.record(full_record(decision_id=f"d{i}"))
            if i % 100 == 0:
                await asyncio.sleep(0)
        assert await d.flush(10)
        length = await r.xlen(key)
        assert 50 <= length <= 50 + 100, length  # MAXLEN ~ 50: trimmed in whole stream nodes (100 entries)
        newest = await d.recent(1)
        assert newest[0]["decision_id"] == "d999"
        assert lost(metrics, "write_error") == 0
    finally:
        await d.aclose()
        await r.delete(key)
        await r.aclose()


async def test_kept_zero_writes_no_stream() -> None:
    r = fakeredis.FakeAsyncRedis()
    d = Decisions(r, kept=0)
    d.record(full_record())
    assert await d.flush()
    assert await r.exists(STREAM_KEY) == 0


class BrokenRedis:
    """Every pipeline fails, as a Redis outage does."""

    def __init__(self) -> None:
        self.calls = 0

    def pipeline(self, transaction: bool = False) -> BrokenRedis:
        return self

    def xadd(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def execute(self) -> None:
        self.calls += 1
        raise ConnectionError("Error 111 connecting to redis:6379. Connection refused.")

    async def xrevrange(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Connection refused.")


class HangingRedis(BrokenRedis):
    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def execute(self) -> None:
        await self.release.wait()


async def test_redis_failures_are_counted_never_raised(metrics: Metrics, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="autoroute.decision")
    broken = BrokenRedis()
    d = Decisions(broken, kept=10, metrics=metrics)
    for i in range(7):
        d.record(full_record(decision_id=f"d{i}"))  # would raise here if errors escaped
    assert await d.flush()
    await asyncio.sleep(0)
    d.record(full_record(decision_id="after"))
    assert await d.flush()
    assert broken.calls >= 2
    assert lost(metrics, "write_error") == 8
    assert len(logged(caplog)) == 8  # the log line is written regardless
    assert sum("decision stream write failed" in r.getMessage() for r in caplog.records) == 1  # rate-limited warning
    await d.aclose()


async def test_full_queue_drops_and_counts_instead_of_blocking(metrics: Metrics) -> None:
    hanging = HangingRedis()
    d = Decisions(hanging, kept=10, metrics=metrics, queue_size=2)
    for i in range(5):  # synchronous: the writer has not run yet, the queue holds 2
        d.record(full_record(decision_id=f"d{i}"))
    assert lost(metrics, "dropped") == 3
    assert not await d.flush(timeout=0.05)  # the writer is stuck on Redis; nobody else waits
    hanging.release.set()
    assert await d.flush(timeout=2)
    await d.aclose()


def test_record_outside_an_event_loop_still_logs(metrics: Metrics, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="autoroute.decision")
    d = Decisions(fakeredis.FakeAsyncRedis(), kept=10, metrics=metrics)
    d.record(full_record())  # e.g. the `autoroute route` CLI
    assert len(logged(caplog)) == 1
    assert lost(metrics, "dropped") == 1


# ── GET /admin/decisions ─────────────────────────────────────────────────────────────
def admin_app(decisions: Decisions, master: str | None = MASTER, **route_kw: Any) -> Starlette:
    """The route behind the app's one admin guard (proxy/admin/auth.py), unless a test brings its own."""
    route_kw.setdefault("require_admin", require_admin_default)
    app = Starlette(routes=[decisions_route(**route_kw)])
    app.state.autoroute = SimpleNamespace(
        settings=Settings(master_key=master, _env_file=None),
        decisions=decisions,
        keys=KeyStore(fakeredis.FakeAsyncRedis(), master),
    )
    return app


async def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_admin_route_guarded_by_master_key() -> None:
    d = Decisions(fakeredis.FakeAsyncRedis(), kept=100)
    for i in range(3):
        d.record(full_record(decision_id=f"d{i}"))
    await d.flush()
    async with await _client(admin_app(d)) as c:
        r = await c.get("/admin/decisions")
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = await c.get("/admin/decisions", headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = await c.get("/admin/decisions", headers={"authorization": f"Bearer {MASTER}"})
        assert r.status_code == 200
        body = r.json()
        assert body["object"] == "list" and body["kept"] == 100
        assert [x["decision_id"] for x in body["data"]] == ["d2", "d1", "d0"]
        assert body["next_before"] is None
        r = await c.get("/admin/decisions?limit=2", headers={"authorization": f"Bearer {MASTER}"})
        body = r.json()
        assert [x["decision_id"] for x in body["data"]] == ["d2", "d1"]
        r = await c.get(f"/admin/decisions?limit=2&before={body['next_before']}", headers={"authorization": f"Bearer {MASTER}"})
        assert [x["decision_id"] for x in r.json()["data"]] == ["d0"]
    async with await _client(admin_app(d, master=None)) as c:
        r = await c.get("/admin/decisions", headers={"authorization": f"Bearer {MASTER}"})
        assert r.status_code == 403 and "AUTOROUTE_MASTER_KEY" in r.json()["error"]["message"]
    await d.aclose()


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "before=notanid"])
async def test_admin_route_rejects_bad_parameters(query: str) -> None:
    d = Decisions(fakeredis.FakeAsyncRedis(), kept=100)
    async with await _client(admin_app(d)) as c:
        r = await c.get(f"/admin/decisions?{query}", headers={"authorization": f"Bearer {MASTER}"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["param"] == query.split("=")[0]


async def test_admin_route_custom_guard_and_store_down() -> None:
    seen: list[str] = []

    async def require_admin(request: Any) -> None:
        seen.append(request.url.path)
        if request.headers.get("x-admin") != "yes":
            raise PermissionDenied("not an admin")

    app = admin_app(Decisions(BrokenRedis(), kept=100), master=None, require_admin=require_admin)
    async with await _client(app) as c:
        assert (await c.get("/admin/decisions")).status_code == 403
        r = await c.get("/admin/decisions", headers={"x-admin": "yes"})
    assert seen == ["/admin/decisions", "/admin/decisions"]
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "limits_store_unavailable" and "Connection refused" not in err["message"]
