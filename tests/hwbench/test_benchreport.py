"""The bench's results: a skip always says why, one FAIL makes the run fail, the table and the
Markdown show every check as it was."""

from __future__ import annotations

import pytest

from hwtests.benchreport import Check, Report, Status, exit_status, failed, markdown, passed, skipped, table


def test_a_skip_without_a_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="without a reason"):
        Check("slots", Status.SKIPPED)
    assert skipped("slots", "no --ssh given").label == "SKIPPED(no --ssh given)"


def test_one_failure_makes_the_exit_status_non_zero_and_skips_do_not() -> None:
    assert exit_status([passed("tls"), skipped("slots", "no --ssh given")]) == 0
    assert exit_status([passed("tls"), failed("healthz", "HTTP 502"), skipped("slots", "x")]) == 1
    assert exit_status([]) == 0


def test_the_table_lists_every_check_on_one_line_and_counts_them() -> None:
    checks = [passed("tls", "TLSv1.3", 0.4), failed("fax-image", "page 2 differs\nin the box (0, 0, 9, 9)"),
              skipped("update-commit", "no --ssh given"), passed("long", "x" * 500)]
    lines = table(checks, detail_width=60).splitlines()
    assert lines[0].split() == ["check", "result", "s", "detail"]
    body = lines[2:-2]
    assert [l.split()[0] for l in body] == ["tls", "fax-image", "update-commit", "long"]
    assert [l.split()[1] for l in body] == ["PASS", "FAIL", "SKIPPED", "PASS"]
    assert "page 2 differs in the box (0, 0, 9, 9)" in body[1]  # one line per check
    assert body[3].endswith("\u2026") and len(body[3]) < 100
    assert lines[-1] == "2 passed, 1 failed, 1 skipped"


def test_markdown_keeps_facts_and_escapes_the_table() -> None:
    report = Report(started=0.0)
    report.facts["version"] = "0.2.0"
    report.add(failed("alerts", "modem | line down"))
    report.add(skipped("fax-mail", "no --smtp-listen"))
    text = markdown(report, "faxbridge.local")
    assert "### bench.py against faxbridge.local, 1970-01-01 00:00 UTC" in text
    assert "| version | 0.2.0 |" in text
    assert "| alerts | FAIL |  | modem \\| line down |" in text
    assert "| fax-mail | SKIPPED |  | no --smtp-listen |" in text
    assert "exit status 1" in text
