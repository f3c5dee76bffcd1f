"""The bench's tables: one row per gateway and scenario, and the issue's targets as ratios."""

from __future__ import annotations

from typing import Any


def _by(rows: list[dict], conc: int) -> dict[str, dict]:
    return {f"{r['gateway']}/{r['scenario']}": r for r in rows if r["concurrency"] == conc}


def table(rows: list[dict]) -> str:
    """CPU ms/request and req/s at c=16, p50 and added p50 at c=1, RSS; full rows are in the JSON."""
    concs = sorted({r["concurrency"] for r in rows})
    low, high = concs[0], concs[-1]
    at_low, at_high = _by(rows, low), _by(rows, high)
    head = (
        f"| gateway / scenario | CPU ms/request (c={high}) | req/s (c={high}) | p50 ms (c={low}) | added p50 ms (c={low}) | RSS MB | verified |\n"
        "|---|---:|---:|---:|---:|---:|:---:|"
    )
    lines = [head]
    for name, hi in at_high.items():
        lo = at_low.get(name, hi)
        ok = {None: "n/a", True: "yes", False: "NO"}[hi["verified"] if lo["verified"] is None else hi["verified"] and lo["verified"]]
        lines.append(
            f"| {name} | {hi['cpu_ms_per_request']:.3f} | {hi['rps']:.0f} | {lo['p50_ms']:.2f} | {lo['added_p50_ms']:.2f} | {hi['rss_mb']:.0f} | {ok} |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict], soak: dict[str, Any] | None = None) -> str:
    """The issue-15 targets, each as a ratio of figures from this one run."""
    concs = sorted({r["concurrency"] for r in rows})
    low, high = concs[0], concs[-1]
    cpu = {k: r["cpu_ms_per_request"] for k, r in _by(rows, high).items()}
    added = {k: r["added_p50_ms"] for k, r in _by(rows, low).items()}
    portkey = cpu.get("portkey/named-openai")
    out = [f"targets (CPU at c={high}, added p50 at c={low}):"]

    def ratio(label: str, a: str, b: str | None, limit: float, below: bool = True, value: float | None = None) -> None:
        x, y = cpu.get(a), (cpu.get(b) if b else value)
        if x is None or not y:
            return
        r = x / y if below else y / x
        out.append(
            f"  {label:<58} {r:5.2f}x  ({'met' if (r <= limit if below else r >= limit) else 'NOT met'}, target {'<=' if below else '>='} {limit})"
        )

    if portkey:
        for s in ("auto-gemini", "auto-anthropic"):
            ratio(f"autoroute/{s} CPU / Portkey named-openai", f"autoroute/{s}", "portkey/named-openai", 1.0)
        ratio("autoroute/named-openai CPU / Portkey named-openai", "autoroute/named-openai", "portkey/named-openai", 0.6)
    ratio("LiteLLM named-openai CPU / autoroute/auto-gemini", "autoroute/auto-gemini", "litellm/named-openai", 8.0, below=False)
    ratio("autoroute/auto-embedded CPU / autoroute/auto-gemini (real Redis)", "autoroute/auto-embedded", "autoroute/auto-gemini", 1.1)
    ratio("autoroute/stream-openai CPU / autoroute/named-openai", "autoroute/stream-openai", "autoroute/named-openai", 1.3)
    for s in ("auto-gemini", "auto-anthropic"):
        if f"autoroute/{s}" in added:
            v = added[f"autoroute/{s}"]
            out.append(f"  {'added p50 autoroute/' + s:<58} {v:5.2f} ms ({'met' if v <= 0.8 else 'NOT met'}, target <= 0.8)")
    if soak:
        end, growth = soak["rss_mb_at_end"], soak["growth_last_half_mb"]
        met = end <= 200 and growth <= 2
        out.append(
            f"  {'RSS after ' + str(soak['requests']) + ' auto requests':<58} {end:.0f} MB, +{growth} MB last half ({'met' if met else 'NOT met'})"
        )
    return "\n".join(out)
