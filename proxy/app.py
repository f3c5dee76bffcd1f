"""create_app(settings): routes, lifespan, error handlers. No business logic here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.admin import keys as admin_keys
from proxy.admin import ops as admin_ops
from proxy.admin import reload as admin_reload
from proxy.admin.auth import require_admin
from proxy.api import embeddings, messages, models, responses
from proxy.api import feedback as feedback_api
from proxy.api import mcp as mcp_api
from proxy.api.route import route_decision
from proxy.errors import NotFound, ProxyError
from proxy.observe.decisions import decisions_route
from proxy.observe.export import mark_worker_dead, metrics_route, multiprocess_dir, start_metrics_server
from proxy.policy import Policy
from proxy.request import pipeline
from proxy.request.appstate import AppState, build_state
from proxy.request.disconnect import CancelOnDisconnect
from proxy.settings import Settings, load_environ

log = logging.getLogger("autoroute")


def create_app(settings: Settings | None = None, *, environ: Mapping[str, str] | None = None, policy: Policy | None = None) -> Starlette:
    settings = settings or Settings()
    environ = environ if environ is not None else load_environ(settings.env_file)
    state = build_state(settings, environ, policy)
    gateway = mcp_api.LazyGateway(state) if state.policy.mcp.gateway.enabled else None  # the SDK loads on the first /mcp call

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.startup()
        on_stop_signal(state.drain.begin)
        _on_sighup(state)
        metrics_server = None
        if settings.metrics_port and not multiprocess_dir():  # several workers: cli.py serves it
            metrics_server, _ = start_metrics_server(settings.metrics_port, settings.host, state.metrics.registry)
        try:
            try:
                yield
            finally:
                if gateway is not None:
                    await gateway.close()
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            await state.shutdown()
            mark_worker_dead()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/route", route_decision, methods=["POST"]),
            *models.routes,
            *responses.routes,
            *messages.routes,
            *embeddings.routes,
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            metrics_route(),
            *admin_keys.routes,
            *admin_ops.routes,
            decisions_route(require_admin),
            *feedback_api.routes,
            *admin_reload.routes,
            *([Route("/mcp", gateway, methods=["GET", "POST", "DELETE"])] if gateway is not None else []),
        ],
        middleware=[Middleware(CancelOnDisconnect)],  # a client that leaves cancels its handler
        exception_handlers={ProxyError: proxy_error, HTTPException: http_error, Exception: unexpected_error},
        lifespan=lifespan,
    )
    app.state.autoroute = state
    return app


def on_stop_signal(callback: Callable[[], None]) -> None:
    """Also call `callback` on the event loop when SIGTERM/SIGINT arrive, before uvicorn's own
    handler (installed by uvicorn for the server's life, main thread only, restored after)."""
    if threading.current_thread() is not threading.main_thread():
        return  # a server in a thread (tests) has no signal handlers: call state.drain.begin()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            loop.call_soon_threadsafe(callback)
            previous(signum, frame)

        signal.signal(sig, handler)


def _on_sighup(state: AppState) -> None:
    """SIGHUP reloads the policy (routing, trained router, calibration); a broken one is logged and kept out."""

    def reload() -> None:
        try:
            state.reload()
        except Exception as exc:
            log.error("policy reload failed, the running policy stays: %s", exc)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread / no signals here
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)


def create_app_from_env() -> Starlette:
    """uvicorn factory (`proxy.app:create_app_from_env`), used for several workers."""
    return create_app()


def _state(request: Request) -> AppState:
    return request.app.state.autoroute


async def chat_completions(request: Request) -> Response:
    return await pipeline.handle_chat(_state(request), request)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = _state(request)
    checks = await state.ready()
    ok = all(checks.values())
    body = {"status": "ready" if ok else "not ready", "checks": checks, **state.ready_detail()}
    return JSONResponse(body, status_code=200 if ok else 503)


async def proxy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    getattr(log, exc.log_level)("%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.code, exc.message)
    return Response(exc.json(), status_code=exc.status, media_type="application/json", headers=exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err: ProxyError = NotFound(models.unknown_path_message(request.method, request.url.path))
        if request.url.path.startswith("/v1/messages"):
            return messages.anthropic_error(request, err)
    else:
        err = ProxyError(exc.detail or "HTTP error", status=exc.status_code, code="http_error")
        err.type = "invalid_request_error"  # type: ignore[misc]
    return Response(err.json(), status_code=err.status, media_type="application/json", headers=dict(exc.headers or {}))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    err = ProxyError(
        "The proxy hit an internal error; it has been logged. Retry, or report it with the x-autoroute-decision-id.", code="internal_error"
    )
    return Response(err.json(), status_code=500, media_type="application/json")
