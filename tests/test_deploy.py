"""deploy/ and docker-compose.yml: promtool checks on the shipped config, rules and a real
scrape; every metric a dashboard panel or alert queries is exported; compose and Kubernetes
manifests parse and point at files that exist; the image is slim, non-root and health-checked.

promtool runs when installed (`make test` installs it via scripts/install-tools.sh); with
CI=true a missing promtool is a failure, not a skip."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from proxy.observe.metrics import Metrics
from tests.support.live_metrics import served_scrape

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROM = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
K8S = DEPLOY / "k8s"
DASHBOARD = GRAFANA / "autoroute.json"

APP_ENV = [
    "AUTOROUTE_HOST",
    "AUTOROUTE_PORT",
    "AUTOROUTE_POLICY_DIR",
    "REDIS_URL",
    "AUTOROUTE_MASTER_KEY",
    "AUTOROUTE_METRICS_PORT",
    "AUTOROUTE_WORKERS",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "TOGETHER_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_BASE",
    "TOGETHER_BASE_URL",
    "OLLAMA_HOST",
]
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


# ── docker compose ───────────────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for vol in service.get("volumes", []):
        src, dst = vol.split(":")[:2]
        if src.startswith((".", "/")):
            mounts.append((src, dst))
    return mounts


def test_compose_services_and_referenced_files(compose: dict[str, Any]) -> None:
    services = compose["services"]
    proxies = sorted(name for name, s in services.items() if s.get("build"))
    assert len(proxies) >= 2, "two proxy replicas"
    assert {"redis", "prometheus", "grafana"} <= set(services)
    host_ports = set()
    for name in proxies:
        s = services[name]
        context = ROOT / s["build"]["context"]
        assert (context / s["build"]["dockerfile"]).is_file()
        assert s["environment"]["REDIS_URL"].startswith("redis://redis:")
        assert s["command"][:2] == ["autoroute", "serve"] and "0.0.0.0" in s["command"] and "8080" in s["command"]
        host_ports |= {p.split(":")[0] for p in s["ports"]}
        assert set(APP_ENV) <= set(s["environment"]), set(APP_ENV) - set(s["environment"])
        assert s["environment"]["AUTOROUTE_MASTER_KEY"] is None  # passed through, never baked in
    assert len(host_ports) == len(proxies)
    for name, s in services.items():
        for src, _ in _bind_mounts(s):
            assert (ROOT / src).exists(), f"{name} mounts {src}, which does not exist"
        for vol in s.get("volumes", []):
            src = vol.split(":")[0]
            if not src.startswith((".", "/")):
                assert src in compose.get("volumes", {}), f"{name}: named volume {src} is not declared"


def test_prometheus_scrapes_every_replica_and_finds_its_rules(compose: dict[str, Any]) -> None:
    services = compose["services"]
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "autoroute")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    proxies = {name for name, s in services.items() if s.get("build")}
    assert targets == {f"{name}:8080" for name in proxies}
    mounts = dict((dst, src) for src, dst in _bind_mounts(services["prometheus"]))
    config_dir = Path("/etc/prometheus")
    assert mounts[str(config_dir / "prometheus.yml")] == "./deploy/prometheus/prometheus.yml"
    for rule_file in config["rule_files"]:
        src = mounts.get(str(config_dir / rule_file))
        assert src and (ROOT / src).is_file(), f"rule file {rule_file} is not mounted next to prometheus.yml"


def test_grafana_provisioning_matches_mounts(compose: dict[str, Any]) -> None:
    mounts = dict((dst, src) for src, dst in _bind_mounts(compose["services"]["grafana"]))
    prov_src = mounts["/etc/grafana/provisioning"]
    assert (ROOT / prov_src / "datasources").is_dir() and (ROOT / prov_src / "dashboards").is_dir()
    provider = yaml.safe_load((ROOT / prov_src / "dashboards/autoroute.yml").read_text())["providers"][0]
    dashboards_dir = provider["options"]["path"]
    mounted = [src for dst, src in mounts.items() if dst.startswith(dashboards_dir + "/") and dst.endswith(".json")]
    assert mounted == ["./deploy/grafana/autoroute.json"]
    ds = yaml.safe_load((ROOT / prov_src / "datasources/prometheus.yml").read_text())["datasources"][0]
    assert ds["url"] == "http://prometheus:9090"


# ── Dockerfile ───────────────────────────────────────────────────────────────────────
def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines() if ln.strip() and not ln.strip().startswith("#")]
    froms = [ln.split()[1] for ln in lines if ln.startswith("FROM ")]
    assert froms and all(f == "python:3.11-slim" for f in froms)
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    last_from = max(i for i, ln in enumerate(lines) if ln.startswith("FROM "))
    assert max(i for i, ln in enumerate(lines) if ln.startswith("USER ")) > last_from  # the runtime stage
    health = next(ln for ln in lines if ln.startswith("HEALTHCHECK "))
    assert "/healthz" in health
    assert any("pip install" in ln and "-c constraints.txt" in ln for ln in lines)
    cmd = next(ln for ln in reversed(lines) if ln.startswith("CMD "))
    assert json.loads(cmd[4:]) == ["autoroute", "serve", "--host", "0.0.0.0", "--port", "8080"]
    copies = [ln.split()[1:-1] for ln in lines if ln.startswith("COPY ") and "--from=" not in ln]
    sources = [s for c in copies for s in c if not s.startswith("--")]
    assert "policies" in sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    allowed = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.startswith("!")]
    for needed in ("pyproject.toml", "constraints.txt", "proxy/", "policies/"):
        assert f"!{needed}" in allowed, f".dockerignore must let {needed} into the build context"


# ── Kubernetes ───────────────────────────────────────────────────────────────────────
def k8s_docs() -> dict[str, list[dict[str, Any]]]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        docs[path.name] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for docs in k8s_docs().values() for d in docs if d.get("kind") == kind]


def test_k8s_manifests_parse_and_kustomization_resources_exist() -> None:
    docs = k8s_docs()
    assert docs
    for name, items in docs.items():
        for d in items:
            assert {"apiVersion", "kind"} <= set(d), name
            if d["kind"] != "Kustomization":
                assert d["metadata"]["name"], name
    kustomization = docs["kustomization.yaml"][0]
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "secret.example.yaml" not in kustomization["resources"]  # an apply must never overwrite real keys
    listed = set(kustomization["resources"]) | {"kustomization.yaml", "secret.example.yaml"}
    assert set(docs) == listed, f"manifests not in kustomization.yaml: {set(docs) - listed}"


def test_k8s_deployment() -> None:
    [dep] = _by_kind("Deployment")
    assert dep["spec"]["replicas"] >= 2
    pod = dep["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["command"] == ["autoroute", "serve", "--host", "0.0.0.0", "--port", "8080"]
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    configmaps = {d["metadata"]["name"]: d for d in _by_kind("ConfigMap")}
    secrets = {d["metadata"]["name"]: d for d in _by_kind("Secret")}
    for source in c["envFrom"]:
        if "configMapRef" in source:
            assert source["configMapRef"]["name"] in configmaps
        else:
            assert source["secretRef"]["name"] in secrets
    for vol in pod["volumes"]:
        if "configMap" in vol:
            assert vol["configMap"]["name"] in configmaps
    mounts = {v["name"]: v["mountPath"] for v in c["volumeMounts"]}
    env = configmaps["autoroute-env"]["data"]
    assert mounts["policies"] == env["AUTOROUTE_POLICY_DIR"]
    # Service and HPA point at this Deployment
    [svc] = [s for s in _by_kind("Service") if s["metadata"]["name"] == "autoroute"]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["targetPort"] in {p["name"] for p in c["ports"]}
    [hpa] = _by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 2
    redis_host = env["REDIS_URL"].split("//")[1].split(":")[0]
    assert redis_host in {s["metadata"]["name"] for s in _by_kind("Service")}


def test_k8s_env_and_secret_placeholders() -> None:
    text = (K8S / "configmap.yaml").read_text() + (K8S / "secret.example.yaml").read_text()
    for name in APP_ENV:
        assert re.search(rf"\b{name}\b", text), f"{name} is not configurable in deploy/k8s"
    [secret] = _by_kind("Secret")
    data = secret["stringData"]
    assert {"AUTOROUTE_MASTER_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "TOGETHER_API_KEY"} <= set(data)
    assert all(v == "" for k, v in data.items() if k.endswith("_API_KEY"))
    assert "REPLACE" in data["AUTOROUTE_MASTER_KEY"]


def test_no_real_secrets_in_deploy_files() -> None:
    pattern = re.compile(r"(sk-[A-Za-z0-9_-]{20,}|sk-ant-[A-Za-z0-9_-]{10,}|AIza[0-9A-Za-z_-]{30,}|AKIA[0-9A-Z]{16})")
    for path in [*DEPLOY.rglob("*"), ROOT / "docker-compose.yml"]:
        if path.is_file():
            assert not pattern.search(path.read_text(errors="replace")), path


def test_policies_configmap_in_sync() -> None:
    r = subprocess.run([sys.executable, str(K8S / "sync_policies.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    [cm] = [d for d in _by_kind("ConfigMap") if d["metadata"]["name"] == "autoroute-policies"]
    on_disk = {p.name: p.read_text() for p in (ROOT / "policies").glob("*.y*ml")}
    assert cm["data"] == on_disk


def test_metrics_reference_lists_every_family() -> None:
    """deploy/README.md documents every series the proxy exports, and nothing it does not."""
    text = (DEPLOY / "README.md").read_text()
    documented = set(re.findall(r"^\| `(autoroute_\w+)` \|", text, flags=re.M))
    m = Metrics(CollectorRegistry())
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in m.registry.collect()}
    assert documented == exported


def test_compose_file_is_valid_for_compose_v1_and_v2(compose: dict[str, Any]) -> None:
    """Issue 11 item 14: the top-level `name:` was refused by docker-compose v1. File format 2.4
    has everything the file uses and only these top-level keys."""
    assert str(compose.get("version")) == "2.4"
    assert set(compose) <= {"version", "services", "volumes", "networks", "x-proxy"}
    for name, service in compose["services"].items():
        for dep in (service.get("depends_on") or {}).values() if isinstance(service.get("depends_on"), dict) else ():
            assert dep.get("condition") in ("service_started", "service_healthy"), name
