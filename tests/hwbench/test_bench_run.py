"""bench.py run for real against a box on loopback: the web UI (`faxbridge web` over HTTPS) or the
whole appliance (`faxbridge run`), a real SIP fax and a real SMTP sink; and its broken-signature
bundle refused by RAUC itself.  What needs a Pi (slots, tryboot, the card) is in the parse tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.web.auth import AdminStore
from hwtests import bench
from tests.budgets import LOADED, wait_until
from tests.conftest import free_port
from tests.provided import require
from tests.web.served import PASSWORD, ServedUI

REPO = Path(__file__).resolve().parents[2]


def lines_of(out: str) -> dict[str, str]:
    """check name -> its status word, from the live lines bench.py prints."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"^(PASS|FAIL|SKIPPED\(.*?\))\s+(\S+?)(:|$)", line)
        if m:
            found[m.group(2)] = m.group(1).split("(")[0]
    return found


@pytest.fixture
def web_box(tmp_path: Path):  # type: ignore[no-untyped-def]
    ui = ServedUI(tmp_path, https=True)
    yield ui
    ui.stop()


def run_bench(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str], str]:
    code = bench.main(list(args))
    out = capsys.readouterr().out
    return code, lines_of(out), out


def test_a_box_not_set_up_refuses_a_wrong_setup_code_and_the_rest_says_why_it_skipped(
        web_box: ServedUI, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    web_box.start(password=None)
    code, checks, out = run_bench(capsys, "--box", "localhost", "--web-port", str(web_box.port), "--no-fax",
                                  "--out", str(tmp_path / "out"))
    assert checks["resolve"] == checks["tls"] == checks["tls-name"] == checks["healthz"] == "PASS", out
    assert checks["setup-guard"] == "PASS", out
    assert "SKIPPED(the box is not set up yet: finish the wizard" in out
    for name in ("login", "version", "daemon", "slots", "data-partition", "fax-sent", "mdns-service"):
        assert checks[name] == "SKIPPED", (name, out)
    assert not (web_box.state_dir / "admin.json").exists()  # the wrong code set nothing
    assert code == 0


def test_a_wrong_password_fails_the_run(web_box: ServedUI, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    web_box.start()
    monkeypatch.setenv(bench.PASSWORD_ENV, "not the password at all")
    code, checks, out = run_bench(capsys, "--box", "127.0.0.1", "--web-port", str(web_box.port), "--no-fax")
    assert checks["resolve"] == "SKIPPED" and checks["tls-name"] == "SKIPPED"
    assert checks["login"] == "FAIL" and checks["version"] == "SKIPPED", out
    assert code == 1


def test_a_web_ui_without_its_daemon_fails_the_daemon_check(
        web_box: ServedUI, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    web_box.start()
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    code, checks, out = run_bench(capsys, "--box", "localhost", "--web-port", str(web_box.port), "--no-fax",
                                  "--password-file", str(tmp_path / "pw"), "--expect-version", "99.0",
                                  "--report", str(tmp_path / "report.md"))
    assert checks["login"] == "PASS", out
    assert checks["version"] == "FAIL" and "(expected 99.0)" in out
    assert checks["daemon"] == "FAIL" and "daemon is not running" in out
    assert code == 1
    report = (tmp_path / "report.md").read_text()
    assert "| daemon | FAIL |" in report and "exit status 1" in report


def test_another_certificate_than_the_pinned_one_stops_the_run(
        web_box: ServedUI, capsys: pytest.CaptureFixture[str]) -> None:
    web_box.start()
    code, checks, out = run_bench(capsys, "--box", "localhost", "--web-port", str(web_box.port), "--no-fax",
                                  "--cert-sha256", "ab" * 32)
    assert checks["tls"] == "FAIL" and "is not the pinned" in out
    assert "healthz" not in checks and "login" not in checks  # nothing is trusted after that
    assert code == 1


def test_a_bundle_with_a_broken_signature_is_refused_by_rauc(tmp_path: Path) -> None:
    require(shutil.which("rauc") and shutil.which("mksquashfs") and shutil.which("openssl"),
            "rauc, squashfs-tools and openssl (the Makefile's image packages)")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", tmp_path / "key.pem", "-out", tmp_path / "cert.pem", "-days", "2",
                    "-subj", "/CN=faxbridge bench test"], check=True, capture_output=True)
    content = tmp_path / "content"
    content.mkdir()
    (content / "root.ext4").write_bytes(bytes(range(256)) * 4096)
    (content / "manifest.raucm").write_text("[update]\ncompatible=faxbridge-test\nversion=9.9\n\n"
                                            "[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=root.ext4\n")
    good, bad = tmp_path / "good.raucb", tmp_path / "bad.raucb"
    subprocess.run(["rauc", "bundle", f"--cert={tmp_path / 'cert.pem'}", f"--key={tmp_path / 'key.pem'}",
                    content, good], check=True, capture_output=True)
    bench.corrupt_signature(good, bad)
    assert good.stat().st_size == bad.stat().st_size
    info = ["rauc", "info", f"--keyring={tmp_path / 'cert.pem'}"]
    ok = subprocess.run([*info, good], capture_output=True, text=True)
    assert ok.returncode == 0 and "Version:" in ok.stdout, ok.stderr
    refused = subprocess.run([*info, bad], capture_output=True, text=True)
    assert refused.returncode != 0
    assert "signature verification failed" in refused.stderr


@dataclass
class Box:
    """`faxbridge run` on loopback as the box: SIP, the web UI over HTTPS, delivery by SMTP."""

    dir: Path
    sip: int
    web: int
    smtp: int
    proc: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        return (self.dir / "box.log").read_text(errors="replace")


@contextmanager
def running_box(tmp_path: Path, *, laptop_is_a_peer: bool) -> Iterator[Box]:
    sip, web, smtp = free_port(), free_port("tcp"), free_port("tcp")
    rtp = 42000 + (os.getpid() % 150) * 100  # beside the e2e harness's 20000-39999
    state = tmp_path / "box"
    state.mkdir()
    config = state / "faxbridge.toml"
    # with no peer listed at all the box takes calls from private networks; with its ATA listed,
    # from the ATA only
    peer = ('[[sip.peers]]\nname = "ata"\nmatch = "192.0.2.10"\n'
            + ('[[sip.peers]]\nname = "bench-laptop"\nmatch = "127.0.0.1"\n' if laptop_is_a_peer else ""))
    config.write_text(f"""
[sip]
listen = ["udp:127.0.0.1:{sip}", "tcp:127.0.0.1:{sip}"]
rtp_ports = [{rtp}, {rtp + 99}]
playout_delay_ms = 250
{peer}
[spool]
dir = "spool"
[delivery]
backend = "smtp"
url = "smtp://127.0.0.1:{smtp}"
from = "fax@example.test"
starttls = "none"
retry_initial = 1.0
[routing]
default = "faxes@example.test"
[web]
listen = "127.0.0.1:{web}"
https = true
""")
    AdminStore(state / "web").set_password(PASSWORD)
    (tmp_path / "pw").write_text(PASSWORD)
    with (tmp_path / "box.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(config), "--state-dir",
                                 str(state)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        box = Box(tmp_path, sip, web, smtp, proc)
        try:
            wait_until(lambda: "web UI on" in box.log or proc.poll() is not None, "the appliance's web UI is up")
            assert proc.poll() is None, box.log
            yield box
        finally:
            proc.terminate()
            proc.wait(LOADED)


def bench_command(box: Box, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The command line, as `make hwbench` runs it."""
    return subprocess.run([sys.executable, "-m", "hwtests.bench", "--box", "localhost", "--web-port", str(box.web),
                           "--sip-port", str(box.sip), "--password-file", str(tmp_path / "pw"),
                           "--out", str(tmp_path / "out"), *extra], cwd=REPO, capture_output=True, text=True,
                          timeout=600 + LOADED)


def test_a_box_that_does_not_know_the_laptop_refuses_the_fax_and_the_run_says_where_to_fix_it(
        tmp_path: Path) -> None:
    with running_box(tmp_path, laptop_is_a_peer=False) as box:
        r = bench_command(box, tmp_path, "--fax-timeout", "60")
    checks = lines_of(r.stdout)
    assert checks["login"] == checks["daemon"] == "PASS", r.stdout
    assert checks["fax-sent"] == "FAIL", r.stdout
    assert "call failed: 403" in r.stdout and "SIP peer on the box? BENCH.md W-5" in r.stdout
    assert checks["fax-received"] == checks["fax-mail"] == "SKIPPED"
    assert r.returncode == 1


@pytest.mark.slow
def test_a_dry_run_against_the_appliance_on_loopback_passes(tmp_path: Path) -> None:
    """The whole automated bench but SSH: a real fax over SIP, found through the API, its image
    and its mail compared with what was sent."""
    with running_box(tmp_path, laptop_is_a_peer=True) as box:
        r = bench_command(box, tmp_path, "--smtp-listen", f"127.0.0.1:{box.smtp}", "--report",
                          str(tmp_path / "report.md"))
    checks = lines_of(r.stdout)
    for name in ("resolve", "tls", "tls-name", "healthz", "login", "version", "daemon", "lines", "alerts",
                 "fax-sent", "fax-received", "fax-image", "fax-delivered", "fax-mail"):
        assert checks.get(name) == "PASS", (name, r.stdout, r.stderr, box.log[-3000:])
    assert checks["slots"] == checks["data-partition"] == "SKIPPED"
    assert r.returncode == 0
    assert re.search(r"^14 passed, 0 failed, 3 skipped$", r.stdout, re.M)
    assert (tmp_path / "out" / "bench-sent.tif").is_file()
    assert list((tmp_path / "out").glob("bench-received-*.tif"))
    assert "| fax-mail | PASS |" in (tmp_path / "report.md").read_text()
