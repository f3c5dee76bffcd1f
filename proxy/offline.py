"""Keep the process offline: no network call except to configured upstreams.

Must run before litellm (or tiktoken) is imported anywhere. litellm otherwise fetches its
cost map from the internet at import, loads `.env` from the working directory by itself,
and its token counter may download Hugging Face tokenizers (a 20 s stall offline).
tiktoken is pointed at the encodings litellm ships, so token counting never downloads.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

_FORCED = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # use the bundled cost map, never fetch it
    "LITELLM_MODE": "PRODUCTION",  # do not load .env by itself
    "HF_HUB_OFFLINE": "1",  # no tokenizer downloads
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}


def bundled_tiktoken_dir() -> str | None:
    """The directory of tiktoken encodings that litellm ships (cl100k_base, o200k_base)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return str(path) if path.is_dir() else None


def apply() -> None:
    for name, value in _FORCED.items():
        os.environ[name] = value
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        cache = bundled_tiktoken_dir()
        if cache:
            os.environ["TIKTOKEN_CACHE_DIR"] = cache


apply()
