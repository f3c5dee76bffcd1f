"""`autoroute keys create|list|show|update|revoke`: the admin API over HTTP, for operators.

Talks to a running proxy (`--url`, default http://127.0.0.1:8080) with the master key from
AUTOROUTE_MASTER_KEY (or `--master-key`). The lead's `cli.py` calls
`add_keys_commands(subparsers)`; each command sets `func(args) -> int` (the exit status).
Output is JSON on stdout (a table for `list`); errors go to stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def add_keys_commands(subparsers: Any) -> argparse.ArgumentParser:
    keys = subparsers.add_parser("keys", help="manage virtual API keys on a running proxy")
    keys.add_argument("--url", default=os.environ.get("AUTOROUTE_URL", DEFAULT_URL), help="proxy base URL")
    keys.add_argument("--master-key", default=None, help="default: $AUTOROUTE_MASTER_KEY")
    sub = keys.add_subparsers(dest="keys_command", required=True)

    create = sub.add_parser("create", help="create a key (the secret is printed once)")
    _field_options(create, creating=True)
    create.set_defaults(func=_create)

    sub.add_parser("list", help="list keys").set_defaults(func=_list)

    show = sub.add_parser("show", help="show a key")
    show.add_argument("id")
    show.add_argument("--usage", action="store_true", help="also show this day's and month's usage")
    show.set_defaults(func=_show)

    update = sub.add_parser("update", help="change a key's fields")
    update.add_argument("id")
    _field_options(update, creating=False)
    update.set_defaults(func=_update)

    revoke = sub.add_parser("revoke", help="revoke (delete) a key")
    revoke.add_argument("id")
    revoke.set_defaults(func=_revoke)
    return keys


def _field_options(p: argparse.ArgumentParser, *, creating: bool) -> None:
    p.add_argument("--name", required=creating)
    for flag, kind, help_ in (
        ("--rpm", int, "requests per minute"),
        ("--tpm", int, "tokens per minute"),
        ("--budget-day", float, "USD per UTC day"),
        ("--budget-month", float, "USD per UTC month"),
        ("--budget-total", float, "USD in total"),
        ("--task-max-cost", float, "USD per task (X-Task-Id), overrides the policy"),
        ("--task-max-tokens", int, "tokens per task, overrides the policy"),
    ):
        p.add_argument(flag, type=kind, help=help_)
    p.add_argument("--allow-model", action="append", dest="allowed_models", help="model id glob (repeatable)")
    p.add_argument(
        "--allow-tool", action="append", dest="allowed_tools", help="MCP tool glob, <server>__<tool> (repeatable; deny by default)"
    )
    p.add_argument("--context-assembler", action=argparse.BooleanOptionalAction, default=None, help="per-category system prompt and tools")
    p.add_argument("--route-preference", choices=["cheapest", "balanced", "best_quality"])
    p.add_argument("--route-quality-target", type=float, help="the quality dial for this key (0.5-0.999)")
    p.add_argument("--self-hosted-only", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--expires", help="ISO date/time, or a duration from now: 30d, 12h, 2w")
    p.add_argument("--metadata", action="append", metavar="K=V", help="free-form metadata (repeatable)")
    if not creating:
        p.add_argument("--clear", action="append", default=[], metavar="FIELD",
                       help="unset an optional field (rpm, tpm, budget_usd_day, expires_at, ...)")  # fmt: skip
        state = p.add_mutually_exclusive_group()
        state.add_argument("--disable", action="store_true")
        state.add_argument("--enable", action="store_true")


def fields_from_args(args: argparse.Namespace, now: datetime | None = None) -> dict[str, Any]:
    """The JSON body for create/update: only the options given."""
    body: dict[str, Any] = {}
    for attr, name in (
        ("name", "name"), ("rpm", "rpm"), ("tpm", "tpm"), ("budget_day", "budget_usd_day"),
        ("budget_month", "budget_usd_month"), ("budget_total", "budget_usd_total"),
        ("task_max_cost", "task_max_cost_usd"), ("task_max_tokens", "task_max_tokens"),
        ("allowed_models", "allowed_models"), ("route_preference", "route_preference"),
        ("self_hosted_only", "self_hosted_only"), ("route_quality_target", "route_quality_target"),
        ("allowed_tools", "allowed_tools"), ("context_assembler", "context_assembler"),
    ):  # fmt: skip
        value = getattr(args, attr, None)
        if value is not None:
            body[name] = value
    if getattr(args, "expires", None):
        body["expires_at"] = parse_expiry(args.expires, now or datetime.now(UTC))
    if getattr(args, "metadata", None):
        pairs = [item.partition("=") for item in args.metadata]
        if any(not sep or not k for k, sep, _ in pairs):
            raise SystemExit("--metadata takes KEY=VALUE")
        body["metadata"] = {k: v for k, _, v in pairs}
    if getattr(args, "disable", False):
        body["disabled"] = True
    if getattr(args, "enable", False):
        body["disabled"] = False
    for name in getattr(args, "clear", []) or []:
        body[name] = None
    return body


def parse_expiry(text: str, now: datetime) -> str:
    match = _DURATION.match(text.strip())
    if match:
        return (now + timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])).isoformat()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"--expires: {text!r} is neither an ISO date/time nor a duration like 30d") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


def _client(args: argparse.Namespace) -> httpx.Client:
    key = args.master_key or os.environ.get("AUTOROUTE_MASTER_KEY")
    if not key:
        raise SystemExit("set AUTOROUTE_MASTER_KEY (or pass --master-key) to use the admin API")
    transport = getattr(args, "transport", None)  # tests inject one
    return httpx.Client(base_url=args.url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=10.0, transport=transport)


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    with _client(args) as client:
        try:
            response = client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise SystemExit(f"cannot reach the proxy at {args.url}: {exc}") from None
    try:
        data = response.json()
    except ValueError:
        data = {"error": {"message": response.text[:200]}}
    if response.status_code >= 400:
        message = (data.get("error") or {}).get("message") if isinstance(data, dict) else None
        raise SystemExit(f"error {response.status_code}: {message or response.text[:200]}")
    return data


def _print(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _create(args: argparse.Namespace) -> int:
    data = _call(args, "POST", "/admin/keys", fields_from_args(args))
    _print(data)
    print(f"\nSave this key now; it is not shown again:\n  {data['key']}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    rows = _call(args, "GET", "/admin/keys")["data"]
    if not rows:
        print("no keys")
        return 0
    cols = (
        "id", "name", "rpm", "tpm", "budget_usd_day", "budget_usd_month", "budget_usd_total", "disabled", "expires_at",
    )  # fmt: skip
    table = [[("-" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    for row in [list(cols), *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _show(args: argparse.Namespace) -> int:
    data = _call(args, "GET", f"/admin/keys/{args.id}")
    if args.usage:
        data = {**data, "usage": _call(args, "GET", f"/admin/keys/{args.id}/usage")}
    _print(data)
    return 0


def _update(args: argparse.Namespace) -> int:
    body = fields_from_args(args)
    if not body:
        raise SystemExit("nothing to change: give at least one option")
    _print(_call(args, "PATCH", f"/admin/keys/{args.id}", body))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    _print(_call(args, "DELETE", f"/admin/keys/{args.id}"))
    return 0
