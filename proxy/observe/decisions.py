"""Decision records: one JSON log line per request, the last N in a capped Redis stream.

Owns the record's shape (`DecisionRecord`), its log line, the stream `ar:{decisions}:stream`
(XADD MAXLEN ~ N, N = policy.observability.decisions_kept; 0 = no stream) and
`GET /admin/decisions`.

The log line: logger `autoroute.decision`, level INFO, a short human summary as the message
and the whole record as the `decision` attribute (`extra={"decision": {...}}`), so the JSON
formatter (proxy/observe/logs.py) writes one JSON object per request with the record nested under
`"decision"`, and a plain formatter still prints something readable.

`Decisions.record(rec)` is synchronous and never raises: it builds the record dict, logs it,
serialises it once with orjson and puts the bytes on a bounded queue that one background
task drains in pipelined batches. A batch waits up to LINGER_S for company (cut short when a
batch is full, on `flush()`, and before this replica reads the stream), so a steady trickle
costs one Redis round trip per LINGER_S rather than one per request; another replica sees a
record at most that much later. A slow or dead Redis never delays a response: a full queue
drops the record and a failed batch is dropped, both counted in
`autoroute_decision_log_errors_total`.

Never in a record: the API key (only its name and id), provider keys, request bodies. The
prompt (last user turn) only when policy.observability.log_prompts is on. Free-text fields
(reason, attempt causes) are scrubbed of any secret value from the environment.

The stream is capped by length rather than given a TTL: it is not a counter and its size is
bounded by MAXLEN (approximate trimming keeps it within one stream node, ~100 entries, of N).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.errors import InvalidRequest, ProxyError, StoreUnavailable
from proxy.settings import _is_secret_name
from proxy.vocab import Endpoint

if TYPE_CHECKING:
    from proxy.observe.metrics import Metrics
    from proxy.policy import Policy

STREAM_KEY = "ar:{decisions}:stream"
LOGGER_NAME = "autoroute.decision"
MAX_LIMIT = 1000
LINGER_S = 0.025  # how long a batch waits for more records before it is written
DEFAULT_LIMIT = 100
PROMPT_CHARS = 4000
#: Keys copied from each attempt mapping; anything else (bodies, headers) is left out.
ATTEMPT_FIELDS = ("model", "provider", "deployment", "status", "kind", "reason", "error", "seconds", "retries")
_ATTEMPT_TEXT = ("reason", "error")

AdminCheck = Callable[[Request], Awaitable[None] | None]


@dataclass(slots=True)
class DecisionRecord:
    """What happened to one request. Times in seconds, costs in USD."""

    decision_id: str
    status: int
    outcome: str
    endpoint: str = Endpoint.CHAT
    key_name: str | None = None
    key_id: str | None = None
    requested_model: str | None = None
    preference: str | None = None
    category: str | None = None
    complexity: int | None = None
    level: str | None = None
    confidence: float | None = None
    chosen_model: str | None = None
    used_model: str | None = None
    plan: Sequence[str] = ()
    reason: str | None = None
    policy_hash: str | None = None
    attempts: Sequence[Mapping[str, Any]] = ()
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    estimated_cost_usd: float | None = None
    total_s: float | None = None
    upstream_s: float | None = None
    ttft_s: float | None = None
    error_type: str | None = None
    task_id: str | None = None
    agent: str | None = None
    prompt: str | None = None
    features: Mapping[str, Any] | None = None  # what the router read (no text): for autoroute replay
    tools: Mapping[str, Any] | None = None  # the MCP tool loop: model calls, tool calls, why it stopped
    context: str | None = None  # the category whose system prompt the context assembler added
    ts: float = field(default_factory=time.time)


class Decisions:
    """Writes decision records (log + stream) and reads the stream back."""

    def __init__(
        self,
        redis: Any,
        *,
        kept: int = 1000,
        log_prompts: bool = False,
        metrics: Metrics | None = None,
        secrets: Iterable[str] = (),
        stream_key: str = STREAM_KEY,
        queue_size: int = 10_000,
        batch_size: int = 256,
        linger_s: float = LINGER_S,
        logger: logging.Logger | None = None,
    ) -> None:
        self.redis = redis
        self.kept = kept
        self.log_prompts = log_prompts
        self.metrics = metrics
        self.stream_key = stream_key
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.logger = logger or logging.getLogger(LOGGER_NAME)
        self._secrets = tuple(sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True))
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # set: write what is queued now, without lingering
        self._last_warning = 0.0

    @classmethod
    def from_policy(cls, redis: Any, policy: Policy, environ: Mapping[str, str], metrics: Metrics | None = None) -> Decisions:
        obs = policy.observability
        return cls(redis, kept=obs.decisions_kept, log_prompts=obs.log_prompts, metrics=metrics, secrets=secret_values(environ))

    # ── writing ──────────────────────────────────────────────────────────────────────
    def to_dict(self, rec: DecisionRecord) -> dict[str, Any]:
        """The record as logged: attempts whitelisted, free text scrubbed, prompt only if allowed."""
        out = {
            "decision_id": rec.decision_id,
            "ts": round(rec.ts, 3),
            "endpoint": rec.endpoint,
            "status": rec.status,
            "outcome": rec.outcome,
            "error_type": rec.error_type,
            "key_name": rec.key_name,
            "key_id": rec.key_id,
            "requested_model": _clip(rec.requested_model, 200),
            "preference": rec.preference,
            "category": rec.category,
            "complexity": rec.complexity,
            "level": rec.level,
            "confidence": rec.confidence,
            "chosen_model": rec.chosen_model,
            "used_model": rec.used_model,
            "plan": list(rec.plan),
            "reason": self._scrub(rec.reason),
            "policy_hash": rec.policy_hash,
            "attempts": [self._attempt(a) for a in rec.attempts],
            "stream": rec.stream,
            "input_tokens": rec.input_tokens,
            "output_tokens": rec.output_tokens,
            "cost_usd": rec.cost_usd,
            "estimated_cost_usd": rec.estimated_cost_usd,
            "total_s": rec.total_s,
            "upstream_s": rec.upstream_s,
            "ttft_s": rec.ttft_s,
            "overhead_s": _overhead(rec.total_s, rec.upstream_s),
            "task_id": _clip(rec.task_id, 200),
            "agent": _clip(rec.agent, 200),
            "features": rec.features,
        }
        if rec.tools is not None:
            out["tools"] = rec.tools
        if rec.context is not None:
            out["context"] = rec.context
        if self.log_prompts and rec.prompt is not None:
            out["prompt"] = self._scrub(_clip(rec.prompt, PROMPT_CHARS))
        return out

    def record(self, rec: DecisionRecord) -> bytes:
        """Log the record and queue it for the stream. Never blocks, never raises."""
        try:
            payload = self.to_dict(rec)
            line = orjson.dumps(payload)
        except Exception:  # a bad value must not fail the request
            self.logger.exception("decision record %s could not be serialised", rec.decision_id)
            return b""
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(
                "decision %s %s -> %s status=%s cost_usd=%.6f",
                rec.decision_id,
                rec.category or "-",
                rec.used_model or rec.chosen_model or "-",
                rec.status,
                rec.cost_usd,
                extra={"decision": payload},
            )
        if self.kept > 0:
            self._enqueue(line)
        return line

    def _enqueue(self, line: bytes) -> None:
        try:
            self._queue.put_nowait(line)
        except asyncio.QueueFull:
            self._count_error("dropped")
            return
        if self._queue.qsize() >= self.batch_size:
            self._hurry.set()
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._writer(), name="decision-stream")
            except RuntimeError:  # no running loop (CLI): the line was logged; nothing to drain it
                self._drain_queue()
                self._count_error("dropped")

    async def _writer(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self.linger_s > 0 and not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.linger_s):
                        await self._hurry.wait()
            self._hurry.clear()
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                pipe = self.redis.pipeline(transaction=False)
                for line in batch:
                    pipe.xadd(self.stream_key, {"d": line}, maxlen=self.kept, approximate=True)
                await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._count_error("write_error", len(batch))
                self._warn(exc)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _count_error(self, reason: str, n: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.decision_log_error(reason, n)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 60:
            self._last_warning = now
            self.logger.warning("decision stream write failed (%s); records dropped, requests unaffected", type(exc).__name__)

    def _drain_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()

    async def flush(self, timeout: float = 2.0) -> bool:
        """Wait until queued records are written (or failed); False on timeout."""
        if self._task is None or self._task.done():
            return self._queue.empty()
        self._hurry.set()
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout: float = 2.0) -> None:
        """Lifespan shutdown: flush what can be flushed, then stop the writer."""
        await self.flush(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ── reading ──────────────────────────────────────────────────────────────────────
    async def recent(self, limit: int = DEFAULT_LIMIT, before: str | None = None) -> list[dict[str, Any]]:
        """Newest first; `before` is a stream id from an earlier page (exclusive). This replica's
        queued records are written first, so a reader sees its own requests."""
        await self.flush()
        top = f"({before}" if before else "+"
        entries = await self.redis.xrevrange(self.stream_key, max=top, min="-", count=limit)
        out = []
        for entry_id, fields in entries:
            raw = fields.get(b"d", fields.get("d"))
            if raw is None:
                continue
            item = orjson.loads(raw)
            item["stream_id"] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            out.append(item)
        return out

    # ── helpers ──────────────────────────────────────────────────────────────────────
    def _scrub(self, text: str | None) -> str | None:
        if not text or not self._secrets:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def _attempt(self, attempt: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: attempt[k] for k in ATTEMPT_FIELDS if k in attempt}
        for k in _ATTEMPT_TEXT:
            if isinstance(out.get(k), str):
                out[k] = self._scrub(_clip(out[k], 300))
        return out


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of secret-looking variables (…KEY, …TOKEN, …SECRET, …PASSWORD)."""
    return [v for k, v in environ.items() if v and len(v) >= 8 and _is_secret_name(k)]


