"""Run in a subprocess by tests/test_offline.py: install an audit hook that refuses every
connection and DNS lookup not on loopback, then import everything, count tokens and send
requests through the proxy to each kind of upstream. Prints every lookup and connection it saw
(`SEEN ["dns:127.0.0.1", "connect:127.0.0.1", ...]`, JSON) so the test can check each one, even
those whose refusal some library caught and swallowed; exit 0 = ok."""

from __future__ import annotations

import json
import sys

SEEN: list[str] = []
LOCAL = {"127.0.0.1", "localhost", "::1", None, ""}


def hook(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
        SEEN.append(f"dns:{host}")
        if host not in LOCAL:
            raise ConnectionRefusedError(f"offline test: DNS lookup of {host}")
    elif event == "socket.connect":
        address = args[1]
        host = address[0] if isinstance(address, tuple) else None  # a str/bytes address: a Unix socket
        SEEN.append(f"connect:{host}" if isinstance(address, tuple) else "unix:")
        if isinstance(address, tuple) and host not in LOCAL:
            raise ConnectionRefusedError(f"offline test: connection to {host}")


sys.addaudithook(hook)


def main() -> int:
    import httpx

    # proxy must come first: it sets the offline environment that litellm reads at import
    # isort: off
    import proxy  # noqa: F401
    import litellm  # noqa: F401  (import alone must not fetch the cost map)
    import tiktoken

    # isort: on
    from proxy.app import create_app
    from proxy.settings import Settings
    from tests.support.fake_upstream import FakeUpstream
    from tests.support.servers import provider_environ, serving

    tiktoken.get_encoding("cl100k_base").encode("token counting works offline")
    tiktoken.get_encoding("o200k_base").encode("and with the newer encoding")
    from litellm import token_counter

    token_counter(model="claude-sonnet-4-20250514", messages=[{"role": "user", "content": "hello"}])
    token_counter(model="meta-llama/Llama-4-Scout-17B-16E-Instruct", messages=[{"role": "user", "content": "hi"}])

    with serving(FakeUpstream()) as up:
        settings = Settings(_env_file=None, policy_dir=sys.argv[1], redis_url=None, master_key=None)
        app = create_app(settings, environ=provider_environ(up.url))
        with serving(app) as server:
            for model in (
                "openai/gpt-4.1",
                "anthropic/claude-sonnet-4",
                "google/gemini-2.5-flash",
                "deepseek/deepseek-r1",
                "ollama/qwen3:1.7b",
                "auto",
            ):
                for stream in (False, True):
                    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "What is the capital of France?"}]}
                    resp = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30)
                    if model != "auto" and resp.status_code != 200:
                        print(f"FAIL {model} stream={stream}: {resp.status_code} {resp.text[:200]}")
                        return 1
    print("SEEN", json.dumps(sorted(set(SEEN))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
