"""How the limiter calls its store: a queue slot, an outer timeout, and the fail-mode switch.

`StoreGuard.call(op, fn)` runs one store call (on Redis; the embedded store's in-process calls
cannot queue, time out or fail on a wire, so the limiter runs them directly):

1. It takes a slot of the process's `StoreGate` (`proxy/limits/store.py`): a burst queues
   there. Admission and reads wait at most the gate's `wait_s` (then `StoreBusy`, a 503 with
   Retry-After that does NOT mark the store down: a healthy Redis under load is not an outage).
   Settlement and release wait as long as it takes: the response is already out, and a
   settlement dropped for want of a connection would leave a reservation behind.
2. The call itself runs under `patient_timeout(store_timeout_s * 8)` (2 s by default): the store must answer
   within that time *while this process is listening* (a busy event loop reading a reply late
   is not a slow store), and a store that keeps answering other calls meanwhile is slow, not
   down: the call waits on, up to `BACKSTOP_S` (5 s) in all. Only a failure *on the wire* (connection refused or reset, a
   timeout, or a BUSY/LOADING/READONLY/MASTERDOWN/CLUSTERDOWN/TRYAGAIN reply during a failover)
   counts as a store failure: it raises `StoreFailure`, and the caller applies the fail mode.
3. After a failure the store is skipped for `retry_interval_s` (calls fail fast), then tried again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxy.store import StoreGate, is_store_failure, patient_timeout

log = logging.getLogger("autoroute.limits")

UNBOUNDED_OPS = frozenset({"settle", "release"})  # owed work: queue as long as it takes


@dataclass
class LimiterStats:
    """Read by the metrics module (counters since start)."""

    store_errors: int = 0
    fail_open_admissions: int = 0
    fail_closed_rejections: int = 0
    lost_settlements: int = 0


class StoreFailure(Exception):
    """The store failed this call (on the wire); the caller applies the fail mode."""


class StoreGuard:
    def __init__(
        self,
        gate: StoreGate,
        *,
        op_timeout_s: float,
        retry_interval_s: float,
        fail_mode: str,
        stats: LimiterStats,
        on_store_error: Callable[[str, BaseException], None] | None = None,
        on_store_call: Callable[..., None] | None = None,
    ) -> None:
        self.gate = gate
        self.op_timeout_s = op_timeout_s
        self.retry_interval_s = retry_interval_s
        self.fail_mode = fail_mode
        self.stats = stats
        self.on_store_error = on_store_error
        # observe_store(op, seconds, failure=None | "fail_open" | "fail_closed"), e.g. Metrics.observe_store
        self.on_store_call = on_store_call
        self.down = False
        self.down_until = 0.0
        self.answered_at = 0.0  # the event loop's time of the store's last answer

    def _last_answer(self) -> float:
        return self.answered_at

    async def call(self, op: str, fn: Callable[[], Any]) -> Any:
        if self.down and time.monotonic() < self.down_until:
            raise StoreFailure(op)
        async with self.gate.slot(unbounded=op in UNBOUNDED_OPS):
            if self.down and time.monotonic() < self.down_until:  # it went down while this call queued
                raise StoreFailure(op)
            started = time.perf_counter()
            try:
                async with patient_timeout(self.op_timeout_s, progress=self._last_answer):
                    result = await fn()
            except Exception as exc:
                if not is_store_failure(exc):
                    raise
                self._observe(op, started, failed=True)
                self._failed(op, exc)
        self._observe(op, started, failed=False)
        self.answered_at = asyncio.get_running_loop().time()
        if self.down:
            self.down = False
            log.info("limits store reachable again (%s)", op)
        return result

    def _observe(self, op: str, started: float, *, failed: bool) -> None:
        if self.on_store_call is not None:
            self.on_store_call(op, time.perf_counter() - started, failure=self.fail_mode if failed else None)

    def _failed(self, op: str, exc: BaseException) -> None:
        self.stats.store_errors += 1
        if not self.down:
            log.warning("limits store unreachable during %s: %s: %s", op, type(exc).__name__, exc)
        self.down = True
        self.down_until = time.monotonic() + self.retry_interval_s
        if self.on_store_error is not None:
            self.on_store_error(op, exc)
        raise StoreFailure(op) from exc
