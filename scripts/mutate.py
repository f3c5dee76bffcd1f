"""Mutation check: each named bug of tests/mutations.toml must fail a test that guards it.

    python scripts/mutate.py              # every mutation; exit 1 if one survives
    python scripts/mutate.py -k redaction # only mutations whose name contains "redaction"
    python scripts/mutate.py --list       # names and guards, nothing run
    python scripts/mutate.py --no-baseline  # skip the unmutated run of the guards (make test:
                                            # the full suite has just passed)

For each mutation: in a COPY of the repository (a temporary directory; the work tree is never
touched) replace one exact snippet of one file, run only the tests named as its guards, and
restore the file. A mutation is killed when one of those tests fails; it SURVIVED when they all
pass (the check fails). First, unless --no-baseline, the guards run on the unmutated copy and
must all pass: a guard that fails anyway would "kill" every mutation it guards. A snippet that is not in its file exactly once fails the check too (the
code moved: update the list), and so does a mutation whose copy no longer imports (BROKEN: a
mutation must be a plausible bug, not a syntax error).

Speed: the heavy imports (litellm, openai, starlette, tiktoken's encoder, ...) are loaded once
here; each mutation's tests run in a fork of this process that imports the mutated `proxy`
and `tests` fresh from its copy. Two forks run at once (one per copy), which keeps the whole
check within about two minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIST = REPO / "tests" / "mutations.toml"
COPIED = ("proxy", "tests", "policies", "examples", "pyproject.toml")  # examples: the MCP servers tests run


@dataclass
class Mutation:
    name: str
    file: str
    find: str
    replace: str
    tests: list[str]
    why: str = ""
    # results
    verdict: str = ""
    killed_by: str = ""
    seconds: float = 0.0
    detail: list[str] = field(default_factory=list)


def load(path: Path = LIST) -> list[Mutation]:
    data = tomllib.loads(path.read_text())
    out = []
    for raw in data["mutation"]:
        m = Mutation(**raw)
        if not m.tests:
            raise SystemExit(f"{path}: mutation {m.name!r} names no guarding test")
        out.append(m)
    names = [m.name for m in out]
    if len(names) != len(set(names)):
        raise SystemExit(f"{path}: duplicate mutation names")
    return out


def check_anchor(m: Mutation, root: Path) -> str | None:
    """None if the snippet is in its file exactly once, else why not."""
    path = root / m.file
    if not path.is_file():
        return f"{m.file} does not exist"
    found = path.read_text().count(m.find)
    if found != 1:
        return f"snippet found {found} times in {m.file} (need exactly 1): {m.find.strip()[:120]!r}"
    return None


def make_copy(dest: Path) -> Path:
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def warm_up(mutations: list[Mutation]) -> None:
    """Import everything the guards need (the package, the test modules and through them every
    third-party library), then forget `proxy` and `tests` so that each fork imports those two,
    mutated, from its copy while the libraries stay loaded."""
    import importlib

    sys.path.insert(0, str(REPO))
    from proxy.providers.litellm_lib import _load

    _load()  # litellm and the transformers the translated providers use
    import tiktoken

    tiktoken.get_encoding("o200k_base").encode_ordinary("warm up")
    importlib.import_module("proxy.app")
    importlib.import_module("tests.conftest")
    for module in sorted({t.split("::")[0].removesuffix(".py").replace("/", ".") for m in mutations for t in m.tests}):
        importlib.import_module(module)
    sys.path.remove(str(REPO))
    for name in list(sys.modules):
        if name.split(".")[0] in ("proxy", "tests"):
            del sys.modules[name]


def run_child(copy: Path, m: Mutation, report: Path) -> None:
    """In the fork: run the guards against the mutated copy; write the first failure to `report`."""
    os.chdir(copy)
    sys.path.insert(0, str(copy))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH")]))
    import pytest

    class Recorder:
        failed: list[str] = []
        errors: list[str] = []

        def pytest_runtest_logreport(self, report):  # type: ignore[no-untyped-def]
            if report.failed:
                (self.failed if report.when == "call" else self.errors).append(report.nodeid)

        def pytest_collectreport(self, report):  # type: ignore[no-untyped-def]
            if report.failed:
                self.errors.append(f"collect:{report.nodeid}")

    rec = Recorder()
    out = open(os.devnull, "w")
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    code = pytest.main(
        [
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            *os.environ.get("MUTATE_PYTEST_ARGS", "").split(),
            "--rootdir",
            str(copy),
            *m.tests,
        ],
        plugins=[rec],
    )
    import proxy

    where = str(Path(proxy.__file__).resolve())
    lines = [f"exit {int(code)}", f"proxy {where}"]
    lines += [f"failed {n}" for n in rec.failed] + [f"error {n}" for n in rec.errors]
    report.write_text("\n".join(lines) + "\n")
    os._exit(0)


def verdict(m: Mutation, copy: Path, report: Path) -> None:
    text = report.read_text() if report.exists() else ""
    lines = text.splitlines()
    m.detail = lines
    proxy_at = next((line[6:] for line in lines if line.startswith("proxy ")), "")
    failed = [line[7:] for line in lines if line.startswith("failed ")]
    errors = [line[6:] for line in lines if line.startswith("error ")]
    if not lines:
        m.verdict, m.killed_by = "BROKEN", "the test run crashed"
    elif not proxy_at.startswith(str(copy.resolve())):
        m.verdict, m.killed_by = "BROKEN", f"tests imported proxy from {proxy_at}, not the copy"
    elif failed:
        m.verdict, m.killed_by = "killed", failed[0]
    elif errors:
        m.verdict, m.killed_by = "BROKEN", f"error, not a failing assertion: {errors[0]} (does the mutated code import?)"
    elif not lines[0].endswith(" 0"):
        m.verdict, m.killed_by = "BROKEN", f"pytest {lines[0]} with no test failing (a guard id that does not exist?)"
    else:
        m.verdict = "SURVIVED"


def run(mutations: list[Mutation], workers: int) -> None:
    with tempfile.TemporaryDirectory(prefix="autoroute-mutants-") as tmp:
        copies = [make_copy(Path(tmp) / f"copy{i}") for i in range(workers)]
        warm_up(mutations)
        pending = list(mutations)
        running: dict[int, tuple[Mutation, Path, Path, float, str]] = {}  # pid -> (m, copy, report, started, original)
        free = list(copies)
        while pending or running:
            while pending and free:
                m, copy = pending.pop(0), free.pop()
                path = copy / m.file
                original = path.read_text()
                if m.find:  # the baseline changes nothing
                    path.write_text(original.replace(m.find, m.replace))
                report = Path(tmp) / f"{len(pending)}-{os.getpid()}.report"
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    try:
                        run_child(copy, m, report)
                    finally:
                        os._exit(3)
                running[pid] = (m, copy, report, time.monotonic(), original)
            pid, _ = os.wait()
            m, copy, report, started, original = running.pop(pid)
            m.seconds = time.monotonic() - started
            (copy / m.file).write_text(original)
            verdict(m, copy, report)
            free.append(copy)
            shown = m.verdict if m.find else ("passed" if m.verdict == "SURVIVED" else "FAILED")
            print(f"  {shown:8} {m.name} ({m.seconds:.1f}s)", flush=True)


def table(mutations: list[Mutation]) -> str:
    w = max(len(m.name) for m in mutations)
    rows = [f"{'mutation':{w}}  {'verdict':8}  killed by", f"{'-' * w}  {'-' * 8}  {'-' * 40}"]
    rows += [f"{m.name:{w}}  {m.verdict:8}  {m.killed_by}" for m in mutations]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="print the mutations and their guards")
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1, help="forks at once (default: cores + 1)")
    parser.add_argument("--no-baseline", action="store_true", help="do not first run the guards unmutated")
    args = parser.parse_args()
    mutations = [m for m in load() if args.k in m.name]
    if not mutations:
        print(f"no mutation matches {args.k!r}", file=sys.stderr)
        return 1
    if args.list:
        for m in mutations:
            print(f"{m.name}  [{m.file}]\n    {m.why}\n    guards: {' '.join(m.tests)}")
        return 0
    missing = [(m, why) for m in mutations if (why := check_anchor(m, REPO))]
    if missing:
        for m, why in missing:
            print(f"MUTATION ANCHOR MISSING: {m.name}: {why}", file=sys.stderr)
        print("The code moved: update tests/mutations.toml so each mutation applies again.", file=sys.stderr)
        return 1
    started = time.monotonic()
    print(f"mutation check: {len(mutations)} mutations, {args.workers} at a time", flush=True)
    baseline = None
    if not args.no_baseline:
        guards = list(dict.fromkeys(t for m in mutations for t in m.tests))
        baseline = Mutation("(baseline: no mutation)", mutations[0].file, "", "", guards)
        # -x stops at the first failure; a baseline must run to the end only when it passes
    run(([baseline] if baseline else []) + mutations, max(1, args.workers))
    if baseline is not None and baseline.verdict != "SURVIVED":
        print(f"BASELINE FAILED: a guard fails without any mutation: {baseline.killed_by}", file=sys.stderr)
        return 1
    print(table(mutations))
    bad = [m for m in mutations if m.verdict != "killed"]
    print(f"{len(mutations) - len(bad)}/{len(mutations)} killed in {time.monotonic() - started:.0f}s")
    if bad:
        for m in bad:
            print(f"{m.verdict}: {m.name} ({m.file}) — guards: {' '.join(m.tests)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
