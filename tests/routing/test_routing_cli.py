"""`faxbridge route` as the owner runs it: the decision, which rule made it, exit 2 on bad config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FAXBRIDGE = str(Path(sys.executable).with_name("faxbridge"))

CONFIG = '''
[routing]
default = "faxes@example.com"
called = { "5552000" = "legacy@example.com" }

[[routing.rules]]
name = "modem-sales"
line = "modem:*"
called_prefix = "555"
to = ["sales@example.com"]
cc = ["boss@example.com"]
format = "pdf"
subject = "Fax from {tsi}"
'''


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FAXBRIDGE, "route", *args], capture_output=True, text=True, timeout=60)


def test_prints_rule_and_decision(tmp_path: Path):
    cfg = tmp_path / "f.toml"
    cfg.write_text(CONFIG)
    p = run("--config", str(cfg), "--called", "5551000", "--caller", "5550100", "--tsi", "ACME",
            "--line", "modem:ttyUSB0")
    assert p.returncode == 0, p.stderr
    lines = dict(line.split(":", 1) for line in p.stdout.splitlines())
    assert {k: v.strip() for k, v in lines.items()} == {
        "rule": "modem-sales", "recipients": "sales@example.com, boss@example.com", "to": "sales@example.com",
        "cc": "boss@example.com", "format": "pdf", "tiff": "tiff-f", "subject": "Fax from {tsi}"}


def test_other_lines_fall_through(tmp_path: Path):
    cfg = tmp_path / "f.toml"
    cfg.write_text(CONFIG)
    p = run("--config", str(cfg), "--called", "5552000", "--line", "sip:pbx")
    assert p.returncode == 0 and "rule:       called 5552000\n" in p.stdout, p.stdout
    p = run("--config", str(cfg), "--called", "5551000", "--line", "modem:ttyUSB0", "--um", "bob@example.com")
    assert p.returncode == 0 and "rule:       Exchange UM msExchUMFaxRecipient\n" in p.stdout, p.stdout


def test_config_error_exits_2(tmp_path: Path):
    cfg = tmp_path / "f.toml"
    cfg.write_text(CONFIG.replace('"Fax from {tsi}"', '"Fax from {sender}"'))
    p = run("--config", str(cfg), "--called", "5551000")
    assert p.returncode == 2
    assert "error: routing rule 'modem-sales'.subject: unknown placeholder {sender}" in p.stderr
    assert p.stdout == ""


def test_a_refused_um_recipient_is_shown(tmp_path: Path):
    cfg = tmp_path / "f.toml"
    cfg.write_text(CONFIG)
    p = run("--config", str(cfg), "--called", "5552000", "--um", "bob@evil.example")
    assert p.returncode == 0, p.stderr
    assert "rule:       called 5552000\n" in p.stdout and "recipients: legacy@example.com\n" in p.stdout
    assert ("refused:    'bob@evil.example' is outside routing.accepted_domains (not set, so only the domain "
            "of routing.default: example.com)\n") in p.stdout
