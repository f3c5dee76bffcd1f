"""What counts as a store failure (and so follows on_store_error) and what is a bug."""

from __future__ import annotations

import pytest

from proxy.store import is_store_failure


def _raise_in(filename: str, kind: type[Exception] = AttributeError) -> Exception:
    """An exception of `kind` raised by code compiled as if it were in `filename`."""
    source = "writer = None\nwriter.writelines([])\n" if kind is AttributeError else "raise RuntimeError('transport closed')\n"
    try:
        exec(compile(source, filename, "exec"), {})
    except kind as exc:
        return exc
    raise AssertionError("did not raise")


def test_redis_client_losing_its_writer_mid_failover_is_a_store_failure() -> None:
    # redis-py's cluster client, a connection torn down by a failover: 'NoneType' object has no
    # attribute 'writelines' from inside redis/asyncio/connection.py (seen in tests/test_cluster.py).
    assert is_store_failure(_raise_in("/venv/site-packages/redis/asyncio/connection.py"))
    # ... or uvloop refusing to write to the closed transport under redis-py's connection
    assert is_store_failure(_raise_in("/venv/site-packages/redis/asyncio/connection.py", RuntimeError))


@pytest.mark.parametrize("where", ["/work/main/proxy/limits/limiter.py", "/venv/site-packages/httpx/_client.py"])
def test_an_attribute_or_runtime_error_anywhere_else_is_a_bug_not_an_outage(where: str) -> None:
    assert not is_store_failure(_raise_in(where))
    assert not is_store_failure(_raise_in(where, RuntimeError))
