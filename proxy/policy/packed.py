"""Weight rows packed into one integer each (owns: how the trained router's weights are held, and their column sums, exactly and fast).

The artifact loader (`proxy/policy/artifact.py`) packs the weights as it reads them, so a process
holds one int per feature and no float rows; `proxy/routing/learned.py` sums them.

The artifact's weights are decimals with a few places (`round(w, 4)` in training), so each is an
exact integer `round(w * SCALE)` in fixed point. A feature's row of K weights becomes ONE Python
int, lane k (LANE bits wide, two's complement) holding weight k:
`sum(round(w_k * SCALE) << (LANE * k))`. Adding packed rows adds every lane at once, so the K
column sums over a request's few hundred features are a single C-level `sum(map(get, features))`
of big ints instead of K Python-level sums over tuples. Lanes never interfere as long as every
lane's total stays inside LANE - 1 bits: `fits(n)` checks that for n rows (LANE leaves room for
2**HEADROOM_BITS rows of the largest weight; `chunked_sums` adds more rows than that chunk by
chunk), and `Packed.of` declines weights that are not exact decimals of at most MAX_PLACES
places, so the caller keeps its float path for those artifacts.

Exactness: the lane totals are exact integers, and `unpack` returns each as `total / SCALE`,
the correctly rounded float of the exact decimal sum (the float path's sum rounds at each step,
so the two agree to ~1e-15, not bit for bit).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from struct import Struct
from typing import Any

MAX_PLACES = 8  # the most decimal places tried for the fixed point
HEADROOM_BITS = 12  # a lane holds the sum of 2**12 rows of the largest weight (a request has ~100-500 features)


class Packed(Mapping[str, tuple[float, ...]]):
    """Feature -> packed int (`rows`), plus the mapping view back to float rows (training, tests)."""

    def __init__(self, rows: dict[str, int], width: int, scale: int, size: int, largest: int) -> None:
        self.rows = rows
        self.width = width  # weights per row (K)
        self.scale = scale
        self.size = size  # bytes per lane: 4 or 8 (read back with struct), else a multiple of 8
        lane = 8 * size
        self._largest = max(largest, 1)  # the largest |weight * scale|
        self._half = half = 1 << (lane - 1)  # a lane's total must stay within +-half
        self._offset = sum(half << (lane * k) for k in range(width))  # makes every lane non-negative
        self._format = Struct(f"<{width}{'I' if size == 4 else 'Q'}") if size in (4, 8) else None
        self._shifts = tuple(lane * k for k in range(width))

    @classmethod
    def of(cls, weights: Mapping[str, Sequence[float]], width: int, consume: bool = False) -> Packed | None:
        """The packed form of `weights` (rows of `width` floats), or None when they are not exact short decimals.

        `consume` (a dict of rows the caller gives up, as the artifact loader does): its values are
        replaced in place, each float row released as its int takes its place, so the float rows and
        the ints never all live at once; that very dict becomes `rows`."""
        if not all(isinstance(v, list | tuple) and len(v) == width for v in weights.values()):
            return None
        values = set().union(*weights.values())  # ~18k distinct values in ~600k weights
        scale = _scale(values)
        if scale is None:
            return None
        fixed = {w: round(w * scale) for w in values}
        largest = max(map(abs, fixed.values()), default=0)
        bits = max(largest, 1).bit_length() + HEADROOM_BITS + 1  # with the sign bit
        size = 4 if bits <= 32 else 8 * ((bits + 63) // 64)
        packed = cls({}, width, scale, size, largest)
        # a row in offset form (every lane + half: non-negative, so lanes are plain bytes, joined in C),
        # then minus the offset: the two's-complement packing sum(w_k << (lane * k))
        half = packed._half
        lanes = {w: (x + half).to_bytes(size, "little") for w, x in fixed.items()}
        joined = map(b"".join, map(partial(map, lanes.__getitem__), weights.values()))
        little = partial(int.from_bytes, byteorder="little")
        ints = map(packed._offset.__rsub__, map(little, joined))
        if consume and isinstance(weights, dict):
            # values replaced while iterating: legal (the dict's size never changes), one row at a time
            rows: dict[str, Any] = weights
            rows.update(zip(rows, ints, strict=True))
            packed.rows = rows
        else:
            packed.rows.update(zip(weights, ints, strict=True))
        return packed

    def fits(self, n: int) -> bool:
        """True when the sum of any n rows is exact in every lane (every lane's total within +-half)."""
        return n * self._largest < self._half

    def chunked_sums(self, features: Iterable[str]) -> list[float]:
        """The K column sums of the rows of `features` however many: exact per chunk that `fits`, chunks added as floats."""
        found = list(filter(None, map(self.rows.get, features)))
        step = max(1, (self._half - 1) // self._largest)  # the most rows that fit
        out = [0.0] * self.width
        for i in range(0, len(found), step):
            out = [a + b for a, b in zip(out, self.unpack(sum(found[i : i + step])), strict=True)]
        return out

    def unpack(self, total: int) -> list[float]:
        """The K column sums (floats) of a sum of packed rows."""
        total += self._offset
        half, scale = self._half, self.scale
        if self._format is not None:
            lanes = self._format.unpack(total.to_bytes(self.size * self.width, "little"))
        else:
            mask = (half << 1) - 1
            lanes = tuple((total >> s) & mask for s in self._shifts)
        return [(u - half) / scale for u in lanes]

    def __getitem__(self, key: str) -> tuple[float, ...]:
        return tuple(self.unpack(self.rows[key]))

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: object) -> bool:
        return key in self.rows


def _scale(values: set[float]) -> int | None:
    """The smallest 10**p (p <= MAX_PLACES) that makes every weight an exact integer, None when none does."""
    if not all(isinstance(w, float | int) and abs(w) < 1e12 for w in values):
        return None
    for places in range(MAX_PLACES + 1):
        scale: int = 10**places
        if all(round(w * scale) / scale == w for w in values):
            return scale
    return None
