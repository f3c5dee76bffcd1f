"""Process settings, from the environment and `.env` (pydantic-settings).

Policy (models, deployments, routing) lives in `policies/*.yaml`; this is only what the
process needs to start: where to listen, where the policy and the limits store are, secrets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTOROUTE_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    policy_dir: Path = Path("policies")
    redis_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("AUTOROUTE_REDIS_URL", "REDIS_URL"),
        description="Limits store; unset = embedded in-process store (one process only)",
    )
    redis_max_connections: int = Field(
        64, ge=1, le=10_000, description="Store commands in flight per process (the pool holds 8 more); a burst queues beyond it"
    )
    redis_pool_wait_s: float = Field(5.0, gt=0, description="How long a store command queues for a connection before a 503 (not an outage)")
    master_key: SecretStr | None = Field(None, description="Guards /admin; once set, /v1 needs keys")
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    log_level: str = "info"
    access_log: bool = False
    metrics_port: int | None = Field(None, description="Serve /metrics on a separate port too")
    env_file: Path = Path(".env")
    shutdown_grace_s: float = Field(30.0, ge=0)


def load_environ(env_file: Path | str | None = ".env") -> dict[str, str]:
    """The environment the policy sees: `.env` values, overridden by the real environment.

    Used for `${NAME}` expansion in policy files and for provider API keys. Nothing is
    written back to `os.environ`.
    """
    merged: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ)
    return merged


def redact(value: str, environ: Mapping[str, str]) -> str:
    """Replace any secret-looking environment value that occurs in `value` with `***`."""
    for name, secret in environ.items():
        if secret and len(secret) >= 8 and _is_secret_name(name) and secret in value:
            value = value.replace(secret, "***")
    return value


def _is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(part in upper for part in ("KEY", "TOKEN", "SECRET", "PASSWORD"))
