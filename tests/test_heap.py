"""Start-up moves what it built out of the garbage collector's reach (gc.freeze: full collections
skip the policy and the trained router's tables), and a reload thaws first, so what the old
policy held in cycles is collected rather than kept for the life of the process."""

from __future__ import annotations

import gc
import weakref

from proxy.request.appstate import build_state, trim_c_heap
from tests.conftest import make_settings


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_startup_freezes_and_reload_thaws(environ: dict[str, str]) -> None:
    gc.unfreeze()
    state = build_state(make_settings(), environ)
    built_before = Cycle()  # garbage-to-be that exists when start-up freezes the heap
    ref = weakref.ref(built_before)
    await state.startup()
    try:
        assert gc.get_freeze_count() > 10_000  # modules, policy, router tables
        del built_before
        gc.collect()
        assert ref() is not None  # frozen: no collection looks at it any more
        old_hash, new_hash = state.reload()
        assert old_hash == new_hash
        assert ref() is None  # the reload thawed, collected the unreachable cycle, froze again
        assert gc.get_freeze_count() > 10_000
    finally:
        await state.shutdown()
        gc.unfreeze()


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def test_freed_c_heap_goes_back_to_the_os() -> None:
    """What loading leaves behind: many freed malloc blocks below a few live ones, which free()
    alone never returns (they are not at the heap's top)."""
    blocks = [bytes(2048) for _ in range(40_000)]  # ~80 MB from malloc (over pymalloc's 512 bytes)
    keep = blocks[::1000]  # survivors spread through the heap pin its top
    del blocks
    before = _rss_mb()
    assert trim_c_heap()
    assert before - _rss_mb() > 40  # most of the ~80 MB freed is gone from RSS
    del keep
