"""The fuzzing campaign (``make fuzz``): run every target under atheris, keep a minimal corpus.

    python -m tests.fuzz.run [--time SECONDS | --runs N] [--targets a,b] [--jobs N]

For each target: libFuzzer runs for the budget (seconds, or executions) on a scratch copy of the
corpus, with ``-rss_limit_mb`` and ``-timeout`` so that memory over budget and hangs count as
failures; crash, timeout and out-of-memory inputs are saved in ``tests/fuzz/crashes/<target>/``
(not committed).  A crash stops libFuzzer, so the target is started again while budget is left
(at most ``--restarts`` times).  Then the committed corpus and everything new are merged with
``-merge=1`` into a fresh directory, which replaces ``tests/fuzz/corpus/<target>/``: the smallest
set of inputs that keeps the coverage, each at most the target's MAX_LEN bytes.

The table at the end has, per target: executions, exec/s, libFuzzer's coverage at the end (cov:
edges, ft: features), corpus files and bytes, crashes, hangs (timeouts) and ooms.  The exit
status is 1 when any target crashed, hung or ran out of memory.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"
REGRESSIONS = HERE / "regressions"
DICTS = HERE / "dicts"
#: the corpus as committed should stay small: the runner warns beyond this many bytes in total
CORPUS_BUDGET = 2 * 1024 * 1024

_STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+)(?: corp: (\d+)/(\d+)(\w+))?.*?exec/s: (\d+)", re.M)
_DONE = re.compile(r"^Done (\d+) runs in (\d+) second", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_EXCEPTION = re.compile(r"=== Uncaught Python exception: ===\n(.*?)\n(?:MS:|==\d+==|INFO:|$)", re.S)


@dataclass
class Result:
    target: str
    executions: int = 0
    seconds: float = 0.0
    cov: int = 0
    ft: int = 0
    corpus_files: int = 0
    corpus_bytes: int = 0
    crashes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    ooms: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # tracebacks, tool errors

    @property
    def exec_per_s(self) -> int:
        return int(self.executions / self.seconds) if self.seconds > 0 else 0

    @property
    def failed(self) -> bool:
        return bool(self.crashes or self.hangs or self.ooms)


def _command(target: str, flags: list[str]) -> list[str]:
    return [sys.executable, "-m", "tests.fuzz.atheris_main", target, *flags]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def dictionary(target: str, folder: Path) -> list[str]:
    """``-dict=`` for the target: its DICTS files (tests/fuzz/dicts/*.dict) joined in `folder`."""
    from tests.fuzz.targets import load

    names = getattr(load(target), "DICTS", ())
    if not names:
        return []
    path = folder / f"{target}.dict"
    path.write_text("".join((DICTS / f"{n}.dict").read_text() for n in names))
    return [f"-dict={path}"]


def _corpus_stats(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)


def _parse(output: str, result: Result) -> None:
    """Add one libFuzzer run's executions, coverage and artifacts to `result`."""
    statuses = _STATUS.findall(output)
    done = _DONE.search(output)
    if statuses:
        last = statuses[-1]
        result.cov, result.ft = max(result.cov, int(last[2])), max(result.ft, int(last[3]))
    if done:
        result.executions += int(done.group(1))
    elif statuses:
        result.executions += int(statuses[-1][0])
    for path in _ARTIFACT.findall(output):
        name = Path(path).name
        kind = result.hangs if name.startswith(("timeout-", "slow-unit-")) else (
            result.ooms if name.startswith("oom-") else result.crashes)
        kind.append(path)
    for m in _EXCEPTION.finditer(output):
        result.problems.append(m.group(1).strip())
    if "out-of-memory" in output and not result.ooms:
        result.ooms.append("(out of memory, no input written)")


def fuzz_target(target: str, *, seconds: int | None, runs: int | None, rss_mb: int, timeout: int,
                restarts: int, merge: bool, log_dir: Path, tolerate: str = "") -> Result:
    from tests.fuzz.targets import load

    max_len = load(target).MAX_LEN
    result = Result(target)
    corpus = CORPUS / target
    corpus.mkdir(parents=True, exist_ok=True)
    crashes = CRASHES / target
    crashes.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
    extra = [str(REGRESSIONS / target)] if (REGRESSIONS / target).is_dir() else []
    env = _env()
    if tolerate:
        env["FUZZ_TOLERATE"] = tolerate
    log = log_dir / f"{target}.log"
    started = time.monotonic()
    try:
        with log.open("w") as out:
            for attempt in range(restarts + 1):
                left = None if seconds is None else int(seconds - (time.monotonic() - started))
                if left is not None and left < 1:
                    break
                flags = [f"-rss_limit_mb={rss_mb}", f"-timeout={timeout}", f"-max_len={max_len}",
                         f"-artifact_prefix={crashes}/", "-print_final_stats=1", *dictionary(target, log_dir)]
                flags += [f"-max_total_time={left}"] if left is not None else []
                flags += [f"-runs={max(runs - result.executions, 0)}"] if runs is not None else []
                before = len(result.crashes) + len(result.hangs) + len(result.ooms)
                proc = subprocess.run(_command(target, flags + [str(work), str(corpus), *extra]), cwd=ROOT,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      errors="replace")
                out.write(f"==== run {attempt + 1}: exit {proc.returncode}\n{proc.stdout}\n")
                _parse(proc.stdout, result)
                failed = len(result.crashes) + len(result.hangs) + len(result.ooms) > before
                if proc.returncode != 0 and not failed:
                    result.problems.append(f"libFuzzer exited {proc.returncode} without an artifact; see {log}")
                    break
                if not failed or (runs is not None and result.executions >= runs):
                    break
        result.seconds = time.monotonic() - started
        if merge:
            _merge(target, max_len, rss_mb, timeout, corpus, work, env, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.corpus_files, result.corpus_bytes = _corpus_stats(corpus)
    return result


def _merge(target: str, max_len: int, rss_mb: int, timeout: int, corpus: Path, work: Path,
           env: dict[str, str], log: Path) -> None:
    """Replace the corpus by a minimal one covering the old corpus and the new inputs."""
    fresh = Path(tempfile.mkdtemp(prefix=f"fuzz-merge-{target}-"))
    try:
        flags = ["-merge=1", f"-max_len={max_len}", f"-rss_limit_mb={rss_mb}", f"-timeout={timeout}"]
        proc = subprocess.run(_command(target, flags + [str(fresh), str(corpus), str(work)]), cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        with log.open("a") as out:
            out.write(f"==== merge: exit {proc.returncode}\n{proc.stdout}\n")
        kept = [p for p in fresh.iterdir() if p.is_file() and p.stat().st_size <= max_len]
        if proc.returncode != 0 or not kept:
            return  # keep the old corpus rather than lose it
        for old in corpus.iterdir():
            old.unlink()
        for p in kept:
            shutil.copyfile(p, corpus / p.name)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def table(results: list[Result]) -> str:
    head = ("target", "executions", "exec/s", "cov", "ft", "corpus", "bytes", "crashes", "hangs", "ooms")
    rows = [head] + [(r.target, str(r.executions), str(r.exec_per_s), str(r.cov), str(r.ft), str(r.corpus_files),
                      str(r.corpus_bytes), str(len(r.crashes)), str(len(r.hangs)), str(len(r.ooms)))
                     for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from tests.fuzz.targets import TARGETS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", type=int, default=None, help="seconds per target (default 60 unless --runs)")
    ap.add_argument("--runs", type=int, default=None, help="executions per target instead of a time budget")
    ap.add_argument("--targets", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="targets run in parallel")
    ap.add_argument("--rss-mb", type=int, default=1024, help="libFuzzer -rss_limit_mb")
    ap.add_argument("--timeout", type=int, default=10, help="libFuzzer -timeout, seconds per input")
    ap.add_argument("--restarts", type=int, default=3, help="new starts after a crash while budget is left")
    ap.add_argument("--no-merge", action="store_true", help="leave tests/fuzz/corpus as it is")
    ap.add_argument("--tolerate", default="", help="triage only: known crash signatures to go past "
                                                   "(see atheris_main.py), comma-separated")
    args = ap.parse_args(argv)
    names = [t.strip() for t in args.targets.split(",") if t.strip()] or list(TARGETS)
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    seconds = args.time if args.time is not None or args.runs is not None else 60
    log_dir = CRASHES / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    def one(target: str) -> Result:
        print(f"fuzzing {target} ...", flush=True)
        r = fuzz_target(target, seconds=seconds, runs=args.runs, rss_mb=args.rss_mb, timeout=args.timeout,
                        restarts=args.restarts, merge=not args.no_merge, log_dir=log_dir, tolerate=args.tolerate)
        print(f"  {target}: {r.executions} executions, {r.exec_per_s}/s, cov {r.cov}, "
              f"{len(r.crashes)} crash(es), {len(r.hangs)} hang(s), {len(r.ooms)} oom(s)", flush=True)
        return r

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, names))
    print()
    print(table(results))
    total = sum(_corpus_stats(CORPUS / t)[1] for t in TARGETS)
    print(f"\ncorpus in the repository: {total} bytes" + (f" (over the {CORPUS_BUDGET} budget)"
                                                         if total > CORPUS_BUDGET else ""))
    for r in results:
        for path in r.crashes + r.hangs + r.ooms:
            print(f"{r.target}: {path}")
        for problem in dict.fromkeys(r.problems):
            print(f"{r.target}: {problem.splitlines()[-1] if problem else ''}\n    "
                  + "\n    ".join(problem.splitlines()[-6:]))
    print(f"\nlogs: {log_dir}")
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