def _clip(text: str | None, n: int) -> str | None:
    return text if text is None or len(text) <= n else text[:n] + "…"


def _overhead(total: float | None, upstream: float | None) -> float | None:
    if total is None:
        return None
    return max(0.0, total - (upstream or 0.0))


# ── GET /admin/decisions ─────────────────────────────────────────────────────────────
def decisions_route(require_admin: AdminCheck, path: str = "/admin/decisions") -> Route:
    """`GET /admin/decisions?limit=100&before=<stream id>` -> {"object": "list", "data": [...]}.

    `require_admin(request)` (sync or async; proxy/admin/auth.py) raises a ProxyError to
    refuse. Reads `request.app.state.autoroute.decisions`."""
    check = require_admin

    async def endpoint(request: Request) -> Response:
        try:
            result = check(request)
            if inspect.isawaitable(result):
                await result
            limit = _limit(request.query_params.get("limit"))
            before = request.query_params.get("before") or None
            if before is not None and not _is_stream_id(before):
                raise InvalidRequest("before must be a stream id such as 1700000000000-0", param="before")
            decisions: Decisions = request.app.state.autoroute.decisions
            try:
                data = await decisions.recent(limit, before)
            except Exception as exc:
                raise StoreUnavailable("the decisions store (Redis) is unavailable; try again shortly") from exc
        except ProxyError as exc:
            return Response(exc.json(), status_code=exc.status, media_type="application/json", headers=exc.headers)
        body = {
            "object": "list",
            "data": data,
            "kept": decisions.kept,
            "next_before": data[-1]["stream_id"] if len(data) == limit else None,
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return Route(path, endpoint, methods=["GET"], name="admin_decisions")


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return value


def _is_stream_id(text: str) -> bool:
    ms, _, seq = text.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit())
