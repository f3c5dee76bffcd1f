"""GET /v1/models, GET /v1/models/{id}, and the 404 for paths the proxy does not serve."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.errors import NotFound

if TYPE_CHECKING:
    from proxy.request.appstate import AppState

AUTO_IDS = ("auto", "auto:cheapest", "auto:balanced", "auto:best_quality", "auto:local")

#: Every endpoint a client can call, for the 404 that names them.
SUPPORTED = (
    "POST /v1/chat/completions",
    "POST /v1/responses",
    "GET|DELETE /v1/responses/{id}",
    "POST /v1/messages",
    "POST /v1/messages/count_tokens",
    "POST /v1/embeddings",
    "GET /v1/models",
    "GET /v1/models/{id}",
    "POST /v1/route",
)


def _state(request: Request) -> AppState:
    return request.app.state.autoroute


def model_objects(state: AppState) -> list[dict[str, Any]]:
    available = state.health.available_models()
    created = int(time.time())
    data: list[dict[str, Any]] = [{"id": a, "object": "model", "created": created, "owned_by": "autoroute"} for a in AUTO_IDS]
    for m in state.policy.models.values():
        info: dict[str, Any] = {
            "provider_model_id": m.api_model_id,
            "display_name": m.display_name,
            "tier": m.tier,
            "context_window": m.context_window,
            "input_usd_per_mtok": m.input_usd_per_mtok,
            "output_usd_per_mtok": m.output_usd_per_mtok,
            "supports_tools": m.supports_tools,
            "supports_vision": m.supports_vision,
            "self_hosted": m.self_hosted,
            "local": m.local,
            "available": m.id in available,
        }
        data.append({"id": m.id, "object": "model", "created": created, "owned_by": m.provider, "autoroute": info})
    for e in state.policy.registry.embedding_models:
        info = {
            "kind": "embedding",
            "provider_model_id": e.api_model_id,
            "dimensions": e.dimensions,
            "input_usd_per_mtok": e.input_usd_per_mtok,
            "local": e.local,
        }
        data.append({"id": e.id, "object": "model", "created": created, "owned_by": e.provider, "autoroute": info})
    return data


async def list_models(request: Request) -> Response:
    return Response(orjson.dumps({"object": "list", "data": model_objects(_state(request))}), media_type="application/json")


async def retrieve_model(request: Request) -> Response:
    """Every id the list shows; a provider-side id (`gpt-4.1`, `claude-sonnet-4-20250514`)
    answers with its registry entry. Anything else: 404 pointing at the list."""
    state = _state(request)
    name: str = request.path_params["model_id"]
    objects = model_objects(state)
    wanted = name.lower()
    spec = state.policy.resolve_model(name)
    if spec is not None:
        wanted = spec.id.lower()
    for obj in objects:
        if obj["id"].lower() == wanted:
            return Response(orjson.dumps(obj), media_type="application/json")
    raise NotFound(
        f"The model '{name}' does not exist. GET {request.base_url}v1/models lists every model id; "
        'use model="auto" to let autoroute choose.',
        param="model",
        code="model_not_found",
    )


def unknown_path_message(method: str, path: str) -> str:
    return f"No route {method} {path}. autoroute serves: {', '.join(SUPPORTED)}."


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
]
