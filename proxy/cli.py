"""`autoroute serve | route | keys ... | policy check`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from proxy.errors import PolicyError

if TYPE_CHECKING:
    from proxy.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autoroute", description="OpenAI-compatible proxy that routes to the cheapest capable model")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--host", help="listen address (default 127.0.0.1, env AUTOROUTE_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default 8080, env AUTOROUTE_PORT)")
    serve.add_argument("--policy", type=Path, help="policy directory (default ./policies, env AUTOROUTE_POLICY_DIR)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1, env AUTOROUTE_WORKERS)")
    serve.add_argument("--log-level", help="debug|info|warning|error (env AUTOROUTE_LOG_LEVEL)")
    serve.set_defaults(func=_serve)

    from proxy.cli_keys import add_keys_commands

    add_keys_commands(sub)

    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="load and validate the policy directory")
    check.add_argument("--policy", type=Path)
    check.set_defaults(func=_policy_check)

    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def _apply_overrides(args: argparse.Namespace) -> None:
    """CLI flags become AUTOROUTE_* variables so every worker process sees them."""
    for flag, env in (("host", "HOST"), ("port", "PORT"), ("policy", "POLICY_DIR"), ("workers", "WORKERS"), ("log_level", "LOG_LEVEL")):
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[f"AUTOROUTE_{env}"] = str(value)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from proxy import logs
    from proxy.policy import load_policy
    from proxy.settings import Settings, load_environ

    _apply_overrides(args)
    settings = Settings()
    logs.configure(settings.log_level)
    try:  # fail fast, with the loader's message, before any worker starts
        load_policy(settings.policy_dir, load_environ(settings.env_file))
    except PolicyError as exc:
        print(f"autoroute: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1 and settings.redis_url is None:
        print(
            "autoroute: several workers need a shared limits store: set REDIS_URL "
            "(the embedded store lives in one process, so each worker would enforce its own limits)",
            file=sys.stderr,
        )
        return 2
    _prepare_metrics(settings)
    uvicorn.run(
        "proxy.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        server_header=False,
    )
    return 0


def _prepare_metrics(settings: Settings) -> None:
    """Several workers: metrics go through prometheus-client's multiprocess directory, and a
    separate metrics port (if any) is served here, summing every worker. One worker serves
    its own separate port from the app's lifespan."""
    from proxy.metrics_export import prepare_multiprocess_dir, start_metrics_server

    if prepare_multiprocess_dir(settings.workers) and settings.workers > 1 and settings.metrics_port:
        start_metrics_server(settings.metrics_port, host=settings.host)


def _policy_check(args: argparse.Namespace) -> int:
    from proxy.policy import load_policy
    from proxy.settings import Settings, load_environ

    _apply_overrides(args)
    settings = Settings()
    try:
        policy = load_policy(settings.policy_dir, load_environ(settings.env_file))
    except PolicyError as exc:
        print(f"autoroute: {exc}", file=sys.stderr)
        return 2
    print(f"policy OK: {settings.policy_dir} (hash {policy.hash}, {len(policy.models)} models, {len(policy.deployments)} deployments)")
    return 0
