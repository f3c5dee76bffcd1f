#!/usr/bin/env bash
# Best-effort install of the test-only tools: promtool (Debian package `prometheus`).
# The promtool tests run whenever promtool is present; CI (CI=true) requires it.
set -uo pipefail
command -v promtool >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing promtool (Debian package prometheus)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
    || echo "could not install promtool; its checks will be skipped" >&2
else
  echo "promtool not found and cannot be installed here; its checks will be skipped" >&2
fi
exit 0
