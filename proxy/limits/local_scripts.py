"""admit.lua and settle.lua in Python, for `LocalScripts` (`proxy/limits/local.py`).

Each function follows its Lua counterpart line by line (same names for the helpers, same order
of checks, same reply), so that a change to one is made to the other; the contract suite
(`tests/test_limits_contract.py`) runs the same cases on both. `s` is the in-process keyspace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.limits.local import LocalScripts


def part(member: str, i: int) -> int:
    """The i-th number after the rid in a member "rid|a|b" (lib.lua `part`)."""
    fields = member.split("|")
    try:
        return int(fields[i])
    except (IndexError, ValueError):
        return 0


def admit(s: LocalScripts, keys: list[str], p: dict[str, Any]) -> dict[str, Any]:
    """admit.lua, line by line (see its header for the parameters and the reply)."""
    now = s._at(p)
    ttl = p["ttl"]

    def reject(limit: str, retry_ms: int | None, snap: dict[str, Any] | None, left: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "limit": limit, "now": now}
        for name, value in (("retry_ms", retry_ms), ("k", snap), ("left", left)):
            if value is not None:
                out[name] = value
        return out

    def prune_window(zkey: str, skey: str, cutoff: int) -> None:
        z = s._get(zkey)
        if z is None:
            return
        old = z.upto(cutoff)
        if not old:
            return
        freed = sum(part(m, 1) for _, m in old)
        z.remove_upto(cutoff)
        if not z.items:
            s._drop(zkey)
            s._drop(skey)
        elif freed:
            s._incr(skey, -freed)

    def prune_pending(zkey: str, hkey: str, fields: tuple[str, ...]) -> None:
        z = s._get(zkey)
        if z is None:
            return
        old = z.upto(now)
        if not old:
            return
        for j, field in enumerate(fields, start=1):
            freed = sum(part(m, j) for _, m in old)
            if freed:
                s._hincr(hkey, field, -freed)
        z.remove_upto(now)
        if not z.items:
            s._drop(zkey)

    def requests_retry(zkey: str, count: int, limit: int, win: int) -> int:
        z = s._get(zkey)
        idx = max(count - limit, 0)
        if z is None or idx >= len(z.items):
            return 0
        return max(z.items[idx][0] + win - now, 1)

    def tokens_retry(zkey: str, used: int, need: int, limit: int, win: int) -> int:
        z = s._get(zkey)
        freed = 0
        for score, member in z.items[:2000] if z is not None else ():
            freed += part(member, 1)
            if used - freed + need <= limit:
                return max(score + win - now, 1)
        return win

    def window_reset(zkey: str, win: int) -> int:
        z = s._get(zkey)
        if z is None or not z.items:
            return 0
        return max(z.items[0][0] + win - now, 0)

    k, d = p.get("k"), p.get("d")
    dbase = 0
    snap: dict[str, Any] | None = None
    budget_left: dict[str, int] | None = None
    prev: dict[str, Any] = (k.get("prev") if k else None) or {}
    pw, pp, pt = prev.get("w"), prev.get("p"), prev.get("t")

    # ---------------------------------------------------------------- check phase (no reservations)
    if k is not None:
        dbase = 9
        rpm, tpm, tok, nusd = k.get("rpm"), k.get("tpm"), k["tok"], k["nusd"]
        if rpm is not None or tpm is not None:
            prune_window(keys[0], keys[1], now - k["win"])
            z = s._get(keys[0])
            count = len(z.items) if z is not None else 0
            used = s._num(keys[1])
            if pw and s._zscore(keys[0], pw) is not None:
                count -= 1
                used -= part(pw, 1)
            snap = {"count": count, "used": used, "reset_ms": window_reset(keys[0], k["win"])}
            if rpm is not None:
                snap["rpm"] = rpm
            if tpm is not None:
                snap["tpm"] = tpm
            if rpm is not None and count + 1 > rpm:
                return reject("rpm", requests_retry(keys[0], count, rpm, k["win"]), snap)
            if tpm is not None and tok > tpm:
                return reject("tpm_size", None, snap)
            if tpm is not None and used + tok > tpm:
                return reject("tpm", tokens_retry(keys[0], used, tok, tpm, k["win"]), snap)
        if "bday" in k or "bmon" in k or "btot" in k:
            prune_pending(keys[2], keys[3], ("nusd",))
            pend = (s._get(keys[3]) or {}).get("nusd", 0)
            if pp and s._zscore(keys[2], pp) is not None:
                pend -= part(pp, 1)
            if nusd > 0:
                budget_left = {}
                for name, field, read in (
                    ("day", "bday", lambda: (s._get(keys[4]) or {}).get("nusd", 0)),
                    ("month", "bmon", lambda: (s._get(keys[5]) or {}).get("nusd", 0)),
                    ("total", "btot", lambda: s._num(keys[6])),
                ):
                    if field in k:
                        left = k[field] - read() - pend
                        if nusd > left:
                            return reject(name, None, snap, left)
                        budget_left[name] = left - nusd
        task = k.get("task")
        if task is not None:
            prune_pending(keys[8], keys[7], ("pnusd", "ptok"))
            t = s._get(keys[7]) or {}
            cost, used_tok = t.get("nusd", 0) + t.get("pnusd", 0), t.get("tok", 0) + t.get("ptok", 0)
            if pt and s._zscore(keys[8], pt) is not None:
                cost -= part(pt, 1)
                used_tok -= part(pt, 2)
            if "cost" in task and nusd > 0 and cost + nusd > task["cost"]:
                return reject("task_cost", None, snap, task["cost"] - cost)
            if "tok" in task and used_tok + tok > task["tok"]:
                return reject("task_tokens", None, snap, task["tok"] - used_tok)

    if d is not None:
        w, ws, inflight = keys[dbase], keys[dbase + 1], keys[dbase + 2]
        drpm, dtpm = d.get("rpm"), d.get("tpm")
        if drpm is not None or dtpm is not None:
            prune_window(w, ws, now - d["win"])
            z = s._get(w)
            count = len(z.items) if z is not None else 0
            used = s._num(ws)
            if drpm is not None and count + 1 > drpm:
                return reject("d_rpm", requests_retry(w, count, drpm, d["win"]), snap)
            if dtpm is not None and d["tok"] > dtpm:
                return reject("d_tpm_size", None, snap)
            if dtpm is not None and used + d["tok"] > dtpm:
                return reject("d_tpm", tokens_retry(w, used, d["tok"], dtpm, d["win"]), snap)
        if "conc" in d:
            z = s._get(inflight)
            if z is not None:
                z.remove_upto(now)
                if not z.items:
                    s._drop(inflight)
            z = s._get(inflight)
            if (len(z.items) if z is not None else 0) + 1 > d["conc"]:
                return reject("d_conc", None, snap)

    # ---------------------------------------------------------------- reserve phase
    if k is not None:
        score = now
        if pw:
            old = s._zscore(keys[0], pw)
            if old is not None:
                score = old
                s._zrem(keys[0], pw)
                s._incr(keys[1], -part(pw, 1))
        if pp and s._zrem(keys[2], pp):
            s._hincr(keys[3], "nusd", -part(pp, 1))
        if pt and s._zrem(keys[8], pt):
            s._hincr(keys[7], "pnusd", -part(pt, 1))
            s._hincr(keys[7], "ptok", -part(pt, 2))
        if k.get("rpm") is not None or k.get("tpm") is not None:
            s._zset(keys[0]).add(score, k["wm"])
            s._incr(keys[1], k["tok"])
            s._expire_ms(keys[0], k["win"] + 1000)
            s._expire_ms(keys[1], k["win"] + 1000)
            assert snap is not None
            snap["count"] += 1
            snap["used"] += k["tok"]
            snap["reset_ms"] = window_reset(keys[0], k["win"])
        if ("bday" in k or "bmon" in k or "btot" in k) and k["nusd"] > 0:
            s._zset(keys[2]).add(now + ttl, k["pm"])
            s._hincr(keys[3], "nusd", k["nusd"])
            s._expire_ms(keys[2], ttl + 1000)
            s._expire_ms(keys[3], ttl + 1000)
        if "task" in k:
            s._zset(keys[8]).add(now + ttl, k["tm"])
            s._hincr(keys[7], "pnusd", k["nusd"])
            s._hincr(keys[7], "ptok", k["tok"])
            s._expire_ms(keys[7], k["task"]["ttl"] * 1000)
            s._expire_ms(keys[8], k["task"]["ttl"] * 1000)

    if d is not None:
        w, ws, inflight = keys[dbase], keys[dbase + 1], keys[dbase + 2]
        if d.get("rpm") is not None or d.get("tpm") is not None:
            s._zset(w).add(now, d["wm"])
            s._incr(ws, d["tok"])
            s._expire_ms(w, d["win"] + 1000)
            s._expire_ms(ws, d["win"] + 1000)
        if "conc" in d:
            s._zset(inflight).add(now + ttl, d["rid"])
            s._expire_ms(inflight, ttl + 1000)

    out: dict[str, Any] = {"ok": True, "now": now}
    if snap is not None:
        out["k"] = snap
    if budget_left is not None:
        out["b"] = budget_left
    return out


def settle(s: LocalScripts, keys: list[str], p: dict[str, Any]) -> None:
    """settle.lua, line by line (see its header)."""
    s._at(p)

    def rewrite_window(zkey: str, skey: str, member: str | None, new_member: str, tok: int, drop: bool) -> None:
        if not member:
            return
        score = s._zscore(zkey, member)
        if score is None:
            return  # already left the window: nothing to correct there
        s._zrem(zkey, member)
        delta = -part(member, 1)
        if not drop:
            s._zset(zkey).add(score, new_member)
            delta += tok
        if delta:
            s._incr(skey, delta)

    def add_usage(hkey: str, use: dict[str, Any], expire_at: int) -> None:
        m = f"m|{use['model']}|"
        for field, n in (("req", 1), ("in", use["inp"]), ("out", use["out"]), ("nusd", use["nusd"])):
            if n:
                s._hincr(hkey, field, n)
                s._hincr(hkey, m + field, n)
        s._expire_at(hkey, expire_at)

    base = 0
    k = p.get("k")
    if k is not None:
        base = 9
        rewrite_window(keys[0], keys[1], k.get("w"), k["nw"], k["tok"], bool(k.get("drop")))
        if k.get("p") and s._zrem(keys[2], k["p"]):
            s._hincr(keys[3], "nusd", -part(k["p"], 1))
        if k.get("t") and s._zrem(keys[8], k["t"]):
            s._hincr(keys[7], "pnusd", -part(k["t"], 1))
            s._hincr(keys[7], "ptok", -part(k["t"], 2))
        use = k.get("use")
        if use is not None:
            add_usage(keys[4], use, use["exp_d"])
            add_usage(keys[5], use, use["exp_m"])
            if use["nusd"]:
                s._incr(keys[6], use["nusd"])
            s._expire_ms(keys[6], use["tot_ttl"] * 1000)
            if "task_ttl" in use:
                s._hincr(keys[7], "nusd", use["nusd"])
                s._hincr(keys[7], "tok", use["inp"] + use["out"])
                s._expire_ms(keys[7], use["task_ttl"] * 1000)
                s._expire_ms(keys[8], use["task_ttl"] * 1000)

    d = p.get("d")
    if d is not None:
        rewrite_window(keys[base], keys[base + 1], d.get("w"), d["nw"], d["tok"], bool(d.get("drop")))
        s._zrem(keys[base + 2], d["rid"])
        base += 3

    a = p.get("a")
    if a is not None:
        add_usage(keys[base], a["use"], a["use"]["exp_d"])
        add_usage(keys[base + 1], a["use"], a["use"]["exp_m"])
        s._hash(keys[base])["name"] = a["name"]
        s._hash(keys[base + 1])["name"] = a["name"]
