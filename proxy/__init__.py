"""autoroute: an OpenAI-compatible proxy that routes each chat request to the cheapest capable model."""

from proxy import offline as _offline  # noqa: F401  (must run before litellm is imported)

__version__ = "0.1.0"
