"""Serving `/metrics`: single-process or prometheus-client multiprocess mode, same or own port.

Owns the exposition side of `proxy.observe.metrics`:

- `render(registry, accept)` -> (body, content type); in multiprocess mode it renders the
  sum of every worker's files instead of this process's registry.
- `metrics_endpoint` (starlette handler; `metrics_route()` builds the Route) reads
  `request.app.state.autoroute.metrics`.
- `prepare_multiprocess_dir(workers)`: call in `autoroute serve` *before* uvicorn starts its
  workers. It sets PROMETHEUS_MULTIPROC_DIR (a fresh temp dir when unset and workers > 1)
  and clears stale files. prometheus-client picks its value class when it is first
  imported, so the variable must be in the environment before a worker imports it
  (uvicorn's workers are spawned, so they inherit it).
- `mark_worker_dead(pid)`: call in each worker's lifespan shutdown in multiprocess mode,
  so live gauges (in-flight, cooldown state, store up, budgets) forget the dead worker.
- `start_metrics_server(port, host, registry)`: /metrics on its own port (settings.metrics_port)
  with prometheus-client's threaded HTTP server. With one worker, call it in the lifespan;
  with several, call it once in the supervisor (the `serve` command) — every worker binding
  the same port would fail, and the supervisor's render already sums all workers.
"""

from __future__ import annotations

import glob
import os
import tempfile
import threading
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, values
from prometheus_client.exposition import choose_encoder, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir(environ: MutableMapping[str, str] | None = None) -> str | None:
    """The multiprocess directory when this process writes its metrics there, else None.

    True only when PROMETHEUS_MULTIPROC_DIR was set before prometheus-client was imported
    (its value class is then the mmap-backed one)."""
    path = (environ if environ is not None else os.environ).get(ENV)
    if path and getattr(values.ValueClass, "_multiprocess", False):
        return path
    return None


def prepare_multiprocess_dir(workers: int, environ: MutableMapping[str, str] | None = None) -> str | None:
    """Before starting workers: choose and clean the multiprocess directory.

    Returns the directory, or None for single-process mode (one worker, variable unset).
    Stale `*.db` files from an earlier run are removed so counters start from zero."""
    env = environ if environ is not None else os.environ
    path = env.get(ENV)
    if not path:
        if workers <= 1:
            return None
        path = tempfile.mkdtemp(prefix="autoroute-metrics-")
        env[ENV] = path
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    return path


def mark_worker_dead(pid: int | None = None, path: str | None = None) -> None:
    """Drop a finished worker's live-gauge files (no-op outside multiprocess mode)."""
    path = path or multiprocess_dir()
    if path:
        mark_process_dead(pid if pid is not None else os.getpid(), path)


def exposition_collector(registry: CollectorRegistry, multiproc_dir: str | None = None) -> Collector:
    """What to render: the sum over the multiprocess directory, or `registry` itself."""
    path = multiproc_dir or multiprocess_dir()
    if not path:
        return registry
    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=path)
    return merged


def render(registry: CollectorRegistry, accept: str = "", multiproc_dir: str | None = None) -> tuple[bytes, str]:
    """The exposition body and its content type (OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(exposition_collector(registry, multiproc_dir)), content_type


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics for the app's `state.autoroute.metrics` (file reads run off the loop)."""
    metrics = request.app.state.autoroute.metrics
    accept = request.headers.get("accept", "")
    if multiprocess_dir():
        body, content_type = await run_in_threadpool(render, metrics.registry, accept)
    else:
        body, content_type = render(metrics.registry, accept)
    return Response(body, media_type=None, headers={"Content-Type": content_type})


def metrics_route(path: str = "/metrics") -> Route:
    return Route(path, metrics_endpoint, methods=["GET"], name="metrics")


def start_metrics_server(
    port: int,
    host: str = "0.0.0.0",
    registry: CollectorRegistry | None = None,
    multiproc_dir: str | None = None,
) -> tuple[Any, threading.Thread]:
    """Serve /metrics on its own port in a daemon thread; returns (server, thread).

    Stop with `server.shutdown(); server.server_close()`. Renders the sum over the
    multiprocess directory when there is one (`multiproc_dir`, or this process's mode, or,
    with no registry, PROMETHEUS_MULTIPROC_DIR as the supervisor sees it), else `registry`."""
    path = multiproc_dir or multiprocess_dir() or (os.environ.get(ENV) if registry is None else None)
    if registry is None and not path:
        raise ValueError("start_metrics_server needs a registry outside multiprocess mode")
    collector = exposition_collector(registry or CollectorRegistry(), path)
    return start_http_server(port, addr=host, registry=collector)
