"""Virtual keys: creation, storage (hashed), lookup with a short in-process cache, auth rules.

A key is `sk-ar-` + 32 random bytes (urlsafe base64, 256 bits from `secrets`). It is shown once,
at creation; the store keeps only its SHA-256. A fast hash is right here: slow password hashes
(bcrypt, argon2) exist to make guessing *low-entropy* secrets expensive, but guessing a 256-bit
random key is infeasible at any hash speed, so a slow hash would add only per-request latency
(and a CPU denial-of-service lever) to the hot path. No salt is needed for the same reason, and
an unsalted hash is what makes lookup by hash possible.

The key id is `key_` + the first 16 hex digits of that hash, so authentication is one GET of
`ar:{<key-id>}:key` (then a constant-time comparison of the full hash). The id reveals nothing
usable about the key (a 64-bit slice of a hash of 256 random bits). An index set
`ar:{keys}:index` lists the ids for the admin API.

Auth rules (`KeyStore.authenticate`):
- No master key set at start (and `AUTOROUTE_OPEN_MODE` not `false`): the proxy runs open; every
  caller is the `anonymous` principal, which has no per-key limits (task budgets and deployment
  limits still apply, usage is still counted). This is decided once, from the settings: nothing
  in the store (a flushed or evicted key index) can switch a keyed proxy to open mode.
- Otherwise every `/v1` call needs a key: missing or unknown -> 401 (`AuthenticationFailed`);
  disabled or expired -> 403 (`PermissionDenied`); a model the key may not use -> 403
  (`proxy/keys/access.py`). The master key is accepted on `/v1` too, as the `master` principal
  with no per-key limits (operators can test the proxy with it; it is the admin secret anyway).
- `/admin` needs the master key; without one configured the admin API is disabled (403).

Cache and revocation bound: a successful lookup is cached in this process for `cache_ttl_s`
(default 5 s); expiry and the disabled flag are evaluated on every request from the cached
record. A key revoked, disabled or changed through another replica therefore stops working (or
takes its new limits) within `cache_ttl_s` on every replica, and at once on the replica that made
the change. Unknown keys are not cached, so a new key works at once everywhere. While the store
is unreachable, a key this process saw within the last `stale_s` (default 60 s) keeps working
from the cache (fail-static); any other key gets 503 (`StoreUnavailable`): auth never fails open.

Bursts: concurrent lookups of one key share one GET (single flight: the first caller fetches,
the others await its result), and every lookup takes a slot of the store's `StoreGate`, so
800 concurrent first requests of one key are one round trip, not 800 queued on the pool.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis.exceptions import WatchError

from proxy.errors import AuthenticationFailed, NotFound, PermissionDenied, StoreUnavailable
from proxy.keys import access
from proxy.store import SingleFlight, StoreBusy, gate_of, is_store_failure, patient_timeout
from proxy.vocab import Preference

KEY_PREFIX = "sk-ar-"
_CHALLENGE = {"www-authenticate": "Bearer"}  # RFC 9110: a 401 says how to authenticate
RECORD_RETENTION = timedelta(days=30)  # an expired key's record is kept this long, then dropped
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class KeyFields(BaseModel):
    """What an operator sets on a key (create, and update with only the fields given)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200)
    rpm: int | None = Field(None, gt=0, description="requests per minute")
    tpm: int | None = Field(None, gt=0, description="tokens per minute (input + requested output)")
    budget_usd_day: float | None = Field(None, ge=0, description="UTC day")
    budget_usd_month: float | None = Field(None, ge=0, description="UTC calendar month")
    budget_usd_total: float | None = Field(None, ge=0)
    allowed_models: tuple[str, ...] = Field((), description="glob patterns of model ids; empty = all")
    allowed_tools: tuple[str, ...] | None = Field(None, description="glob patterns of MCP tools (<server>__<tool>); unset = all, [] = none")
    context_assembler: bool = Field(False, description="add the category's system prompt and tool subset (policies/prompts.yaml)")
    route_preference: Preference | None = None
    route_quality_target: float | None = Field(None, ge=0.5, le=0.999, description="the quality dial for this key's auto requests")
    self_hosted_only: bool = False
    task_max_cost_usd: float | None = Field(None, gt=0, description="overrides the policy's task budget")
    task_max_tokens: int | None = Field(None, gt=0, description="overrides the policy's task budget")
    expires_at: datetime | None = None
    disabled: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        value = value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
        if value is not None:
            try:  # the record is kept RECORD_RETENTION past expiry: that instant must exist
                expire_at_s(value)
            except (OverflowError, ValueError):
                raise ValueError("too far in the future (leave it out for a key that never expires)") from None
        return value

    @field_validator("allowed_models", "allowed_tools")
    @classmethod
    def _patterns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if any(not p.strip() for p in value):
            raise ValueError("model patterns must not be empty")
        return tuple(p.strip() for p in value)


