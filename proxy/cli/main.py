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

    from proxy.cli.keys import add_keys_commands

    add_keys_commands(sub)

    from proxy.cli.learn import add_learn_commands

    add_learn_commands(sub)

    route = sub.add_parser("route", help="print the routing decision for a prompt or request (no model is called)")
    route.add_argument("prompt", nargs="?", help="the user message (or use --file)")
    route.add_argument("--file", type=Path, help="a chat-completions request body (JSON)")
    route.add_argument("--model", default="auto", help="auto, auto:cheapest, auto:balanced, auto:best_quality, auto:local")
    route.add_argument("--system", help="a system prompt to add")
    route.add_argument("--policy", type=Path)
    route.add_argument(
        "--all-available", action="store_true", help="treat every model as available (default: only those whose provider key is set)"
    )
    route.set_defaults(func=_route)

    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="load and validate the policy directory")
    check.add_argument("--policy", type=Path)
    check.set_defaults(func=_policy_check)

    args = parser.parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()
    except BrokenPipeError:  # `autoroute keys list | head`: the reader left; not an error, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python docs, "Note on SIGPIPE"
        return 0
    return status


def load_settings() -> Settings:
    """The process settings, or exit 2 with what is wrong (e.g. a master key that is too short)."""
    from pydantic import ValidationError

    from proxy.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"])
            name = f"AUTOROUTE_{where.upper()}: " if where else ""
            print(f"autoroute: invalid setting: {name}{err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        raise SystemExit(2) from None


def _apply_overrides(args: argparse.Namespace) -> None:
    """CLI flags become AUTOROUTE_* variables so every worker process sees them."""
    for flag, env in (("host", "HOST"), ("port", "PORT"), ("policy", "POLICY_DIR"), ("workers", "WORKERS"), ("log_level", "LOG_LEVEL")):
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[f"AUTOROUTE_{env}"] = str(value)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from proxy.observe import logs
    from proxy.policy import load_policy
    from proxy.settings import load_environ

    _apply_overrides(args)
    settings = load_settings()
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
    from proxy.cli.connections import uvicorn_options

    uvicorn.run(
        "proxy.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        log_config=None,
        access_log=settings.access_log,
        server_header=False,
        **uvicorn_options(settings),  # httptools with a header timeout, keep-alive, concurrency, grace
    )
    return 0


def _prepare_metrics(settings: Settings) -> None:
    """Several workers: metrics go through prometheus-client's multiprocess directory, and a
    separate metrics port (if any) is served here, summing every worker. One worker serves
    its own separate port from the app's lifespan."""
    from proxy.observe.export import prepare_multiprocess_dir, start_metrics_server

    if prepare_multiprocess_dir(settings.workers) and settings.workers > 1 and settings.metrics_port:
        start_metrics_server(settings.metrics_port, host=settings.host)


def _route(args: argparse.Namespace) -> int:
    """The decision /v1/route would give, computed here from the policy (no proxy needed)."""
    import orjson

    from proxy.dispatch.deployments import available_models
    from proxy.errors import ProxyError
    from proxy.policy import load_policy
    from proxy.request.exchange import new_decision_id
    from proxy.routing.classify import classify
    from proxy.routing.learned import router_for
    from proxy.routing.options import parse_route_options
    from proxy.routing.selection import decision_record, select
    from proxy.settings import load_environ

    _apply_overrides(args)
    settings = load_settings()
    environ = load_environ(settings.env_file)
    try:
        policy = load_policy(settings.policy_dir, environ)
    except PolicyError as exc:
        print(f"autoroute: {exc}", file=sys.stderr)
        return 2
    if args.file:
        body = orjson.loads(args.file.read_bytes())
    elif args.prompt:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        body = {"model": args.model, "messages": [*messages, {"role": "user", "content": args.prompt}]}
    else:
        print("autoroute route: give a prompt or --file request.json", file=sys.stderr)
        return 2
    available = frozenset(policy.models) if args.all_available else available_models(policy, environ)
    try:
        c = classify(body, router_for(policy))
        plan = select(c, policy, parse_route_options(body.get("model", "auto"), body, {}), available)
    except ProxyError as exc:
        print(orjson.dumps(exc.body(), option=orjson.OPT_INDENT_2).decode())
        return 1
    print(orjson.dumps(decision_record(new_decision_id(), c, plan, policy), option=orjson.OPT_INDENT_2).decode())
    return 0


def _policy_check(args: argparse.Namespace) -> int:
    from proxy.policy import load_policy
    from proxy.settings import load_environ

    _apply_overrides(args)
    settings = load_settings()
    try:
        policy = load_policy(settings.policy_dir, load_environ(settings.env_file))
    except PolicyError as exc:
        print(f"autoroute: {exc}", file=sys.stderr)
        return 2
    print(f"policy OK: {settings.policy_dir} (hash {policy.hash}, {len(policy.models)} models, {len(policy.deployments)} deployments)")
    return 0
