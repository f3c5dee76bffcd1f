"""The limiter's script calls on one Redis node, without redis-py's per-command pool machinery.

Every request runs two scripts (admission, settlement). redis-py's `execute_command` takes a
connection from the blocking pool for each (an asyncio.Condition, a timeout, the pool lock,
observability hooks, a dirty-connection check), wraps the call in its retry helper and gives the
connection back: ~55 us per call in the named path's profile, as much as packing, sending and
parsing the call itself. These calls already queue at `StoreGate` (at most its limit in flight),
so they need a connection, not a second queue.

`DirectCalls` keeps its own idle connections, made like the pool's (same class, address,
credentials, db, connect timeout, health check, and the C packer; no socket timeout, see
below), and runs one
command on one connection. A connection goes back to the idle list only after its whole reply
was read (an error reply included); one that fails or is interrupted (a timeout cancels the call
mid-reply) has closed itself and is dropped. A call that fails on the wire is tried once more
on a new connection, as the client's `Retry(NoBackoff(), 1)` does for a dropped connection, and
the idle ones are closed (a restarted server dropped them all).
In-flight calls are bounded by the gate, so the idle list never holds more than the gate's
limit. Only EVAL and EVALSHA go this way (`DirectRedis`); everything else uses the pool.
"""

from __future__ import annotations

from typing import Any, cast

from hiredis import pack_command
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError


class DirectCalls:
    def __init__(self, pool: ConnectionPool) -> None:
        self._class = pool.connection_class
        # No socket timeout on these connections: every script call runs under the limit guard's
        # patient_timeout (proxy/store: capped at BACKSTOP_S, and a busy event loop cannot fake
        # it), so the socket timeout was a second timer per read and a task per send
        # (asyncio.wait_for) on every call. Connecting keeps its timeout.
        self._kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        self._idle: list[AbstractConnection] = []

    async def execute(self, *args: Any) -> Any:
        try:
            return await self._on_one(args, self._idle.pop() if self._idle else None)
        except RedisConnectionError:  # dropped, or the server restarted: the other idle ones are stale too
            stale, self._idle = self._idle, []
            for connection in stale:
                await connection.disconnect(nowait=True)
            return await self._on_one(args, None)  # once more, on a new connection

    async def _on_one(self, args: tuple[Any, ...], connection: AbstractConnection | None) -> Any:
        if connection is None:
            connection = self._class(**self._kwargs)
        # packed here by hiredis (what the connection's c_packing packer calls, minus its per-argument
        # checks: these arguments are str, int and float); connects when needed; a failed send closes it
        await connection.send_packed_command(pack_command(args))
        try:
            reply = await connection.read_response()  # a failed or interrupted read closes it
        except ResponseError:  # an error reply (NOSCRIPT, a script error): read whole, the connection is clean
            self._idle.append(connection)
            raise
        self._idle.append(connection)
        return reply

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()


class DirectRedis(Redis):
    """`redis.asyncio.Redis` whose EVALSHA and EVAL (the limiter's scripts) go by `DirectCalls`."""

    direct: DirectCalls

    @classmethod
    def on_pool(cls, pool: ConnectionPool) -> DirectRedis:
        client = cast(DirectRedis, cls.from_pool(pool))  # the client owns its pool, as Redis.from_pool's does
        client.direct = DirectCalls(pool)
        return client

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.direct.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.direct.execute("EVAL", script, numkeys, *keys_and_args)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self.direct.aclose()
        await super().aclose(close_connection_pool)
