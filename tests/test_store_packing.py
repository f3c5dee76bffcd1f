"""The store's connections pack commands with hiredis' C packer (proxy/limits/store.py
c_packing), byte for byte what redis-py's own packer sends, on every kind of connection the
URL can name (TCP, TLS, unix socket, Redis Cluster)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection

from proxy.limits import direct
from proxy.limits.store import c_packing, connect_cluster, connect_redis

# what the limiter's scripts send: a two-word command, a sha, counts, unicode key names, floats, bytes
COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "0123456789abcdef0123456789abcdef01234567", 2, "ar:{k}:spend", "ar:{k}:rpm", 1.25, -3, 0.1 + 0.2, b"raw\r\n"),
    ("SCRIPT LOAD", "return redis.call('GET', KEYS[1]) -- é"),
    ("SET", "ar:clé:ü", "値", "PX", 1500),
    ("XADD", "ar:decisions", "MAXLEN", "~", 100000, "*", "doc", "x" * 10_000),  # above redis-py's buffer cutoff
]


def _wire(connection: AbstractConnection, packer: Any, args: tuple[Any, ...]) -> bytes:
    return b"".join(bytes(chunk) for chunk in packer(connection, *args))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_c_packer_sends_the_same_bytes_as_redis_py(command: tuple[Any, ...]) -> None:
    connection = c_packing(Connection)(host="127.0.0.1", port=1)  # never connects
    python = _wire(connection, AbstractConnection.pack_command, command)
    assert _wire(connection, type(connection).pack_command, command) == python
    assert type(connection).pack_command is not AbstractConnection.pack_command


@pytest.mark.parametrize("command", [COMMANDS[0], ("EVAL", "return redis.call('GET', KEYS[1]) -- é", 1, "ar:{ü}:x", 0.5, 7, -1e-7)])
def test_direct_script_calls_send_the_same_bytes_as_redis_py(command: tuple[Any, ...]) -> None:
    """proxy/limits/direct.py packs the limiter's EVALSHA / EVAL itself."""
    python = _wire(Connection(host="127.0.0.1", port=1), AbstractConnection.pack_command, command)
    assert direct.pack_command(command) == python


@pytest.mark.parametrize(
    ("url", "base"),
    [("redis://127.0.0.1:1/0", Connection), ("rediss://127.0.0.1:1/0", SSLConnection), ("unix:///tmp/no.sock", UnixDomainSocketConnection)],
)
def test_every_url_scheme_keeps_its_connection_kind_and_packs_in_c(url: str, base: type) -> None:
    client = connect_redis(url, timeout_s=0.25)
    cls = client.connection_pool.connection_class
    assert issubclass(cls, base) and cls is not base
    assert cls.pack_command is c_packing(base).pack_command is not base.pack_command


def test_cluster_seed_and_later_nodes_pack_in_c() -> None:
    client = connect_cluster("redis+cluster://127.0.0.1:1,127.0.0.1:2", timeout_s=0.25)
    manager = client.nodes_manager
    assert manager.connection_kwargs["connection_class"] is c_packing(Connection)
    assert {node.connection_class for node in manager.startup_nodes.values()} == {c_packing(Connection)}


async def test_a_real_redis_reads_what_the_c_packer_sends(redis_url: str) -> None:
    client = connect_redis(redis_url, timeout_s=0.25)
    try:
        echoed = await client.eval("return {ARGV[1], ARGV[2], ARGV[3], KEYS[1]}", 1, "ar:test:clé", "値", 1.5, -7)
        assert echoed == ["値", "1.5", "-7", "ar:test:clé"]
        connection = await client.connection_pool.get_connection()
        try:
            assert type(connection).pack_command is c_packing(Connection).pack_command
        finally:
            await client.connection_pool.release(connection)
    finally:
        await client.aclose()
