"""The fuzz targets in ``make test``: the committed corpus replayed, then each target briefly fuzzed.

The replay is plain Python (no atheris): every corpus and regression input goes through its
target's TestOneInput, whose contract assertions make it a test.  The short runs start each target
under atheris (FUZZ_TEST_RUNS inputs, 1500 by default, from a fixed seed) in a subprocess, at low
CPU priority so the real-time fax tests keep their timing, and fail on any crash, hang or memory
over budget.
"""
from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from tests.fuzz.run import CORPUS, REGRESSIONS, ROOT, _env, dictionary
from tests.fuzz.targets import TARGETS, load
from tests.provided import missing

SECONDS = int(os.environ.get("FUZZ_TEST_SECONDS", "3"))
#: the short runs are reproducible (a fixed seed and number of inputs): a commit passes or fails
#: them the same way on every machine; finding new crashes is `make fuzz`'s job
RUNS = int(os.environ.get("FUZZ_TEST_RUNS", "1500"))


def _inputs(target: str) -> list[Path]:
    return sorted(p for folder in (CORPUS / target, REGRESSIONS / target) if folder.is_dir()
                  for p in folder.iterdir() if p.is_file())


def test_every_target_has_a_corpus() -> None:
    assert set(p.name for p in CORPUS.iterdir() if p.is_dir()) >= set(TARGETS)
    assert all(_inputs(t) for t in TARGETS), [t for t in TARGETS if not _inputs(t)]


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays(target: str) -> None:
    test = load(target).TestOneInput
    failures = []
    for path in _inputs(target):
        try:
            test(path.read_bytes())
        except Exception:  # noqa: BLE001 - every failure is collected and reported below
            failures.append(f"{path.relative_to(ROOT)}:\n{traceback.format_exc(limit=-3)}")
    assert not failures, f"{len(failures)} input(s) break the contract:\n" + "\n".join(failures[:5])


def _atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("atheris is missing: `make venv` installs it (the test extras)")
        return False
    return True


@pytest.mark.fuzz
@pytest.mark.xdist_group("fuzz")
@pytest.mark.parametrize("target", TARGETS)
def test_short_fuzz_run(target: str, tmp_path: Path) -> None:
    if not _atheris_available():
        missing("atheris is not installed (pip install atheris, or make venv)")
    work = tmp_path / "new"
    work.mkdir()
    (tmp_path / "dict").mkdir()
    flags = ["-seed=1", f"-runs={RUNS}", f"-max_total_time={SECONDS * 20}", "-rss_limit_mb=1024", "-timeout=10", f"-max_len={load(target).MAX_LEN}",
             f"-artifact_prefix={tmp_path}/", *dictionary(target, work.parent / "dict"), str(work), str(CORPUS / target)]
    proc = subprocess.run(["nice", "-n", "15", sys.executable, "-m", "tests.fuzz.atheris_main", target, *flags],
                          cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", timeout=SECONDS * 20 + 120)
    artifacts = [p.name for p in tmp_path.iterdir() if p.is_file()]
    assert proc.returncode == 0 and not artifacts, (
        f"{target}: exit {proc.returncode}, artifacts {artifacts} (in {tmp_path})\n" + proc.stdout[-4000:])
    assert "Done " in proc.stdout, proc.stdout[-2000:]
