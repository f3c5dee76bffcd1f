"""Real Redis servers the tests start and stop themselves, on free loopback ports (never 6379).

- `RedisCluster`: three masters with one replica each (`redis-server --cluster-enabled yes` x6,
  then `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`), with a short
  `cluster-node-timeout` so a killed master's replica takes over in about two seconds.
- `RedisServer`: one plain redis-server.

Both write only under the test's tmp directory and kill their processes on exit.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.support.servers import free_port

NODE_TIMEOUT_MS = 1000


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is needed for the Redis tests (scripts/ensure-redis.sh installs it)")
    return path


def _wait_ping(port: int, timeout_s: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """True once the server answers; False if `proc` exited first (its port, or its cluster bus
    port +10000, was taken between free_port() and its bind)."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.ping():
                return True
        except redis.RedisError:
            pass
        if proc is not None and proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"redis-server on :{port} did not start"
        time.sleep(0.05)


class RedisServer:
    def __init__(self, workdir: Path, *extra: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def cmd(self) -> list[str]:
        return [_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), *self.extra]  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        for _ in range(5):
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if _wait_ping(self.port, proc=self.proc):
                return
            self.port = free_port()  # someone took the port (or the bus port) first: another one
        raise AssertionError("redis-server did not start on any of five free ports")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)


class RedisCluster:
    """Six nodes: masters and replicas as `redis-cli --cluster create` assigns them."""

    def __init__(self, workdir: Path, nodes: int = 6) -> None:
        self.nodes = [
            RedisServer(
                workdir / f"n{i}",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--cluster-replica-validity-factor",
                "0",
                "--cluster-port",
                str(free_port()),
            )  # fmt: skip
            for i in range(nodes)
        ]

    @property
    def seeds(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes[:3]]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(self.seeds)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [_binary("redis-cli"), "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )  # fmt: skip
        self.wait_healthy()
        self.wait_replicas_synced()

    def wait_replicas_synced(self, timeout_s: float = 30.0) -> None:
        """Every replica's link to its master is up (a replica that never synced cannot take over)."""
        deadline = time.monotonic() + timeout_s
        while True:
            infos = [n.client().info("replication") for n in self.alive()]
            replicas = [i for i in infos if i["role"] == "slave"]
            if len(replicas) == len(infos) // 2 and all(i.get("master_link_status") == "up" for i in replicas):
                return
            assert time.monotonic() < deadline, f"replicas did not sync: {infos}"
            time.sleep(0.1)

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.alive()[0].port, decode_responses=True)

    def alive(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Every live node says cluster_state:ok, and every slot has a live master."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                states = [n.client().cluster("info") for n in self.alive()]
                if all(s["cluster_state"] == "ok" for s in states) and self._masters_cover_all_slots():
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "the cluster did not become healthy"
            time.sleep(0.1)

    def _masters_cover_all_slots(self) -> bool:
        live = {n.port for n in self.alive()}
        slots = self.alive()[0].client().cluster("slots")
        return len(slots) > 0 and all(int(entry[2][1]) in live for entry in slots)

    def master_of(self, key: str) -> RedisServer:
        """The node serving `key`'s slot now."""
        client = self.alive()[0].client()
        slot = client.cluster("keyslot", key)
        for start, end, master, *_ in client.cluster("slots"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(master[1]))
        raise AssertionError(f"no master for slot {slot}")

    def keyslot(self, key: str) -> int:
        return int(self.alive()[0].client().cluster("keyslot", key))

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


@contextmanager
def redis_cluster(workdir: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.kill()
