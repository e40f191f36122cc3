"""tests/provided.py itself, in a pytest of its own (a subprocess): what `make test` provides is a
skip without CI and a failure with it; other skips stay skips either way."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SAMPLE = '''
import pytest
from tests.provided import provided, require, require_import

pytestmark = pytest.mark.filterwarnings("ignore")


@provided(False, "frobnicate is missing (make test installs it)")
def test_marked():
    pass


@pytest.fixture
def tool():
    require(False, "the recorded call is not beside the checkout")


def test_in_a_fixture(tool):
    pass


def test_import():
    require_import("no_such_module_for_provided_test", "the xyz package of the test extra")


@provided(True, "present")
def test_present():
    require(True, "present too")


@pytest.mark.skipif(True, reason="needs a modem on a serial port")
def test_hardware():
    pass


def test_root():
    pytest.skip("needs root")
'''


def run(tmp_path: Path, ci: str | None) -> dict[str, tuple[str, str]]:
    """{test name: (outcome, message)} of SAMPLE run with CI set to ``ci`` (None: unset)."""
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    report = tmp_path / f"report-{ci}.xml"
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.provided", "-p", "no:cacheprovider",
                          "-p", "no:xdist", "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
                          f"--junitxml={report}", str(tmp_path / "test_sample.py")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert report.exists(), out.stdout + out.stderr
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        child = next(iter(case), None)
        kind = "passed" if child is None else {"skipped": "skipped", "failure": "failed", "error": "error"}[child.tag]
        outcomes[case.get("name", "")] = (kind, "" if child is None else child.get("message", ""))
    return outcomes


@pytest.mark.parametrize("ci", [None, "", "0", "false"])
def test_without_ci_they_are_skips_with_their_reason(tmp_path: Path, ci: str | None) -> None:
    got = run(tmp_path, ci)
    assert {k: v[0] for k, v in got.items()} == {
        "test_marked": "skipped", "test_in_a_fixture": "skipped", "test_import": "skipped",
        "test_present": "passed", "test_hardware": "skipped", "test_root": "skipped"}
    assert "frobnicate is missing" in got["test_marked"][1]
    assert "the xyz package of the test extra" in got["test_import"][1]


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_what_make_test_provides_fails(tmp_path: Path, ci: str) -> None:
    got = run(tmp_path, ci)
    # a failure in the setup (the mark, a fixture) is reported as an error, in the test as a failure
    assert {k: v[0] for k, v in got.items()} == {
        "test_marked": "error", "test_in_a_fixture": "error", "test_import": "failed",
        "test_present": "passed", "test_hardware": "skipped", "test_root": "skipped"}
    assert "frobnicate is missing" in got["test_marked"][1] and "CI is set" in got["test_marked"][1]
    assert "the recorded call is not beside the checkout" in got["test_in_a_fixture"][1]
    assert "needs a modem" in got["test_hardware"][1]  # not provided by make test: still a skip
