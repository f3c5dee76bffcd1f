"""proxy/routing/features.py's faster helpers give what the per-character loops before them gave
(the references below are the code they replaced, commit fc88a95): same script, same bucket,
same list-item count, on random texts that mix scripts, accents, digits, bullets and whitespace."""

from __future__ import annotations

import random
import re

from proxy.routing.features import _ITEM, _SCRIPTS, _bucket, script_of, shape_features


def _script_reference(text: str) -> str:
    sample = text[:200]
    if sample.isascii():
        return "latin"
    counts: dict[str, int] = {}
    accented = 0
    for ch in sample:
        o = ord(ch)
        if o < 0x80:
            continue
        if o < 0x250:
            accented += 1
            continue
        for name, lo, hi in _SCRIPTS:
            if lo <= o <= hi:
                counts[name] = counts.get(name, 0) + 1
                break
    if counts:
        return max(counts.items(), key=lambda kv: kv[1])[0]
    return "accented" if accented >= 2 else "latin"


def _bucket_reference(value: float, edges: tuple[float, ...]) -> int:
    for i, edge in enumerate(edges):
        if value < edge:
            return i
    return len(edges)


_ITEM_REFERENCE = re.compile(r"\s*(?:[-*\u2022]|\d+[.)])\s")
# characters from every script range and its edges, accents, punctuation, digits, bullets, whitespace kinds
_PIECES = [chr(o) for _, lo, hi in _SCRIPTS for o in (lo, hi, (lo + hi) // 2, lo - 1, hi + 1)] + list(
    "aZ09 .-*)\n\n\r\t\u2022\u00e9\u00fc\u0250\u024f\u007f\u0080\uff0c\u3002\uff1f\u2028\U0001f600\ud7b0\ud7af"
)


def test_script_of_equals_the_per_character_loop() -> None:
    rng = random.Random(13)
    for n in range(4000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 260 if n % 4 else 12)))
        assert script_of(text) == _script_reference(text), repr(text)
    for text in ("Привет мир", "日本語のテキストです", "日本のテキスト", "Grüße aus München", "café", "中文 Ελληνικά", "Ελλη 中文字"):
        assert script_of(text) == _script_reference(text)


def test_buckets_and_list_items_equal_the_loops() -> None:
    rng = random.Random(5)
    edges = (1, 3, 6, 20.5)
    for value in [-1, 0, 0.5, 1, 2.999, 3, 6, 20.5, 21, float("inf"), float("nan")] + [rng.uniform(-2, 25) for _ in range(500)]:
        assert _bucket(value, edges) == _bucket_reference(value, edges)
    for _ in range(3000):
        head = "".join(
            rng.choice(["- ", "* ", "1. ", "12) ", "\u2022 ", "  ", "\n", "\r\n", "x", "1.", "-", "\t"]) for _ in range(rng.randint(0, 40))
        )
        want = sum(1 for line in head.split("\n") if _ITEM_REFERENCE.match(line))
        assert sum(map(bool, map(_ITEM.match, head.split("\n")))) == want
        assert f"items {_bucket_reference(want, (1, 3, 6))}" in shape_features(head)
