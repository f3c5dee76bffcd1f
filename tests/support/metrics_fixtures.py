"""Shared pieces of tests/test_metrics.py and tests/test_metrics_exposition.py: a Metrics on its
own registry, with and without key-name labels, over a small fixed set of models and deployments."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from proxy.observe.metrics import Metrics

MODELS = ["openai/gpt-4.1", "openai/gpt-4.1-nano", "anthropic/claude-sonnet-4"]
DEPLOYMENTS = ["openai", "anthropic"]


@pytest.fixture
def m() -> Metrics:
    return Metrics(CollectorRegistry(), models=MODELS, deployments=DEPLOYMENTS)


@pytest.fixture
def mk() -> Metrics:
    """Key-name labels on (policy.observability.key_name_labels)."""
    return Metrics(CollectorRegistry(), models=MODELS, deployments=DEPLOYMENTS, key_name_labels=True, max_key_labels=3)
