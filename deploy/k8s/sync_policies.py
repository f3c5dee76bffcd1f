"""Regenerate deploy/k8s/policies-configmap.yaml from policies/*.yaml (run after editing them).

    python deploy/k8s/sync_policies.py          # write the ConfigMap
    python deploy/k8s/sync_policies.py --check  # exit 1 if it is out of date

tests/test_deploy_manifests.py fails while the ConfigMap and policies/ differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
TARGET = Path(__file__).resolve().parent / "policies-configmap.yaml"

HEADER = """\
# GENERATED from policies/ by deploy/k8s/sync_policies.py — edit policies/, then rerun it.
# Mounted at /app/policies (AUTOROUTE_POLICY_DIR) by deployment.yaml. Kubernetes updates the
# mounted files in place; the proxy reads its policy at start-up, so roll the Deployment
# (kubectl rollout restart deployment/autoroute) after applying a change.
apiVersion: v1
kind: ConfigMap
metadata:
  name: autoroute-policies
  labels:
    app.kubernetes.io/name: autoroute
data:
"""


def render() -> str:
    parts = [HEADER]
    for path in sorted(POLICIES.glob("*.y*ml")):
        text = path.read_text(encoding="utf-8")
        if "\t" in text:
            raise SystemExit(f"{path}: tabs cannot go in a YAML block scalar")
        chomp = "+" if text.endswith("\n\n") else ("" if text.endswith("\n") else "-")
        parts.append(f"  {path.name}: |2{chomp}\n")  # explicit indent: a file may start indented
        for line in text.splitlines():
            parts.append(f"    {line}\n" if line else "\n")
    return "".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run python deploy/k8s/sync_policies.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
