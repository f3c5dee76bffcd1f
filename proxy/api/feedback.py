"""`POST /v1/feedback` (a key rates its own decisions), `GET /admin/feedback`, `POST /admin/reload`."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.admin.auth import require_admin
from proxy.errors import InvalidRequest
from proxy.keys.store import bearer_token
from proxy.observe.feedback import export, parse_feedback

MAX_FEEDBACK_BYTES = 16_384


async def feedback(request: Request) -> Response:
    state = request.app.state.autoroute
    key = await state.keys.authenticate(bearer_token(request.headers))
    raw = await request.body()
    if len(raw) > MAX_FEEDBACK_BYTES:
        raise InvalidRequest(f"the feedback body is over {MAX_FEEDBACK_BYTES} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON") from None
    decision_id, score, reason = parse_feedback(body)
    record = state.feedback.submit(decision_id, key.id, score, reason)
    out = {"decision_id": decision_id, "recorded": True, "score": score, "category": record["category"], "tier": record["tier"]}
    return Response(orjson.dumps(out), media_type="application/json")


async def admin_feedback(request: Request) -> Response:
    require_admin(request)
    return export(request.app.state.autoroute.feedback)


async def admin_reload(request: Request) -> Response:
    require_admin(request)
    old, new = request.app.state.autoroute.reload()
    return Response(orjson.dumps({"reloaded": True, "previous_policy_hash": old, "policy_hash": new}), media_type="application/json")


routes = [
    Route("/v1/feedback", feedback, methods=["POST"]),
    Route("/admin/feedback", admin_feedback, methods=["GET"]),
    Route("/admin/reload", admin_reload, methods=["POST"]),
]
