"""Instructions per classify+select, repeatable under load (a script, not a test).

    PYTHONPATH=$PWD python bench/routing_ir.py            # runs itself twice under valgrind's callgrind

Runs the loop of bench/classify_bench.py (one `classify(body, router, input_tokens)` plus one
`select(...)` per short eval prompt) for 0 and for ROUNDS rounds under callgrind and prints the
difference / (ROUNDS * prompts): the instructions one classify+select costs, start-up left out
(PYTHONHASHSEED=0 in both runs: with random str hashes the figure moves by a few per cent).
`PART=heur|sel|pred` measures the heuristic classifier, select, or the router's predict alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ROUNDS = 4


def _loop(rounds: int) -> None:
    from proxy.policy import load_policy
    from proxy.routing.classify import classify
    from proxy.routing.learned import router_for
    from proxy.routing.options import RouteOptions
    from proxy.routing.selection import select
    from proxy.routing.textscan import read_conversation
    from proxy.routing.tokens import estimate_input_tokens
    from tests.eval.run_eval import load_requests

    policy = load_policy(ROOT / "policies", {})
    available, router, options = frozenset(policy.models), router_for(policy), RouteOptions()
    short = [r["body"] for r in load_requests() if classify(r["body"]).estimated_input_tokens < 4000]
    tokens = [estimate_input_tokens(b) for b in short]
    learned = [classify(b, router, n) for b, n in zip(short, tokens, strict=True)]
    heuristic = [classify(b, None, n) for b, n in zip(short, tokens, strict=True)]
    convs = [read_conversation(b["messages"]) for b in short]
    part = os.environ.get("PART", "all")
    for _ in range(rounds):
        if part == "heur":
            for b, n in zip(short, tokens, strict=True):
                classify(b, None, n)
        elif part == "sel":
            for c in learned:
                select(c, policy, options, available)
        elif part == "pred" and router is not None:
            for conv, b, h in zip(convs, short, heuristic, strict=True):
                router.predict(conv, b.get("tools") or [], b, h)
        else:
            for b, n in zip(short, tokens, strict=True):
                select(classify(b, router, n), policy, options, available)
    print(len(short))


def _instructions(rounds: int, out: Path) -> tuple[int, int]:
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__, "--loop", str(rounds)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # str hashes (set orders, dict probes) the same in both runs
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    assert found is not None
    return int(found.group(1)), int(proc.stdout.split()[-1])


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--loop":
        _loop(int(sys.argv[2]))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        start, _ = _instructions(0, Path(tmp) / "cg.0")
        end, prompts = _instructions(ROUNDS, Path(tmp) / f"cg.{ROUNDS}")
    print(
        f"{os.environ.get('PART', 'all')}: {round((end - start) / (ROUNDS * prompts)):,} instructions per classify+select ({prompts} prompts)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
