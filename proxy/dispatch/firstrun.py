"""What a first run is missing: no provider key is set, so only keyless (local) deployments
are usable; said at start-up and in the error a client gets when those fail too."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urlsplit

from proxy.policy import Policy


def missing_setup(policy: Policy, environ: Mapping[str, str]) -> str | None:
    """A sentence naming the unset key variables and the local URLs left, or None when some
    deployment with an API key has its key."""
    keyed = [d for d in policy.deployments if d.api_key_env]
    if not keyed or any(d.has_credentials(environ) for d in keyed):
        return None
    names = ", ".join(sorted({d.api_key_env for d in keyed if d.api_key_env}))
    local = [d for d in policy.deployments if not d.api_key_env]
    where = "; ".join(f"{d.id} at {d.api_base}" for d in local)
    tail = (
        f" Only keyless deployments are left ({where}): start them (for Ollama: `ollama serve`, then `ollama pull` its model)."
        if local
        else ""
    )
    return f"No provider key is set: set one of {names} in the environment or .env and restart.{tail}"


async def unreachable(policy: Policy, environ: Mapping[str, str], timeout_s: float = 0.5) -> list[str]:
    """The keyless deployments' base URLs that refuse a TCP connection (start-up check)."""
    out = []
    for dep in policy.deployments:
        if dep.api_key_env:
            continue
        url = urlsplit(dep.api_base)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            async with asyncio.timeout(timeout_s):
                _, writer = await asyncio.open_connection(url.hostname, port)
            writer.close()
        except (OSError, TimeoutError):
            out.append(dep.api_base)
    return out
