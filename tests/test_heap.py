"""Start-up moves what it built out of the garbage collector's reach (gc.freeze: full collections
skip the policy and the trained router's tables), and a reload thaws first, so what the old
policy held in cycles is collected rather than kept for the life of the process."""

from __future__ import annotations

import gc
import weakref

from proxy.request.appstate import build_state
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
