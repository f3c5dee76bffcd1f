"""deploy/prometheus and deploy/grafana: promtool checks on the shipped config, rules and a real
scrape; every metric a dashboard panel or alert queries is exported, with labels it has; every
declared family is fed by a proxy serving requests; deploy/README.md lists every family.
(Compose, Kubernetes and the image: tests/test_deploy_manifests.py.)

promtool runs when installed (`make test` installs it via scripts/install-tools.sh); with
CI=true a missing promtool is a failure, not a skip."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from proxy.observe.metrics import Metrics
from tests.support.deploy_paths import DEPLOY, PROM, ROOT
from tests.support.live_metrics import served_scrape

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "autoroute.json"

# Metrics that alerts may query although proxy/observe/metrics.py does not export them.
PROMETHEUS_OWN = {"up"}


# ── a real scrape: a proxy that served traffic (tests/support/live_metrics.py) ──────────
#: Series that exist only when something fails (the limits store, the decision stream);
#: their own tests make the failure happen (test_limits_budgets, test_replicas, test_decisions).
FAILURE_ONLY = {"autoroute_limiter_store_errors", "autoroute_decision_log_errors"}


@pytest.fixture(scope="module")
def scrape(environ: dict[str, str], upstream_server: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    return served_scrape(environ, upstream_server.server.config.app, tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="module")
def exported(scrape: str) -> set[str]:
    """Series names in the scrape, plus the failure-only counters' (declared, not yet moved)."""
    names = {s.name for fam in text_string_to_metric_families(scrape) for s in fam.samples}
    return names | {f"{name}_total" for name in FAILURE_ONLY}


def declared_labels() -> dict[str, set[str]]:
    """Label names of each series as the Metrics class declares them (for FAILURE_ONLY)."""
    out: dict[str, set[str]] = {}
    for collector, names in Metrics(CollectorRegistry()).registry._collector_to_names.items():  # type: ignore[attr-defined]
        for name in names:
            out[name] = set(getattr(collector, "_labelnames", ()))
    return out


def test_every_metric_family_is_fed_by_a_proxy_serving_requests(scrape: str) -> None:
    """No setter is called here: every family the proxy declares must have been moved by the
    traffic itself (a counter or histogram above zero, a gauge set) — a family nothing in
    production feeds (a budget gauge never set, a latency never observed) fails."""
    starved = []
    for fam in text_string_to_metric_families(scrape):
        if fam.name.endswith("_created") or fam.name in FAILURE_ONLY:
            continue
        if fam.type == "gauge":
            fed = bool(fam.samples)
        else:
            fed = any(s.value > 0 for s in fam.samples if s.name.endswith(("_total", "_count")) or s.name == fam.name)
        if not fed:
            starved.append(fam.name)
    assert starved == [], f"declared but never fed by a proxy serving requests: {starved}"


# ── promtool ─────────────────────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail("promtool is required in CI (scripts/install-tools.sh installs the Debian package prometheus)")
    pytest.skip("promtool not installed (make tools)")


def run(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, cwd=cwd, timeout=60)


