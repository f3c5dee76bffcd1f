#!/usr/bin/env bash
# Make sure a redis-server binary is installed (the tests start their own on a free port:
# tests/support/redis_server.py). Without --install-only, also make sure a Redis answers on
# 127.0.0.1:$REDIS_PORT (default 6379) — only `make bench` asks for that.
set -euo pipefail
install_only=false
[ "${1:-}" = "--install-only" ] && install_only=true
port=${REDIS_PORT:-6379}
ping() { (exec 3<>/dev/tcp/127.0.0.1/"$port" && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server (Debian package)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    # the package starts a system service on :6379; the tests never use it
  else
    echo "redis-server is not installed (and this is not root with apt): the Redis tests will fail" >&2
    exit 0
  fi
fi
$install_only && exit 0
ping && exit 0
redis-server --daemonize yes --port "$port" --save "" --appendonly no >/dev/null
for _ in $(seq 50); do ping && exit 0; sleep 0.1; done
echo "redis-server did not start on :$port" >&2
exit 1
