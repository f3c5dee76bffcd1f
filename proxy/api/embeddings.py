"""POST /v1/embeddings: OpenAI's embeddings API over the registry's embedding models.

Keys, rate limits, budgets, metrics and decision records apply as for chat: the request is
admitted with one reservation (its estimated input tokens at the model's price), settled to
the upstream's reported tokens, and recorded with endpoint="embeddings".

`model="auto"` is the policy's `embedding_model` (its `local_embedding_model` for
self_hosted_only keys), never a per-request choice: vectors from two models cannot be
compared, so an index built through auto must keep getting the same model.
OpenAI-format upstreams (OpenAI, Ollama's /v1, gateways) get the body as is; Gemini gets
batchEmbedContents. `encoding_format="base64"` is made here (little-endian float32, as OpenAI).
"""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.api.chat import field_error
from proxy.errors import InvalidRequest, ModelNotFound, ProxyError, ServiceUnavailable, UpstreamFailed
from proxy.keys import access
from proxy.keys.store import KeyRecord, bearer_token
from proxy.policy.registry import Deployment, EmbeddingSpec
from proxy.providers.base import UpstreamCall, UpstreamError, Usage
from proxy.providers.http import read_error, transport_error
from proxy.request import accounting, pipeline
from proxy.request.admission import Admission
from proxy.request.exchange import Exchange
from proxy.routing.options import is_auto
from proxy.routing.planning import Plan
from proxy.vocab import Endpoint

if TYPE_CHECKING:
    from proxy.policy import Policy
    from proxy.request.appstate import AppState


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = Field(None, ge=1)
    encoding_format: str = Field("float", pattern="^(float|base64)$")
    user: str | None = None


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON ({exc}).", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object with model and input.", code="invalid_json")
    try:
        EmbeddingsRequest.model_validate(body)
    except ValidationError as exc:
        raise field_error(exc) from None
    if body["input"] in ("", []):
        raise InvalidRequest("Invalid value for 'input': nothing to embed.", param="input")
    return body


def inputs(body: dict[str, Any]) -> list[Any]:
    """One item per vector: a string, or a list of token ids."""
    value = body["input"]
    if isinstance(value, str) or (value and isinstance(value[0], int)):
        return [value]
    return list(value)


