"""The model registry and the deployments that serve it (`policies/models.yaml`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Provider = Literal["openai", "anthropic", "google", "together", "ollama", "openai_compatible"]
WireFormat = Literal["openai", "anthropic", "gemini"]

# How each provider is spoken to. Together, Ollama (its /v1 API) and any gateway speak
# OpenAI's format and take the direct path; Anthropic and Gemini are translated by litellm.
# What litellm's translation to Anthropic / Gemini silently loses (several choices, logprobs).
TRANSLATION_DROPS = frozenset({"n", "logprobs", "top_logprobs"})

WIRE_FORMAT: dict[str, WireFormat] = {
    "openai": "openai",
    "together": "openai",
    "ollama": "openai",
    "openai_compatible": "openai",
    "anthropic": "anthropic",
    "google": "gemini",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnknownModelPrice(Strict):
    """What a model forwarded by a deployment pattern costs when litellm's cost map does not
    know it (proxy/policy/passthrough.py)."""

    action: Literal["refuse_if_budgeted", "charge"] = Field(
        "refuse_if_budgeted",
        description="refuse_if_budgeted: keys with a budget get 403, others are forwarded unpriced; charge: the rates below",
    )
    input_usd_per_mtok: float = Field(0.0, ge=0)
    output_usd_per_mtok: float = Field(0.0, ge=0)


class ModelSpec(Strict):
    id: str = Field(description="Registry id, e.g. anthropic/claude-sonnet-4")
    provider: Provider
    api_model_id: str = Field(description="The id the provider's API expects")
    display_name: str
    tier: int = Field(ge=1, le=4, description="1 frontier ... 4 lightweight")
    quality_index: int = Field(ge=0, le=100)
    reasoning_score: int = Field(ge=0, le=100)
    coding_score: int = Field(ge=0, le=100)
    instruction_following: int = Field(ge=0, le=100)
    speed_tokens_per_sec: int = Field(gt=0)
    context_window: int = Field(gt=0, description="tokens")
    max_output_tokens: int | None = Field(None, gt=0)
    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)
    supports_tools: bool
    supports_vision: bool
    self_hosted: bool = Field(description="open weights: may run on infrastructure you control")
    local: bool = Field(False, description="runs on this site's own hardware (e.g. Ollama): free, private")
    reasoning_model: bool = Field(False, description="takes max_completion_tokens, no temperature")
    hidden_reasoning_factor: float = Field(
        1.0, ge=1.0, le=64.0, description="billed output per visible output token when the request sets no cap (hidden reasoning)"
    )
    strengths: tuple[str, ...] = ()

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_usd_per_mtok + output_tokens * self.output_usd_per_mtok) / 1_000_000

    @property
    def unsupported_params(self) -> frozenset[str]:
        """Request parameters this model's wire format cannot carry (translated providers)."""
        return TRANSLATION_DROPS if WIRE_FORMAT[self.provider] != "openai" else frozenset()


class EmbeddingSpec(Strict):
    """An embedding model: priced per input token, vectors of `dimensions` floats."""

    id: str
    provider: Provider
    api_model_id: str
    display_name: str
    dimensions: int = Field(gt=0, description="native vector length")
    shortenable: bool = Field(False, description="takes the `dimensions` parameter (Matryoshka models)")
    max_input_tokens: int = Field(8191, gt=0, description="per input")
    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = 0.0
    self_hosted: bool = False
    local: bool = False

    def cost_usd(self, input_tokens: int, output_tokens: int = 0) -> float:
        return input_tokens * self.input_usd_per_mtok / 1_000_000


class Timeouts(Strict):
    connect_s: float = Field(5.0, gt=0)
    read_s: float = Field(600.0, gt=0, description="between bytes of a response")
    first_token_s: float | None = Field(None, gt=0, description="streams: time to the first chunk")


class Deployment(Strict):
    id: str
    provider: Provider
    api_base: str
    api_key_env: str | None = Field(None, description="name of the environment variable with the key")
    models: tuple[str, ...] = Field((), description="registry ids or glob patterns served; empty = every model of this provider")
    model_names: dict[str, str] = Field({}, description="registry id -> name this upstream uses")
    headers: dict[str, str] = Field({}, description="extra request headers (values may use ${ENV})")
    priority: int = Field(1, description="lower is preferred (failover)")
    weight: float = Field(1.0, gt=0, description="share of traffic (weighted)")
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    max_concurrent: int | None = Field(None, gt=0)
    timeouts: Timeouts = Timeouts()

    @model_validator(mode="after")
    def _normalise_base(self) -> Deployment:
        base = self.api_base.strip().rstrip("/")
        if "://" not in base:  # OLLAMA_HOST is often host:port
            base = "http://" + base
        object.__setattr__(self, "api_base", base)
        return self

    @property
    def wire_format(self) -> WireFormat:
        return WIRE_FORMAT[self.provider]

    def serves(self, model: ModelSpec | EmbeddingSpec) -> bool:
        if not self.models:
            return model.provider == self.provider
        return any(fnmatch.fnmatchcase(model.id, pattern) for pattern in self.models)

    def upstream_model_name(self, model: ModelSpec | EmbeddingSpec) -> str:
        return self.model_names.get(model.id, model.api_model_id)

    def api_key(self, environ: Mapping[str, str]) -> str | None:
        return environ.get(self.api_key_env) or None if self.api_key_env else None

    def has_credentials(self, environ: Mapping[str, str]) -> bool:
        return self.api_key_env is None or bool(environ.get(self.api_key_env))


class RegistryFile(Strict):
    models: tuple[ModelSpec, ...]
    embedding_models: tuple[EmbeddingSpec, ...] = ()
    embedding_model: str | None = Field(None, description='what model="auto" embeds with: one model, so vectors stay comparable')
    local_embedding_model: str | None = Field(None, description='model="auto" for self_hosted_only keys')
    unknown_model_price: UnknownModelPrice = UnknownModelPrice()
    deployments: tuple[Deployment, ...] = ()

    @model_validator(mode="after")
    def _check_references(self) -> RegistryFile:
        ids = [m.id for m in self.models] + [e.id for e in self.embedding_models]
        for name in (self.embedding_model, self.local_embedding_model):
            if name is not None and name not in ids[len(self.models) :]:
                raise ValueError(f"embedding model {name!r} is not in embedding_models")
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate model ids: {', '.join(dupes)}")
        dep_ids = [d.id for d in self.deployments]
        dupes = sorted({i for i in dep_ids if dep_ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate deployment ids: {', '.join(dupes)}")
        for dep in self.deployments:
            for pattern in dep.models:
                if not any(fnmatch.fnmatchcase(i, pattern) for i in ids):
                    raise ValueError(f"deployment {dep.id!r} serves {pattern!r}, which matches no model")
            for model_id in dep.model_names:
                if model_id not in ids:
                    raise ValueError(f"deployment {dep.id!r} renames unknown model {model_id!r}")
        return self
