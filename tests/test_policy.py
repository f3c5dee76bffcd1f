"""Policy files: every shipped file loads, references hold, broken files fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxy.errors import PolicyError
from proxy.policy import FILES, load_policy
from proxy.policy.loader import expand_env
from tests.conftest import POLICIES
from tests.support.policies import policy_copy


def test_every_shipped_policy_file_loads_and_references_hold() -> None:
    files = sorted(p.name for p in POLICIES.glob("*.yaml"))
    assert "models.yaml" in files and set(files) <= set(FILES)
    policy = load_policy(POLICIES, {})
    ids = set(policy.models)
    for dep in policy.deployments:
        served = [m for m in policy.models.values() if dep.serves(m)]
        assert served, f"deployment {dep.id} serves no model"
        assert all(m.id in ids for m in served)
    for model in policy.models.values():
        assert policy.deployments_for(model), f"{model.id} has no deployment"


def test_registry_has_the_tutorial_models_and_local_default() -> None:
    policy = load_policy(POLICIES, {})
    assert len(policy.models) == 13
    tiers = {m.id: m.tier for m in policy.models.values()}
    assert tiers["anthropic/claude-sonnet-4"] == 1 and tiers["google/gemini-2.5-flash"] == 2
    assert tiers["openai/gpt-4.1"] == 3 and tiers["openai/gpt-4.1-nano"] == 4
    local = policy.models["ollama/qwen3:1.7b"]
    assert local.local and local.tier == 4 and local.input_usd_per_mtok == 0 == local.output_usd_per_mtok
    assert policy.models["openai/o3"].reasoning_model and policy.models["openai/o4-mini"].reasoning_model
    o3 = policy.models["openai/o3"]
    assert o3.cost_usd(1_000_000, 1_000_000) == pytest.approx(50.0)


def test_base_urls_follow_conventional_variables() -> None:
    env = {
        "OPENAI_BASE_URL": "http://gw.local/v1/",
        "ANTHROPIC_BASE_URL": "http://a.local",
        "GEMINI_API_BASE": "http://g.local",
        "TOGETHER_BASE_URL": "http://t.local/v1",
        "OLLAMA_HOST": "10.0.0.5:11434",
    }
    bases = {d.id: d.api_base for d in load_policy(POLICIES, env).deployments}
    assert bases == {
        "openai": "http://gw.local/v1",
        "anthropic": "http://a.local",
        "gemini": "http://g.local",
        "together": "http://t.local/v1",
        "ollama": "http://10.0.0.5:11434/v1",
    }
    defaults = {d.id: d.api_base for d in load_policy(POLICIES, {}).deployments}
    assert defaults["openai"] == "https://api.openai.com/v1"


def test_keys_are_named_never_stored() -> None:
    text = (POLICIES / "models.yaml").read_text()
    assert "api_key:" not in text
    policy = load_policy(POLICIES, {"OPENAI_API_KEY": "sk-live-xyz"})
    dep = next(d for d in policy.deployments if d.id == "openai")
    assert dep.api_key_env == "OPENAI_API_KEY" and dep.api_key({"OPENAI_API_KEY": "sk-live-xyz"}) == "sk-live-xyz"
    assert "sk-live-xyz" not in repr(policy)


@pytest.mark.parametrize(
    "text,default,env,expected",
    [
        ("${A}", None, {"A": "1"}, "1"),
        ("${A:-x}", None, {}, "x"),
        ("${A:-x}", None, {"A": ""}, "x"),
        ("pre-${A}-post", None, {"A": "v"}, "pre-v-post"),
        ("${A:-}", None, {}, ""),
        ("no refs", None, {}, "no refs"),
    ],
)
def test_env_expansion(text: str, default: None, env: dict, expected: str) -> None:
    assert expand_env(text, env) == expected


def test_missing_variable_names_file_line_and_variable(tmp_path: Path) -> None:
    policy_copy(tmp_path, deployments={"openai": {"api_base": "${NOT_SET_ANYWHERE}/v1"}})
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path, {})
    message = str(info.value)
    assert "models.yaml:" in message and "NOT_SET_ANYWHERE" in message and "deployments[0].api_base" in message


def _break(tmp_path: Path, edit) -> str:  # type: ignore[no-untyped-def]
    policy_copy(tmp_path)
    data = yaml.safe_load((tmp_path / "models.yaml").read_text())
    edit(data)
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path, {})
    return str(info.value)


def test_bad_value_names_line_and_field(tmp_path: Path) -> None:
    message = _break(tmp_path, lambda d: d["models"][2].update(tier=7))
    assert "models[2].tier" in message and "less than or equal to 4" in message
    line = int(message.split("models.yaml:")[1].split()[0])
    assert "tier: 7" in (tmp_path / "models.yaml").read_text().splitlines()[line - 1]


def test_unknown_field_rejected(tmp_path: Path) -> None:
    message = _break(tmp_path, lambda d: d["models"][0].update(teir=1))
    assert "models[0].teir" in message and "Extra inputs are not permitted" in message


def test_deployment_must_serve_existing_models(tmp_path: Path) -> None:
    message = _break(
        tmp_path, lambda d: d["deployments"].append({"id": "x", "provider": "openai", "api_base": "http://x", "models": ["openai/gpt-9*"]})
    )
    assert "matches no model" in message


def test_duplicate_model_ids_rejected(tmp_path: Path) -> None:
    message = _break(tmp_path, lambda d: d["models"].append(dict(d["models"][0])))
    assert "duplicate model ids" in message


def test_invalid_yaml_and_unknown_file(tmp_path: Path) -> None:
    policy_copy(tmp_path)
    (tmp_path / "routing.yaml").write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(PolicyError, match=r"routing.yaml:\d+: invalid YAML"):
        load_policy(tmp_path, {})
    (tmp_path / "routing.yaml").unlink()
    (tmp_path / "rooting.yaml").write_text("{}\n")
    with pytest.raises(PolicyError, match="unknown policy file"):
        load_policy(tmp_path, {})


def test_hash_changes_with_content(tmp_path: Path) -> None:
    policy_copy(tmp_path)
    first = load_policy(tmp_path, {}).hash
    assert load_policy(tmp_path, {}).hash == first
    (tmp_path / "observability.yaml").write_text("decisions_kept: 5\n")
    assert load_policy(tmp_path, {}).hash != first


def test_cli_policy_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from proxy.cli.main import main

    assert main(["policy", "check", "--policy", str(POLICIES)]) == 0
    assert "policy OK" in capsys.readouterr().out
    policy_copy(tmp_path)
    (tmp_path / "models.yaml").write_text("models: 5\n")
    assert main(["policy", "check", "--policy", str(tmp_path)]) == 2
    assert "models.yaml:1 models" in capsys.readouterr().err