def estimate_tokens(items: list[Any]) -> int:
    return sum(len(i) if isinstance(i, list) else max(1, (len(i) + 3) // 4) for i in items)


def resolve(policy: Policy, name: str, key: KeyRecord) -> tuple[EmbeddingSpec, str]:
    """The embedding model for `name` and why. Auto: the policy's model for this key, fixed."""
    models = {e.id: e for e in policy.registry.embedding_models}
    if is_auto(name):
        wanted = policy.registry.local_embedding_model if key.self_hosted_only else policy.registry.embedding_model
        if wanted is None:
            raise ModelNotFound('This policy sets no embedding_model, so model="auto" cannot embed; name a model.', param="model")
        spec = models[wanted]
        access.check(key, spec)  # type: ignore[arg-type]
        return spec, "auto: the policy's embedding model for this key (stable: vectors from different models do not mix)"
    lowered = name.lower()
    for spec in models.values():
        if lowered in (spec.id.lower(), spec.api_model_id.lower()):
            access.check(key, spec)  # type: ignore[arg-type]
            return spec, "model named by the caller"
    raise ModelNotFound(f"The embedding model '{name}' does not exist. GET /v1/models lists the valid ones.", param="model")


def check_dimensions(spec: EmbeddingSpec, dimensions: int | None) -> None:
    if dimensions is None or dimensions == spec.dimensions:
        return
    if not spec.shortenable or dimensions > spec.dimensions:
        allowed = f"at most {spec.dimensions}" if spec.shortenable else f"only {spec.dimensions} (its native size)"
        raise InvalidRequest(f"Invalid value for 'dimensions': {spec.id} gives {allowed}.", param="dimensions")


def encode(vector: list[float], fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


async def call_upstream(
    state: AppState, dep: Deployment, spec: EmbeddingSpec, items: list[Any], dims: int | None
) -> tuple[list[list[float]], int | None]:
    """The vectors, and the upstream's token count (None when it reports none)."""
    name = dep.upstream_model_name(spec)
    pool = state.upstreams.pool(dep)
    api_key = state.upstreams.api_key(dep)
    headers = [(b"content-type", b"application/json")]
    if dep.wire_format == "gemini":
        parts: list[dict[str, Any]] = [
            {"model": f"models/{name}", "content": {"parts": [{"text": i if isinstance(i, str) else str(i)}]}} for i in items
        ]
        if dims:
            for p in parts:
                p["outputDimensionality"] = dims
        payload: dict[str, Any] = {"requests": parts}
        url = f"{dep.api_base}/v1beta/models/{name}:batchEmbedContents"
        if api_key:
            headers.append((b"x-goog-api-key", api_key.encode()))
    elif dep.wire_format == "openai":
        payload = {"model": name, "input": items, "encoding_format": "float"}
        if dims:
            payload["dimensions"] = dims
        url = f"{dep.api_base}/embeddings"
        if api_key:
            headers.append((b"authorization", b"Bearer " + api_key.encode()))
    else:
        raise InvalidRequest(f"{spec.id}: deployment {dep.id} speaks {dep.wire_format}, which has no embeddings API.", param="model")
    call = UpstreamCall(dep, spec, payload, api_key, pool)  # type: ignore[arg-type]
    resp = await pool.send(call, url, headers, orjson.dumps(payload))
    if resp.status_code >= 400:
        raise await read_error(resp, call)
    try:
        data = orjson.loads(await resp.aread())
    except httpx.HTTPError as exc:  # cut mid-body, silent: the API's upstream error, not a 500
        raise transport_error(exc, call, url) from None
    except orjson.JSONDecodeError:
        raise _bad(dep, spec, "a response that is not JSON") from None
    finally:
        await resp.aclose()
    if not isinstance(data, dict):
        raise _bad(dep, spec, "a response that is not an object")
    if dep.wire_format == "gemini":
        return [e["values"] for e in data.get("embeddings") or ()], None
    rows = sorted(data.get("data") or (), key=lambda d: d.get("index", 0))
    return [r["embedding"] for r in rows], (data.get("usage") or {}).get("prompt_tokens")


def _bad(dep: Deployment, spec: EmbeddingSpec, what: str) -> UpstreamError:
    return UpstreamError(dep.provider, dep.id, "bad_response", f"{dep.id} sent {what}", status=502, model=spec.id)


async def create_embeddings(request: Request) -> Response:
    state: AppState = request.app.state.autoroute
    ex = Exchange(endpoint=Endpoint.EMBEDDINGS)
    state.metrics.request_started()
    try:
        ex.key = key = await state.keys.authenticate(bearer_token(request.headers))
        body = parse_body(await pipeline.read_body(request, state.settings.max_body_bytes))
        ex.requested_model = body["model"]
        ex.task_id = request.headers.get("x-task-id") or None
        ex.agent = body.get("user") or request.headers.get("x-agent-id") or None
        spec, reason = resolve(state.policy, body["model"], key)
        check_dimensions(spec, body.get("dimensions"))
        items = inputs(body)
        tokens = estimate_tokens(items)
        decision = {
            "decision_id": ex.decision_id,
            "model": spec.id,
            "provider": spec.provider,
            "estimated_input_tokens": tokens,
            "estimated_output_tokens": 0,
            "estimated_cost_usd": spec.cost_usd(tokens),
            "reason": reason,
            "policy_hash": state.policy.hash,
        }
        ex.plan = Plan([spec], tokens, 0, decision)  # type: ignore[list-item]
        deps = [d for d in state.policy.deployments if d.serves(spec) and d.has_credentials(state.environ)]
        if not deps:
            raise ServiceUnavailable(f"No deployment with credentials serves {spec.id}.", code="no_deployment")
        ex.admission = Admission(state.limiter, key, ex.plan, ex.task_id, ex.agent)
        if await ex.admission.acquire(deps[0], spec, tokens) is None:  # type: ignore[arg-type]
            raise ServiceUnavailable(f"Deployment {deps[0].id} is at capacity; retry shortly.", code="deployment_busy")
        try:
            vectors, reported = await call_upstream(state, deps[0], spec, items, body.get("dimensions"))
        except UpstreamError as exc:
            raise UpstreamFailed(f"{spec.id} on {deps[0].id} failed: {exc.message}", status=exc.status or 502) from None
        ex.outcome.model = spec  # type: ignore[assignment]
        accounting.settle_usage(ex, Usage(int(reported if reported is not None else tokens), 0))
        fmt = body.get("encoding_format", "float")
        data = [{"object": "embedding", "index": i, "embedding": encode(v, fmt)} for i, v in enumerate(vectors)]
        usage = {
            "prompt_tokens": ex.usage.prompt_tokens if ex.usage else tokens,
            "total_tokens": ex.usage.prompt_tokens if ex.usage else tokens,
        }
        ex.completed(200)
        out = {"object": "list", "data": data, "model": spec.id, "usage": usage}
        return Response(orjson.dumps(out), media_type="application/json", headers=ex.response_headers())
    except ProxyError as exc:
        ex.failed(exc)
        exc.headers.update(ex.response_headers())
        raise
    except asyncio.CancelledError as exc:
        ex.cancelled(exc)
        raise
    except Exception as exc:
        ex.failed(exc)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await state.record(ex)


routes = [Route("/v1/embeddings", create_embeddings, methods=["POST"]), Route("/embeddings", create_embeddings, methods=["POST"])]
