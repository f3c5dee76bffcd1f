"""`POST /admin/reload` (policy, trained router and calibration without a restart) and
`GET /admin/feedback` (the feedback records as JSONL, for `autoroute calibrate --feedback`)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.admin.auth import require_admin
from proxy.observe.feedback import export


async def admin_feedback(request: Request) -> Response:
    require_admin(request)
    return export(request.app.state.autoroute.feedback)


async def admin_reload(request: Request) -> Response:
    require_admin(request)
    old, new = request.app.state.autoroute.reload()
    return Response(orjson.dumps({"reloaded": True, "previous_policy_hash": old, "policy_hash": new}), media_type="application/json")


routes = [
    Route("/admin/feedback", admin_feedback, methods=["GET"]),
    Route("/admin/reload", admin_reload, methods=["POST"]),
]
