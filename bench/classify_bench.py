"""Benchmark: classify + select time per request (a script, not a test).

    PYTHONPATH=$PWD python bench/classify_bench.py [--rounds 200]

Prints p50 / p99 / max in microseconds for
  * short prompts: every request of tests/eval/requests.jsonl under 4k tokens, each timed
    `--rounds` times, interleaved, and six generated 2k-4k-token prompts (p99 <= 250 us);
  * a 100k-token document (a generated contract with a summarise instruction; p99 <= 2 ms).
Each sample times what the pipeline runs per request: one `classify(body, router, input_tokens)`
(the heuristic, then the trained router's features, logits and calibrated adequacies) plus one
`select(...)` (the quality dial), with perf_counter_ns (`--cpu`: process_time_ns, the process's
CPU time, for a machine others load: preemption is then left out); the garbage collector stays
on, so its pauses are in the figures (after start-up's `settle_heap`, as in the server: the
policy and the router's tables are frozen out of full collections). The input-token count is made before, as the pipeline's TokenCounter
does (once per new text, cached, long text in a worker thread; proxy/routing/tokens.py): exact
tiktoken counting of a 100k-token document costs ~10-30 ms of CPU and is printed on its own line.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from proxy.policy import load_policy  # noqa: E402
from proxy.request.appstate import settle_heap  # noqa: E402
from proxy.routing.classify import classify  # noqa: E402
from proxy.routing.learned import router_for  # noqa: E402
from proxy.routing.options import RouteOptions  # noqa: E402
from proxy.routing.selection import select  # noqa: E402
from proxy.routing.tokens import estimate_input_tokens  # noqa: E402
from tests.eval.docs import make_document  # noqa: E402
from tests.eval.run_eval import load_requests  # noqa: E402


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _time(bodies: list[dict], rounds: int, policy, available, clock=time.perf_counter_ns) -> list[float]:  # type: ignore[no-untyped-def]
    options = RouteOptions()
    router = router_for(policy)
    tokens = [estimate_input_tokens(body) for body in bodies]  # the pipeline's TokenCounter: once per request, cached
    for body, n in zip(bodies, tokens, strict=True):  # warm caches (regex) outside the measurement
        select(classify(body, router, n), policy, options, available)
    samples = []
    for _ in range(rounds):
        for body, n in zip(bodies, tokens, strict=True):
            start = clock()
            select(classify(body, router, n), policy, options, available)
            samples.append((clock() - start) / 1000)
    return samples


def _count_time(body: dict, rounds: int) -> list[float]:  # type: ignore[type-arg]
    """Exact token counting of a body, uncached (the pipeline counts once per new text, off the loop when long)."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        estimate_input_tokens(body)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def _line(name: str, samples: list[float]) -> str:
    return (
        f"{name:34s} n={len(samples):6d}  p50 {_percentile(samples, 0.5):8.1f} us  "
        f"p99 {_percentile(samples, 0.99):8.1f} us  max {max(samples):8.1f} us"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="classify+select latency")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--heuristic", action="store_true", help="without the trained router (heuristic + matrix)")
    parser.add_argument(
        "--cpu", action="store_true", help="time each sample in this process's CPU time (a busy machine's preemption left out)"
    )
    args = parser.parse_args(argv)
    policy = load_policy(ROOT / "policies", {})
    if args.heuristic:
        policy = replace(policy, router_artifact=None)
    available = frozenset(policy.models)
    short = [r["body"] for r in load_requests() if classify(r["body"]).estimated_input_tokens < 4000]
    near_limit = [
        {"model": "auto", "messages": [{"role": "user", "content": f"{ask}\n\n{make_document(kind, words, 7)}"}]}
        for kind, words, ask in (
            ("paper_en", 2600, "Summarise the method and the main result of this paper."),
            ("code_py", 2200, "Find the bug in this module and explain the fix."),
            ("report_zh", 2000, "请总结以下报告。"),
            ("contract_de", 2100, "Welche Kündigungsfristen nennt dieser Vertrag?"),
            ("log", 850, "What went wrong in these logs?"),
            ("transcript_es", 2600, "Resume las decisiones de esta reunión."),
        )
    ]
    near_limit = [b for b in near_limit if 2000 <= classify(b).estimated_input_tokens < 4000]
    doc = make_document("contract_en", 84_000, 42)  # ~100k tokens
    big = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "You are a careful legal analyst."},
            {"role": "user", "content": "Summarise the obligations of each party in the agreement below.\n\n" + doc},
        ],
    }
    tokens = classify(big).estimated_input_tokens
    router_for(policy)
    settle_heap()  # as the server does once start-up has built the policy and the router (AppState.startup)
    clock = time.process_time_ns if args.cpu else time.perf_counter_ns
    short_samples = _time(short, args.rounds, policy, available, clock)
    near_samples = _time(near_limit, args.rounds, policy, available, clock)
    big_samples = _time([big], max(50, args.rounds // 2), policy, available, clock)
    print(_line(f"short prompts ({len(short)} requests)", short_samples) + "   target p99 <= 250 us")
    print(_line(f"2k-4k-token prompts ({len(near_limit)} requests)", near_samples) + "   target p99 <= 250 us")
    print(_line(f"document ({tokens:,} tokens)", big_samples) + "   target p99 <= 2000 us")
    print(_line("  (token count of that document)", _count_time(big, 20)) + "   not in the figures above: counted once per new text")
    print(f"router: {'heuristic only' if args.heuristic else policy.router_artifact.digest[:12] if policy.router_artifact else 'none'}")
    ok = max(_percentile(short_samples, 0.99), _percentile(near_samples, 0.99)) <= 250 and _percentile(big_samples, 0.99) <= 2000
    print("targets met" if ok else "TARGETS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
