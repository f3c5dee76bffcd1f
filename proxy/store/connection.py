"""redis-py's connection without a task per command.

`redis.asyncio.Connection.send_packed_command` bounds each write with `asyncio.wait_for`, which on
Python 3.11 wraps the write in a new task: two per request on the hot path (the admission's
reserve and its settle), each scheduled through the event loop. `LeanConnection` bounds the same
write with `asyncio.timeout` in the caller's task: the same timeout (`socket_timeout`), the same
errors (a timeout disconnects and raises redis' `TimeoutError("Timeout writing to socket")`, an
`OSError` becomes its `ConnectionError`, anything else disconnects and propagates).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class LeanConnection(Connection):
    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()
        try:
            if isinstance(command, str):
                command = command.encode()
            if isinstance(command, bytes):
                command = [command]
            async with asyncio.timeout(self.socket_timeout):  # None: no bound
                self._writer.writelines(command)  # type: ignore[union-attr]
                await self._writer.drain()  # type: ignore[union-attr]
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as e:
            await self.disconnect(nowait=True)
            err_no, errmsg = ("UNKNOWN", e.args[0]) if len(e.args) == 1 else (e.args[0], e.args[1])
            raise RedisConnectionError(f"Error {err_no} while writing to socket. {errmsg}.") from e
        except BaseException:
            await self.disconnect(nowait=True)
            raise


def lean_class(url: str) -> dict[str, Any]:
    """`connection_class` for a plain `redis://` URL (rediss:// and unix:// keep redis-py's own)."""
    return {"connection_class": LeanConnection} if url.startswith("redis://") else {}
