"""Per-request cost of autoroute's metrics and decision record (a benchmark, not a test).

    PYTHONPATH=. .venv/bin/python scripts/bench_metrics.py               # single process
    PYTHONPATH=. .venv/bin/python scripts/bench_metrics.py --multiprocess  # mmap files (several workers)

One simulated request makes the calls the pipeline makes for an auto-routed request that
succeeds on its first attempt: request_started, observe_route, observe_store (reserve),
observe_upstream_attempt, observe_usage, observe_store (settle), set_budget_remaining,
observe_request. The decision record (JSON + queue, logging at INFO to a null handler) is
timed separately. Prints mean, p50 and p99 in microseconds.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

if "--multiprocess" in sys.argv:  # must precede the first prometheus_client import
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="autoroute-bench-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], True)

import asyncio
import logging
import statistics
import time

from prometheus_client import CollectorRegistry

from proxy.observe.decisions import DecisionRecord, Decisions
from proxy.observe.export import multiprocess_dir
from proxy.observe.metrics import Metrics

MODELS = ["openai/gpt-4.1", "openai/gpt-4.1-nano", "anthropic/claude-sonnet-4", "google/gemini-2.5-flash"]
CATEGORIES = ["complex_coding", "classification", "qa_retrieval", "text_generation"]
N = 50_000
ROUNDS = 200  # timing granularity: N / ROUNDS requests per sample


def one_request(m: Metrics, i: int) -> None:
    model, category = MODELS[i & 3], CATEGORIES[(i >> 2) & 3]
    m.request_started()
    m.observe_route(category=category, model=model, preference="balanced", confidence=0.82)
    m.observe_store("reserve", 0.0004)
    m.observe_upstream_attempt(deployment="openai", provider="openai", model=model, seconds=1.3, ttft_s=0.21)
    m.observe_usage(model=model, input_tokens=812, output_tokens=240, cost_usd=0.0035, estimated_cost_usd=0.004, key=f"team-{i & 7}")
    m.observe_store("settle", 0.0003)
    m.set_budget_remaining(f"team-{i & 7}", "day", 42.0, 50.0)
    m.observe_request(
        outcome="ok", status=200, total_s=1.31, upstream_s=1.3, category=category, model=model, preference="balanced", stream=True
    )


def per_request_us(fn, n: int = N) -> list[float]:
    per = n // ROUNDS
    samples = []
    for r in range(ROUNDS):
        start = time.perf_counter_ns()
        for i in range(r * per, (r + 1) * per):
            fn(i)
        samples.append((time.perf_counter_ns() - start) / per / 1000)
    return samples


def report(label: str, samples: list[float]) -> None:
    samples = sorted(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    print(
        f"{label:<48} mean {statistics.fmean(samples):6.1f} µs   p50 {statistics.median(samples):6.1f} µs"
        f"   p99 {p99:6.1f} µs   (per request, {N} requests)"
    )


async def bench_decisions() -> list[float]:
    class NullRedis:  # the writer task drains the queue; no Redis round trips are timed here
        def pipeline(self, transaction: bool = False):
            return self

        def xadd(self, *a, **k):
            return None

        async def execute(self):
            return []

    logger = logging.getLogger("bench.decision")
    logger.addHandler(logging.NullHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    d = Decisions(NullRedis(), kept=1000, logger=logger, secrets=["sk-not-a-real-key-123"])
    attempts = [{"model": "openai/gpt-4.1", "provider": "openai", "deployment": "openai", "status": 200, "seconds": 1.3}]

    def rec(i: int) -> None:
        d.record(
            DecisionRecord(
                decision_id=f"d-{i}",
                status=200,
                outcome="ok",
                key_name="team-a",
                category="complex_coding",
                complexity=3,
                chosen_model="openai/gpt-4.1",
                used_model="openai/gpt-4.1",
                plan=["openai/gpt-4.1"],
                reason="matrix default for complex_coding at complexity 3",
                attempts=attempts,
                input_tokens=812,
                output_tokens=240,
                cost_usd=0.0035,
                total_s=1.31,
                upstream_s=1.3,
            )
        )

    samples = []
    per = N // ROUNDS
    for r in range(ROUNDS):
        start = time.perf_counter_ns()
        for i in range(r * per, (r + 1) * per):
            rec(i)
        samples.append((time.perf_counter_ns() - start) / per / 1000)
        await asyncio.sleep(0)  # let the writer drain (not timed work on the request path)
        await d.flush()
    await d.aclose()
    return samples


def main() -> None:
    mode = "multiprocess (mmap)" if multiprocess_dir() else "single process"
    m = Metrics(CollectorRegistry(), models=MODELS, deployments=["openai"], key_name_labels=True)
    for i in range(2000):  # warm the label caches, as a running proxy has
        one_request(m, i)
    report(f"metrics, {mode}", per_request_us(lambda i: one_request(m, i)))
    report("decision record (orjson + log + enqueue)", asyncio.run(bench_decisions()))


if __name__ == "__main__":
    main()
