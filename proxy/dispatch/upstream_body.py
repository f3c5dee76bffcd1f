"""The request body one upstream model gets: the client's body with the upstream's model
name and the parameter fixes that model needs. Pure."""

from __future__ import annotations

from typing import Any

from proxy.policy.registry import Deployment, ModelSpec

# Fields that are ours, not the upstream's.
PROXY_FIELDS = ("route",)
# Reasoning models (o3, o4-mini) reject sampling parameters and take max_completion_tokens.
REASONING_UNSUPPORTED = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs")


def upstream_body(body: dict[str, Any], model: ModelSpec, deployment: Deployment, *, stream: bool) -> dict[str, Any]:
    out = dict(body)
    for name in PROXY_FIELDS:
        out.pop(name, None)
    out["model"] = deployment.upstream_model_name(model)
    if model.reasoning_model:
        if "max_tokens" in out:
            max_tokens = out.pop("max_tokens")
            out.setdefault("max_completion_tokens", max_tokens)
        for name in REASONING_UNSUPPORTED:
            out.pop(name, None)
    elif deployment.provider != "openai" and "max_completion_tokens" in out and "max_tokens" not in out:
        # OpenAI-compatible servers other than OpenAI (Together, Ollama, vLLM) know max_tokens.
        out["max_tokens"] = out.pop("max_completion_tokens")
    if stream:
        out["stream"] = True
        if deployment.wire_format == "openai":
            # Always ask for usage so every stream is accounted; the client only sees the
            # usage chunk if it asked for it.
            out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        out.pop("stream", None)
        out.pop("stream_options", None)
    return out
