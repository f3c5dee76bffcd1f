"""Process settings, from the environment and `.env` (pydantic-settings).

Policy (models, deployments, routing) lives in `policies/*.yaml`; this is only what the
process needs to start: where to listen, where the policy and the limits store are, secrets.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTOROUTE_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    policy_dir: Path = Field(Path("policies"), description="policy directory; the shipped defaults when ./policies is absent")
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
    open_mode: bool | None = Field(
        None, description="unset: open exactly when no master key is set; false: /v1 needs keys even without a master key"
    )
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    log_level: str = "info"
    access_log: bool = False
    metrics_port: int | None = Field(None, description="Serve /metrics on a separate port too")
    env_file: Path = Path(".env")
    shutdown_grace_s: float = Field(30.0, ge=0)
    # Connections (issue 11 item 5): a client gets this long for its request line and headers,
    # then for its body; an idle keep-alive connection is closed after timeout_keep_alive_s; at
    # most limit_concurrency connections + requests at once (beyond it: 503).
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)
    timeout_keep_alive_s: float = Field(5.0, gt=0)
    limit_concurrency: int | None = Field(4096, ge=1)

    @field_validator("master_key")
    @classmethod
    def _strong_master_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_MASTER_KEY_CHARS:
            n = len(value.get_secret_value().strip())
            raise ValueError(
                f"AUTOROUTE_MASTER_KEY is {'empty' if n == 0 else f'only {n} characters'}; use at least "
                f"{MIN_MASTER_KEY_CHARS} random characters (python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
                "or unset it to run open (local development only)"
            )
        return value

    @model_validator(mode="after")
    def _policies(self) -> Settings:
        """The default `policies` directory, when the working directory has none: the policies
        shipped with the package (the repository's, or the copy a wheel installs)."""
        if self.policy_dir == DEFAULT_POLICY_DIR and not self.policy_dir.is_dir():
            self.policy_dir = bundled_policies() or self.policy_dir
        return self

    @model_validator(mode="after")
    def _open_or_keyed(self) -> Settings:
        if self.open_mode and self.master_key is not None:
            raise ValueError("AUTOROUTE_OPEN_MODE=true contradicts AUTOROUTE_MASTER_KEY: unset one of them")
        return self


MIN_MASTER_KEY_CHARS = 16
DEFAULT_POLICY_DIR = Path("policies")


def bundled_policies() -> Path | None:
    """The default policies that ship with autoroute: next to the package in a source checkout
    or editable install, under `<prefix>/share/autoroute/policies` from a wheel."""
    for candidate in (Path(__file__).resolve().parent.parent / "policies", Path(sys.prefix) / "share" / "autoroute" / "policies"):
        if (candidate / "models.yaml").is_file():
            return candidate
    return None


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
