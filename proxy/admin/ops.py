"""Operational admin endpoints (master key required; the app mounts `routes`).

GET /admin/deployments   every deployment: provider, limits, in-flight, breaker state
                         (worst of its models), recent failures, cooldown remaining,
                         and per served model its strategy and breaker
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.admin.auth import require_admin


async def list_deployments(request: Request) -> Response:
    require_admin(request)
    state = request.app.state.autoroute
    dispatcher = state.dispatcher
    data = dispatcher.health.snapshot()
    usage = getattr(dispatcher.gate, "usage", None)
    if usage is not None:  # the in-process gate can say how full each window is
        for dep in data:
            dep["window"] = usage(dep["id"])
    dp = state.policy.dispatch
    return JSONResponse(
        {
            "object": "list",
            "strategy": dp.strategy,
            "cooldown": dp.cooldown.model_dump(),
            "available_models": sorted(dispatcher.health.available_models()),
            "data": data,
        }
    )


routes = [Route("/admin/deployments", list_deployments, methods=["GET"])]
