"""proxy/vocab.py: every value of every vocabulary has its metric label, policy key and
error mapping, so a new value cannot be counted as `other` or fall through a lookup."""

from __future__ import annotations

import pytest
import yaml
from prometheus_client import CollectorRegistry

from proxy import errors
from proxy.dispatch.walk import metric_kind
from proxy.observe import metrics as m
from proxy.providers.base import UpstreamError
from proxy.routing.options import parse_route_options
from proxy.vocab import (
    LIMIT_OF_LUA,
    RETRYABLE_KINDS,
    BudgetPeriod,
    Category,
    Endpoint,
    ErrorKind,
    LimitName,
    LuaLimit,
    Outcome,
    Preference,
)
from tests.conftest import POLICIES


@pytest.fixture(scope="module")
def metrics() -> m.Metrics:
    return m.Metrics(CollectorRegistry())


@pytest.mark.parametrize("category", list(Category))
def test_every_category_has_a_matrix_row_and_a_metric_label(category: Category, metrics: m.Metrics) -> None:
    routing = yaml.safe_load((POLICIES / "routing.yaml").read_text())
    assert category.value in routing["matrix"], f"routing.yaml has no matrix row for {category}"
    assert metrics._pick(category, m.CATEGORIES) == category.value


@pytest.mark.parametrize("preference", list(Preference))
def test_every_preference_is_a_model_alias_and_a_metric_label(preference: Preference, metrics: m.Metrics) -> None:
    options = parse_route_options(f"auto:{preference}", {}, {}, None)
    assert options.preference == preference
    assert metrics._pick(preference, m.PREFERENCES) == preference.value


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_every_error_kind_is_counted_under_its_own_label(kind: ErrorKind) -> None:
    error = UpstreamError("openai", "openai-main", kind, "x", status=502)
    label = metric_kind(error)
    assert label == kind.value and label in m.ERROR_KINDS
    assert error.retryable is (kind in RETRYABLE_KINDS)


def test_a_refused_provider_key_is_counted_as_auth() -> None:
    assert metric_kind(UpstreamError("openai", "d", ErrorKind.REJECTED, "x", status=401)) == ErrorKind.AUTH
    assert metric_kind(UpstreamError("openai", "d", ErrorKind.REJECTED, "x", status=400)) == ErrorKind.REJECTED


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_is_a_metric_label_and_reachable(outcome: Outcome) -> None:
    assert outcome.value in m.OUTCOMES
    reachable = {m.outcome_of(None), m.outcome_of(RuntimeError("bug"))}
    reachable |= {m.outcome_of(cls("x")) for cls in _concrete_errors()}
    reachable.add(m.outcome_of(_cancelled()))
    assert outcome in reachable, f"no exception maps to outcome {outcome}"


def _concrete_errors() -> list[type[Exception]]:
    return [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.ProxyError) and c is not errors.ProxyError and not c.__name__.startswith("_")
    ]


def _cancelled() -> BaseException:
    import asyncio

    return asyncio.CancelledError()


@pytest.mark.parametrize("code", list(LuaLimit))
def test_every_lua_refusal_becomes_a_named_limit_with_a_metric_kind(code: LuaLimit) -> None:
    limit = LIMIT_OF_LUA[code]
    assert limit in m.LIMITS


@pytest.mark.parametrize("limit", list(LimitName))
def test_every_limit_name_is_a_rejection_label(limit: LimitName) -> None:
    assert m.LIMITS[limit] in {"rate_limit", "budget"}
    assert limit in set(LIMIT_OF_LUA.values())


def test_lua_refusal_codes_are_the_ones_admit_lua_returns() -> None:
    import re

    from proxy.limits.store import load_script

    source = load_script("admit").source
    returned = set(re.findall(r"reject\('([a-z_]+)'", source)) | set(re.findall(r"\{'(day|month|total)'", source))
    assert returned == {c.value for c in LuaLimit}


@pytest.mark.parametrize("period", list(BudgetPeriod))
def test_every_budget_period_is_a_metric_label(period: BudgetPeriod) -> None:
    assert period.value in m.BUDGET_PERIODS


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_every_endpoint_is_a_metric_label(endpoint: Endpoint) -> None:
    assert endpoint.value in m.ENDPOINTS