def test_promtool_check_config(promtool: str) -> None:
    r = run(promtool, "check", "config", "deploy/prometheus/prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 rule files found" in r.stdout + r.stderr  # alerts.yml was found and checked too


def test_promtool_check_rules(promtool: str) -> None:
    r = run(promtool, "check", "rules", "deploy/prometheus/alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_alert_unit_tests(promtool: str) -> None:
    r = run(promtool, "test", "rules", "deploy/prometheus/alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_check_metrics_on_a_real_render(promtool: str, scrape: str) -> None:
    r = run(promtool, "check", "metrics", stdin=scrape)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Every panel query, with Grafana's variables filled in, parses as a recording rule."""
    rules = [{"record": f"autoroute:dashboard_query_{i}:value", "expr": grafana_to_promql(e)} for i, e in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = run(promtool, "check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


# ── dashboard and alerts query only exported metrics ─────────────────────────────────
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, keywords or label names)."""
    expr = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)[^)]*\)", r"\1", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w$.])[A-Za-z_:][\w:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group(0).lower() in _KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def test_metric_name_parser() -> None:
    assert metric_names('histogram_quantile(0.99, sum by (le, model) (rate(a_bucket{x="y(z)"}[$__rate_interval])))') == {"a_bucket"}
    assert metric_names("min by (key) (b) / max(c > 0) < 0.1 and on(key) d or vector(0)") == {"b", "c", "d"}
    assert metric_names("label_values(e_total, instance)") == {"e_total"}


def _walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in _walk_panels(dashboard()["panels"]) for t in p.get("targets", []) if t.get("expr")]
    assert len(exprs) >= 30
    return exprs


def grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "5m").replace("$__range", "1d").replace("$instance", ".*")


def alert_exprs() -> list[str]:
    groups = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for g in groups for rule in g["rules"]]


def test_dashboard_and_alerts_query_only_exported_metrics(exported: set[str]) -> None:
    board = dashboard()
    var_queries = [
        v["query"]["query"] if isinstance(v["query"], dict) else v["query"] for v in board["templating"]["list"] if v["type"] == "query"
    ]
    queried: dict[str, set[str]] = {}
    for source, exprs in (("dashboard", dashboard_exprs() + var_queries), ("alerts", alert_exprs())):
        for expr in exprs:
            for name in metric_names(expr):
                queried.setdefault(name, set()).add(source)
    missing = {n: s for n, s in queried.items() if n not in exported and n not in PROMETHEUS_OWN}
    assert not missing, f"queried but not exported by proxy/observe/metrics.py: {missing}"
    # the operator's morning questions are all on the board
    board_names = {n for e in dashboard_exprs() for n in metric_names(e)}
    for needed in (
        "autoroute_cost_usd_total",
        "autoroute_key_cost_usd_total",
        "autoroute_routing_decisions_total",
        "autoroute_proxy_overhead_seconds_bucket",
        "autoroute_upstream_duration_seconds_bucket",
        "autoroute_upstream_errors_total",
        "autoroute_fallbacks_total",
        "autoroute_limit_rejections_total",
        "autoroute_deployment_cooldown_state",
    ):
        assert needed in board_names, needed


def label_names(expr: str) -> set[str]:
    """Label names an expression groups by or matches on."""
    names: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        names |= {n.strip() for n in group.split(",") if n.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        names |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    return names


def test_dashboard_and_alerts_use_existing_labels(scrape: str) -> None:
    labels_of: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(scrape):
        for sample in fam.samples:
            labels_of.setdefault(sample.name, set()).update(sample.labels)
    declared = declared_labels()
    for name in FAILURE_ONLY:
        labels_of.setdefault(f"{name}_total", declared[f"{name}_total"])
    target_labels = {"instance", "job"}  # added by Prometheus at scrape time
    for expr in dashboard_exprs() + alert_exprs():
        metrics = metric_names(expr) - PROMETHEUS_OWN
        absent = metrics - labels_of.keys()
        assert not absent, f"{expr}: {sorted(absent)} not in the scrape of a proxy that served requests"
        available = set().union(*(labels_of[m] for m in metrics)) | target_labels if metrics else target_labels
        assert label_names(expr) <= available, f"{expr}: unknown labels {label_names(expr) - available}"


def test_dashboard_layout_and_datasource() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    ds_var = next(v for v in board["templating"]["list"] if v["type"] == "datasource")
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert ds_var["current"]["value"] == provisioned["uid"]
    cells: set[tuple[int, int]] = set()
    ids = set()
    for panel in _walk_panels(board["panels"]):
        assert panel["id"] not in ids
        ids.add(panel["id"])
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in ("${datasource}", provisioned["uid"]), panel["title"]
            assert panel["targets"], panel["title"]
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_metrics_reference_lists_every_family() -> None:
    """deploy/README.md documents every series the proxy exports, and nothing it does not."""
    text = (DEPLOY / "README.md").read_text()
    documented = set(re.findall(r"^\| `(autoroute_\w+)` \|", text, flags=re.M))
    m = Metrics(CollectorRegistry())
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in m.registry.collect()}
    assert documented == exported
