"""Virtual keys: hashing, auth rules, open mode, cache and revocation bound, model rules."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxy.errors import AuthenticationFailed, NotFound, PermissionDenied, StoreUnavailable
from proxy.keys import access
from proxy.keys.store import ANONYMOUS, EPOCH, MASTER, KeyFields, KeyRecord, KeyStore, bearer_token
from proxy.limits.store import embedded_redis
from proxy.policy.registry import ModelSpec

MASTER_KEY = "master-secret-for-tests-0123456789"


class Mono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def redis() -> Any:
    r = embedded_redis()
    yield r
    await r.aclose()


@pytest.fixture
def mono() -> Mono:
    return Mono()


def store(redis: Any, mono: Mono, master: str | None = MASTER_KEY, **kw: Any) -> KeyStore:
    return KeyStore(redis, master, clock=mono, **kw)


def _disconnect(redis: Any, connected: bool) -> None:
    redis.connection_pool.connection_kwargs["server"].connected = connected


def model(mid: str = "openai/gpt-4o-mini", *, self_hosted: bool = False, api_id: str = "gpt-4o-mini") -> ModelSpec:
    return ModelSpec(
        id=mid, provider="openai", api_model_id=api_id, display_name=mid, tier=3, quality_index=50,
        reasoning_score=50, coding_score=50, instruction_following=50, speed_tokens_per_sec=100,
        context_window=128000, input_usd_per_mtok=0.15, output_usd_per_mtok=0.6, supports_tools=True,
        supports_vision=False, self_hosted=self_hosted,
    )  # fmt: skip


async def test_key_is_random_shown_once_and_stored_only_as_sha256(redis: Any, mono: Mono) -> None:
    ks = store(redis, mono)
    record, secret = await ks.create(KeyFields(name="app", rpm=10))
    other, secret2 = await ks.create(KeyFields(name="app2"))
    assert secret.startswith("sk-ar-") and len(secret) >= len("sk-ar-") + 43 and secret != secret2
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert record.key_hash == digest and record.id == "key_" + digest[:16]
    dump = {k: await redis.get(k) for k in await redis.keys("*") if await redis.type(k) == "string"}
    assert dump and all(secret not in v and secret[6:] not in v for v in dump.values())
    assert "key_hash" not in record.public() and record.public()["key_prefix"] == secret[:10]
    assert (await ks.authenticate(secret)).id == record.id
    assert (await ks.authenticate(secret2)).id == other.id


async def test_missing_and_unknown_keys_are_401(redis: Any, mono: Mono) -> None:
    ks = store(redis, mono)
    await ks.create(KeyFields(name="a"))
    for token in (None, "", "sk-ar-not-a-real-key", "sk-something-else"):
        with pytest.raises(AuthenticationFailed) as info:
            await ks.authenticate(token)
        assert info.value.status == 401 and info.value.body()["error"]["type"] == "authentication_error"


async def test_disabled_and_expired_keys_are_403(redis: Any, mono: Mono) -> None:
    ks = store(redis, mono)
    rec, secret = await ks.create(KeyFields(name="a"))
    await ks.update(rec.id, {"disabled": True})
    with pytest.raises(PermissionDenied) as info:
        await ks.authenticate(secret)
    assert info.value.status == 403 and info.value.code == "key_disabled"
    await ks.update(rec.id, {"disabled": False, "expires_at": datetime.now(UTC) - timedelta(seconds=1)})
    with pytest.raises(PermissionDenied) as info:
        await ks.authenticate(secret)
    assert info.value.code == "key_expired" and "expired at" in info.value.message
    await ks.update(rec.id, {"expires_at": datetime.now(UTC) + timedelta(days=1)})
    assert (await ks.authenticate(secret)).id == rec.id
    ttl = await redis.ttl(f"ar:{{{rec.id}}}:key")
    assert 30 * 86400 < ttl <= 31 * 86400  # record kept 30 days after expiry, then dropped
    await ks.update(rec.id, {"expires_at": None})
    assert await redis.ttl(f"ar:{{{rec.id}}}:key") == -1


async def test_open_mode_is_decided_by_the_settings_not_the_store(redis: Any, mono: Mono) -> None:
    """Issue 11 item 9: the old store switched to open mode whenever its key index was empty
    (an eviction or a flush of `ar:{keys}:index` opened a keyed proxy within 5 s)."""
    ks = store(redis, mono, master=None)  # no master key: open, announced as such
    assert await ks.open_mode()
    assert await ks.authenticate(None) is ANONYMOUS
    assert "OPEN MODE" in await ks.startup_notice()
    await ks.create(KeyFields(name="a"))  # keys in the store change nothing
    assert await ks.open_mode() and await ks.authenticate("sk-anything") is ANONYMOUS

    keyed = store(redis, mono)  # master key set: never open, even with an empty (flushed) index
    rec, secret = await keyed.create(KeyFields(name="b"))
    await redis.delete("ar:{keys}:index")
    mono.t += 60
    assert not await keyed.open_mode()
    with pytest.raises(AuthenticationFailed):
        await keyed.authenticate(None)
    assert (await keyed.authenticate(secret)).id == rec.id
    assert "master key set" in await keyed.startup_notice()

    closed = KeyStore(embedded_redis(), None, clock=mono, open_mode=False)  # explicit: keys without a master key
    assert not await closed.open_mode()
    with pytest.raises(AuthenticationFailed):
        await closed.authenticate(None)
    assert "AUTOROUTE_OPEN_MODE=false" in await closed.startup_notice()


async def test_master_key_works_on_v1_and_guards_admin(redis: Any, mono: Mono) -> None:
    ks = store(redis, mono)
    assert await ks.authenticate(MASTER_KEY) is MASTER
    ks.require_master(MASTER_KEY)
    with pytest.raises(AuthenticationFailed):
        ks.require_master(None)
    with pytest.raises(AuthenticationFailed):
        ks.require_master(MASTER_KEY + "x")
    with pytest.raises(PermissionDenied) as info:
        store(redis, mono, master=None).require_master(MASTER_KEY)
    assert info.value.code == "admin_disabled"


async def test_revocation_reaches_other_replicas_within_the_cache_ttl(redis: Any, mono: Mono) -> None:
    a, b = store(redis, mono, cache_ttl_s=5.0), store(redis, mono, cache_ttl_s=5.0)
    rec, secret = await a.create(KeyFields(name="a"))
    assert (await b.authenticate(secret)).id == rec.id  # b caches it
    await a.revoke(rec.id)
    with pytest.raises(AuthenticationFailed):
        await a.authenticate(secret)  # at once where it was revoked
    mono.t += 4.9
    assert (await b.authenticate(secret)).id == rec.id  # within the bound, from b's cache
    mono.t += 0.1
    with pytest.raises(AuthenticationFailed):
        await b.authenticate(secret)  # bound reached: gone everywhere


async def test_updates_reach_other_replicas_within_the_cache_ttl(redis: Any, mono: Mono) -> None:
    a, b = store(redis, mono, cache_ttl_s=2.0), store(redis, mono, cache_ttl_s=2.0)
    rec, secret = await a.create(KeyFields(name="a", rpm=5))
    assert (await b.authenticate(secret)).rpm == 5
    await a.update(rec.id, {"rpm": 50, "disabled": True})
    assert (await b.authenticate(secret)).rpm == 5
    mono.t += 2.0
    with pytest.raises(PermissionDenied):
        await b.authenticate(secret)


async def test_store_outage_serves_recently_seen_keys_only(redis: Any, mono: Mono) -> None:
    ks = store(redis, mono, cache_ttl_s=1.0, stale_s=30.0)
    rec, secret = await ks.create(KeyFields(name="a"))
    _, unseen = await ks.create(KeyFields(name="b"))
    await ks.authenticate(secret)
    _disconnect(redis, False)
    mono.t += 10
    assert (await ks.authenticate(secret)).id == rec.id  # fail-static from the cache
    with pytest.raises(StoreUnavailable) as info:
        await ks.authenticate(unseen)
    assert info.value.status == 503
    mono.t += 25
    with pytest.raises(StoreUnavailable):
        await ks.authenticate(secret)
    assert await ks.authenticate(MASTER_KEY) is MASTER  # the master key needs no store
    _disconnect(redis, True)
    assert (await ks.authenticate(unseen)).name == "b"


async def test_cache_is_bounded(redis: Any, mono: Mono) -> None:
    ks = store(redis, mono, cache_size=3)
    secrets = [(await ks.create(KeyFields(name=str(i))))[1] for i in range(5)]
    for s in secrets:
        await ks.authenticate(s)
    assert len(ks._cache) == 3


async def test_list_get_update_revoke(redis: Any, mono: Mono) -> None:
    ks = store(redis, mono)
    r1, _ = await ks.create(KeyFields(name="one", budget_usd_day=2.5, metadata={"team": "x"}))
    r2, _ = await ks.create(KeyFields(name="two", allowed_models=("openai/*",)))
    assert {r.id for r in await ks.list()} == {r1.id, r2.id}
    got = await ks.get(r1.id)
    assert got.budget_usd_day == 2.5 and got.metadata == {"team": "x"}
    updated = await ks.update(r1.id, {"budget_usd_day": None, "name": "uno"})
    assert updated.budget_usd_day is None and updated.name == "uno" and updated.created_at == r1.created_at
    await ks.revoke(r2.id)
    assert [r.id for r in await ks.list()] == [r1.id]
    with pytest.raises(NotFound):
        await ks.get(r2.id)
    with pytest.raises(NotFound):
        await ks.update(r2.id, {"rpm": 1})
    with pytest.raises(NotFound):
        await ks.revoke(r2.id)


def test_fields_are_validated() -> None:
    with pytest.raises(ValueError):
        KeyFields(rpm=0)
    with pytest.raises(ValueError):
        KeyFields(budget_usd_day=-1)
    with pytest.raises(ValueError):
        KeyFields.model_validate({"unknown": 1})
    with pytest.raises(ValueError):
        KeyFields(allowed_models=(" ",))
    assert KeyFields(expires_at=datetime(2030, 1, 1)).expires_at.tzinfo is UTC  # type: ignore[union-attr]


def test_model_rules() -> None:
    open_key = KeyRecord(id="k", created_at=EPOCH)
    assert access.allows(open_key, model())
    only_openai = KeyRecord(id="k", created_at=EPOCH, allowed_models=("openai/*",))
    assert access.allows(only_openai, model())
    assert not access.allows(only_openai, model("anthropic/claude-sonnet-4", api_id="claude-sonnet-4"))
    by_api_id = KeyRecord(id="k", created_at=EPOCH, allowed_models=("GPT-4o*",))
    assert access.allows(by_api_id, model())
    local = KeyRecord(id="k", created_at=EPOCH, self_hosted_only=True)
    assert access.allows(local, model("ollama/qwen3:1.7b", self_hosted=True, api_id="qwen3:1.7b"))
    with pytest.raises(PermissionDenied) as info:
        access.check(local, model())
    assert info.value.status == 403 and info.value.code == "model_not_allowed" and "self-hosted" in info.value.message
    with pytest.raises(PermissionDenied) as info:
        access.check(only_openai, model("anthropic/claude-sonnet-4", api_id="claude-sonnet-4"))
    assert "openai/*" in info.value.message


@pytest.mark.parametrize(
    ("headers", "token"),
    [({"authorization": "Bearer sk-ar-abc"}, "sk-ar-abc"), ({"authorization": "bearer  sk-ar-abc "}, "sk-ar-abc"),
     ({"authorization": "Basic xyz"}, None), ({"authorization": "Bearer "}, None), ({"x-api-key": "sk-ar-k"}, "sk-ar-k"),
     ({}, None)],
)  # fmt: skip
def test_bearer_token(headers: dict[str, str], token: str | None) -> None:
    assert bearer_token(headers) == token


async def test_far_future_expiry_is_a_validation_error_and_writes_nothing(redis: Any, mono: Mono) -> None:
    """Issue 11 item 10: `expires_at: 9999-12-31T23:59:59Z` was a 500 after the record had been
    written (no TTL, not in the index): expiry + retention overflowed. Now it fails validation."""
    with pytest.raises(ValueError, match="too far in the future"):
        KeyFields(name="x", expires_at="9999-12-31T23:59:59Z")  # type: ignore[arg-type]
    ks = store(redis, mono)
    rec, _ = await ks.create(KeyFields(name="y", expires_at=datetime(2999, 1, 1, tzinfo=UTC)))
    assert await redis.ttl(f"ar:{{{rec.id}}}:key") > 0  # written with its expiry in the same command
    assert [k async for k in redis.scan_iter(match="ar:{key_*}:key")] == [f"ar:{{{rec.id}}}:key"]
