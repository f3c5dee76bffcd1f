"""`POST /v1/feedback`: a key rates its own routing decisions (proxy/observe/feedback.py)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.errors import InvalidRequest
from proxy.keys.store import bearer_token
from proxy.observe.feedback import parse_feedback

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


routes = [Route("/v1/feedback", feedback, methods=["POST"])]