class KeyRecord(KeyFields):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    created_at: datetime
    key_hash: str = Field("", repr=False)
    key_prefix: str = ""

    @property
    def has_rate_limits(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    @property
    def has_budgets(self) -> bool:
        return any(b is not None for b in (self.budget_usd_day, self.budget_usd_month, self.budget_usd_total))

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))

    def allows_tool(self, qualified_name: str) -> bool:
        """May this key see and call the MCP tool `<server>__<tool>`? (proxy/keys/access.py)"""
        return access.allows_tool(self, qualified_name)

    def public(self) -> dict[str, Any]:
        """The record as the admin API shows it (never the hash)."""
        return self.model_dump(mode="json", exclude={"key_hash"})


ANONYMOUS = KeyRecord(id="anonymous", name="open mode (no master key, no keys)", created_at=EPOCH)
MASTER = KeyRecord(id="master", name="master key", created_at=EPOCH)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_for(key_hash: str) -> str:
    return "key_" + key_hash[:16]


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key`."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    api_key = headers.get("x-api-key")
    return api_key.strip() or None if api_key else None


class KeyStore:
    def __init__(
        self,
        redis: Any,
        master_key: str | None,
        *,
        prefix: str = "ar",
        cache_ttl_s: float = 5.0,
        stale_s: float = 60.0,
        cache_size: int = 10_000,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        open_mode: bool | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.cache_ttl_s = cache_ttl_s
        self.stale_s = stale_s
        self.cache_size = cache_size
        self.timeout_s = timeout_s
        self._clock = clock
        self._master_hash = hash_secret(master_key) if master_key else None
        # Decided here, once, from the settings (issue 11 item 9): never from what the store holds.
        # Default: open exactly when no master key is set; `open_mode=False` without a master key
        # requires keys on /v1 (with the admin API off).
        self._open = (master_key is None) if open_mode is None else (open_mode and master_key is None)
        self._cache: dict[str, tuple[float, KeyRecord]] = {}  # key hash -> (fetched at, record)
        self._flights = SingleFlight()

    # ------------------------------------------------------------------ redis names
    def _record_key(self, key_id: str) -> str:
        return f"{self.prefix}:{{{key_id}}}:key"

    @property
    def _index_key(self) -> str:
        return f"{self.prefix}:{{keys}}:index"

    # ------------------------------------------------------------------ auth
    @property
    def master_configured(self) -> bool:
        return self._master_hash is not None

    def is_master(self, token: str | None) -> bool:
        return bool(token and self._master_hash and hmac.compare_digest(hash_secret(token), self._master_hash))

    def require_master(self, token: str | None) -> None:
        """Guard for /admin: 403 when no master key is configured, 401 for a missing/wrong one."""
        if self._master_hash is None:
            raise PermissionDenied(
                "The admin API is disabled: set AUTOROUTE_MASTER_KEY and restart the proxy.",
                code="admin_disabled",
            )
        if not token:
            raise AuthenticationFailed("Missing master key: send Authorization: Bearer <AUTOROUTE_MASTER_KEY>.", headers=dict(_CHALLENGE))
        if not self.is_master(token):
            raise AuthenticationFailed("Invalid master key.", headers=dict(_CHALLENGE))

    async def open_mode(self) -> bool:
        """True when the proxy was started open (no master key, AUTOROUTE_OPEN_MODE not false):
        every caller is anonymous. Fixed at start; no store read can switch it."""
        return self._open

    async def startup_notice(self) -> str:
        """One line for the start-up log saying how /v1 and /admin are guarded."""
        if self.master_configured:
            return "auth: master key set; /v1 needs a virtual key (or the master key), /admin the master key"
        if self._open:
            return (
                "auth: OPEN MODE, no AUTOROUTE_MASTER_KEY: every /v1 caller is anonymous, with no per-key limits "
                "(local development only; set AUTOROUTE_MASTER_KEY to require keys); the admin API is disabled"
            )
        return "auth: no AUTOROUTE_MASTER_KEY and AUTOROUTE_OPEN_MODE=false: /v1 needs a valid key; the admin API is disabled"

    async def authenticate(self, token: str | None) -> KeyRecord:
        """The principal for a /v1 request, or 401/403/503 (see the module docstring)."""
        if self.is_master(token):
            return MASTER
        if await self.open_mode():
            return ANONYMOUS
        if not token:
            raise AuthenticationFailed(
                "Missing API key: send Authorization: Bearer <key> (ask your operator for a key).",
                headers=dict(_CHALLENGE),
            )
        record = await self._lookup(token) if token.startswith(KEY_PREFIX) else None
        if record is None:
            raise AuthenticationFailed("Invalid API key: it is unknown or has been revoked.", headers=dict(_CHALLENGE))
        if record.disabled:
            raise PermissionDenied(f"API key {record.id} is disabled; ask your operator to enable it.", code="key_disabled")
        if record.expired():
            assert record.expires_at is not None
            raise PermissionDenied(
                f"API key {record.id} expired at {record.expires_at.isoformat()}; ask your operator for a new key.",
                code="key_expired",
            )
        return record

    async def _lookup(self, token: str) -> KeyRecord | None:
        digest = hash_secret(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self.cache_ttl_s:
            return cached[1]
        try:
            raw = await self._read_once(self._record_key(key_id_for(digest)), "get")
        except Exception as exc:
            if not isinstance(exc, StoreBusy) and not is_store_failure(exc):
                raise
            if cached is not None and now - cached[0] < self.stale_s:
                return cached[1]
            if isinstance(exc, StoreBusy):
                raise
            raise StoreUnavailable("Limits store unavailable: cannot check API keys. Retry shortly.") from exc
        record = KeyRecord.model_validate_json(raw) if raw else None
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            self._cache.pop(digest, None)
            return None
        self._cache.pop(digest, None)
        self._cache[digest] = (now, record)
        while len(self._cache) > self.cache_size:
            self._cache.pop(next(iter(self._cache)))
        return record

    async def _read_once(self, name: str, command: str) -> Any:
        return await self._flights.run(name, lambda: self._read(name, command))

    async def _read(self, name: str, command: str) -> Any:
        """`command name` (GET or SCARD), one read shared by every concurrent caller asking for the same name."""
        async with gate_of(self.redis).slot():
            async with patient_timeout(self.timeout_s):
                return await getattr(self.redis, command)(name)

    def _forget(self, record: KeyRecord) -> None:
        self._cache.pop(record.key_hash, None)

    # ------------------------------------------------------------------ admin operations
    async def create(self, fields: KeyFields) -> tuple[KeyRecord, str]:
        """A new key: returns its record and the secret (the only time the secret exists)."""
        for _ in range(5):
            secret = new_secret()
            digest = hash_secret(secret)
            record = KeyRecord(
                **fields.model_dump(),
                id=key_id_for(digest),
                created_at=datetime.now(UTC).replace(microsecond=0),
                key_hash=digest,
                key_prefix=secret[: len(KEY_PREFIX) + 4],
            )
            # One write: the record and its expiry together (nothing can fail between them).
            exat = expire_at_s(record.expires_at) if record.expires_at is not None else None
            if await self.redis.set(self._record_key(record.id), record.model_dump_json(), nx=True, exat=exat):
                break
        else:  # pragma: no cover  (five 64-bit id collisions in a row)
            raise RuntimeError("could not allocate a key id")
        await self.redis.sadd(self._index_key, record.id)
        return record, secret

    async def get(self, key_id: str) -> KeyRecord:
        raw = await self.redis.get(self._record_key(key_id))
        if not raw:
            raise NotFound(f"No API key with id {key_id!r}.")
        return KeyRecord.model_validate_json(raw)

    async def list(self) -> list[KeyRecord]:
        ids = sorted(_text(i) for i in await self.redis.smembers(self._index_key))
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for key_id in ids:
            pipe.get(self._record_key(key_id))
        raws = await pipe.execute()
        gone = [key_id for key_id, raw in zip(ids, raws, strict=True) if not raw]
        if gone:  # records that expired after their retention
            await self.redis.srem(self._index_key, *gone)
        records = [KeyRecord.model_validate_json(raw) for raw in raws if raw]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    async def update(self, key_id: str, changes: Mapping[str, Any]) -> KeyRecord:
        """Apply `changes` (already validated field values) atomically (WATCH/MULTI)."""
        name = self._record_key(key_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(name)
                    raw = await pipe.get(name)
                    if not raw:
                        raise NotFound(f"No API key with id {key_id!r}.")
                    current = KeyRecord.model_validate_json(raw)
                    record = KeyRecord.model_validate({**current.model_dump(), **changes})
                    pipe.multi()
                    pipe.set(name, record.model_dump_json())
                    await pipe.execute()
                    break
                except WatchError:
                    continue
        await self._apply_expiry(record)
        self._forget(record)
        return record

    async def revoke(self, key_id: str) -> KeyRecord:
        record = await self.get(key_id)
        await self.redis.delete(self._record_key(key_id))
        await self.redis.srem(self._index_key, key_id)
        self._forget(record)
        return record

    async def _apply_expiry(self, record: KeyRecord) -> None:
        name = self._record_key(record.id)
        if record.expires_at is None:
            await self.redis.persist(name)
        else:
            await self.redis.expireat(name, expire_at_s(record.expires_at))


def expire_at_s(expires_at: datetime) -> int:
    """When Redis drops an expiring key's record: its expiry plus RECORD_RETENTION (Unix seconds)."""
    return int((expires_at + RECORD_RETENTION).timestamp())


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
