"""Small pieces of the dispatcher's walk down a plan: its state, a gate's lease, the attempt
recorded for a deployment skipped at capacity, and the `kind` label of a failed attempt."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.dispatch.attempts import Attempt, Outcome
from proxy.dispatch.gate import DeploymentGate
from proxy.policy.registry import Deployment, ModelSpec
from proxy.providers.base import ChunkStream, UpstreamError
from proxy.vocab import ErrorKind


def metric_kind(error: UpstreamError) -> str:
    """The `kind` label of a failed attempt: its `ErrorKind`, with a refused key told apart."""
    if error.kind == ErrorKind.REJECTED and error.status in (401, 403):
        return ErrorKind.AUTH
    return error.kind


@dataclass(slots=True)
class Walk:
    """One request's way through the plan."""

    models: list[ModelSpec]
    body: dict[str, Any]
    outcome: Outcome
    deadline: float | None
    est: int
    stream: bool
    gate: DeploymentGate
    routed: bool = False  # the caller did not name the model: provider-side 4xx moves on
    sent: int = 0  # upstream attempts so far (capacity skips are not sent)


@dataclass(slots=True)
class Lease:
    """A gate's lease and the gate that must take it back."""

    gate: DeploymentGate
    inner: object


def aborted_kind(exc: BaseException) -> str:
    return "cancelled" if isinstance(exc, asyncio.CancelledError) else "internal"


def capacity_attempt(model: ModelSpec, dep: Deployment) -> Attempt:
    limits = ", ".join(f"{k} {v}" for k, v in (("max_concurrent", dep.max_concurrent), ("rpm", dep.rpm), ("tpm", dep.tpm)) if v)
    err = UpstreamError(dep.provider, dep.id, "capacity", f"{dep.id} is at capacity ({limits})", model=model.id)
    return Attempt(model.id, dep.id, dep.provider, time.perf_counter(), error=err)


async def close_stream(upstream: ChunkStream | None, chunks: Any) -> None:
    if chunks is not None and hasattr(chunks, "aclose"):
        try:
            await chunks.aclose()
        except Exception:
            pass
    if upstream is not None:
        await upstream.aclose()


def rough_tokens(body: dict[str, Any]) -> int:
    """Prompt size estimate for tpm gates (~4 bytes a token) plus the requested output."""
    out = body.get("max_completion_tokens") or body.get("max_tokens") or 0
    return len(orjson.dumps(body.get("messages", []))) // 4 + (out if isinstance(out, int) else 0)
