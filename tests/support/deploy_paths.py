"""Where the deployment files live, for tests/test_deploy.py and tests/test_deploy_manifests.py."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM = DEPLOY / "prometheus"
