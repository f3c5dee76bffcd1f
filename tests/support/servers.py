"""Run ASGI apps as real uvicorn servers on loopback, in background threads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadedServer:
    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False, lifespan="on", loop="asyncio", **config
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serving(app: Any, **config: Any) -> Iterator[ThreadedServer]:
    server = ThreadedServer(app, **config).start()
    try:
        yield server
    finally:
        server.stop()


def provider_environ(upstream_url: str) -> dict[str, str]:
    """Point every provider of policies/models.yaml at one fake upstream, with test keys."""
    return {
        "OPENAI_BASE_URL": f"{upstream_url}/v1",
        "ANTHROPIC_BASE_URL": upstream_url,
        "GEMINI_API_BASE": upstream_url,
        "TOGETHER_BASE_URL": f"{upstream_url}/v1",
        "OLLAMA_HOST": upstream_url,
        "OPENAI_API_KEY": "sk-test-openai-0123456789abcdef",
        "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
        "GEMINI_API_KEY": "gm-test-0123456789abcdef",
        "TOGETHER_API_KEY": "tg-test-0123456789abcdef",
    }
