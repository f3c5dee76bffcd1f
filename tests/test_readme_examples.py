"""The README's routing examples reproduce as printed (issue 11 item 13): every row of its
examples table, and the x-autoroute-* header block of the "Capital of France?" snippet, are
re-run through classify + select with every model available (`autoroute route
--all-available`). The README is the source: when the router changes, this test says which
rows to update (old README: "Capital of France?" printed complexity 1, the router said 2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.policy import Policy
from proxy.routing.classify import classify
from proxy.routing.options import parse_route_options
from proxy.routing.selection import select

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def table_rows() -> list[tuple[str, str, int, str]]:
    section = README[README.index('<a id="routing-examples"></a>') :]
    section = section[section.index("| prompt |") :].split("\n\n", 1)[0]
    rows = []
    for line in section.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((cells[0], cells[1], int(cells[2]), cells[3]))
    return rows


def route(policy: Policy, prompt: str) -> tuple[str, int, str, str]:
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    c = classify(body)
    plan = select(c, policy, parse_route_options("auto", body, {}), frozenset(policy.models))
    return c.category, c.complexity, plan.primary, plan.reason


def test_the_table_has_the_examples() -> None:
    rows = table_rows()
    assert len(rows) >= 6 and {r[1] for r in rows} >= {"qa_retrieval", "complex_coding", "deep_reasoning"}


@pytest.mark.parametrize(("prompt", "category", "complexity", "model"), table_rows(), ids=lambda v: str(v)[:30])
def test_readme_example_routes_as_printed(policy: Policy, prompt: str, category: str, complexity: int, model: str) -> None:
    got = route(policy, prompt)[:3]
    assert got == (category, complexity, model), f"README.md says {prompt!r} -> {category}/{complexity} -> {model}; the router says {got}"


def test_readme_header_block_matches_the_snippet(policy: Policy) -> None:
    snippet = re.search(r'"content": "([^"]+)"\}\]\)\nprint\(reply.model', README)
    assert snippet is not None
    headers = dict(re.findall(r"^(x-autoroute-[a-z-]+): (\S.*?)(?:\s{2,}\(.*\))?$", README, re.M))
    category, complexity, model, reason = route(policy, snippet.group(1))
    assert (headers["x-autoroute-category"], int(headers["x-autoroute-complexity"]), headers["x-autoroute-model"]) == (
        category,
        complexity,
        model,
    )
    assert headers["x-autoroute-reason"] == reason
