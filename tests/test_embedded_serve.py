"""`autoroute serve` without REDIS_URL (the embedded store, in-process admission), end to end in
its own process: a burst holds the key's rpm exactly, usage and spend read back through the
admin API, a budget refuses with its 429, and a key with a huge budget is served (it was a 500)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.support.burst import ADMIN, burst, create_key, proxy_process
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import serving

ASK = {"model": "openai/gpt-4.1-nano", "messages": [{"role": "user", "content": "hi"}]}


def _chat(url: str, key: object) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=ASK, headers={"authorization": f"Bearer {key}"}, timeout=20)


def test_embedded_serve_holds_rpm_budgets_and_reads_usage(tmp_path: Path) -> None:
    with serving(FakeUpstream()) as up, proxy_process(None, up.url, policy_copy(tmp_path / "p")) as url:
        made = create_key(url, rpm=5, budget_usd_day=1.0)
        result = burst([url], str(made["key"]), 50)
        assert result.count(200) == 5 and result.count(429) == 45, result
        assert set(result.codes) == {"rate_limit_exceeded"}
        deadline = time.monotonic() + 5
        while True:  # settlement runs after the response
            usage = httpx.get(f"{url}/admin/keys/{made['id']}/usage", headers=ADMIN).json()
            if usage["day"]["requests"] == 5 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert usage["day"]["requests"] == usage["requests_in_window"] == 5 and usage["reserved_cost_usd"] == 0
        assert 0 < usage["day"]["cost_usd"] == usage["total_cost_usd"] and usage["budget_remaining_usd"] < 1.0
        assert _chat(url, made["key"]).status_code == 429  # the window is full
        reset = httpx.post(f"{url}/admin/keys/{made['id']}/reset", headers=ADMIN, timeout=10)
        assert reset.status_code == 200, reset.text
        assert _chat(url, made["key"]).status_code == 200  # the reset emptied the in-process window and spend
        usage = httpx.get(f"{url}/admin/keys/{made['id']}/usage", headers=ADMIN).json()
        assert usage["requests_in_window"] == 1 and usage["day"]["requests"] <= 1
        poor = create_key(url, budget_usd_day=1e-7)  # less than one request's estimate
        refused = _chat(url, poor["key"])
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded", refused.text
        rich = create_key(url, budget_usd_day=1e300, budget_usd_total=5e10)
        served = _chat(url, rich["key"])
        assert served.status_code == 200, served.text
