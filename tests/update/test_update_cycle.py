"""Whole updates on a temp box: the request the web UI hands over, the root service installing it
(rauc and systemctl are stand-ins, tests/update/standins.py; the backend, the FAT and status.json
are real), the firmware's choice at each reboot, and boot health deciding on the tried system.
A fixed clock steps the health watch; no test waits for time to pass."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.update import request
from appliance.update.commands import Commands
from appliance.update.health import Check
from appliance.update.service import apply_request, boot_health, status_lines
from tests.update import standins
from tests.update.conftest import CONFIG_TXT, Box

HEALTHY = [Check("fax service", True), Check("web page", True), Check("spool", True)]
NO_DAEMON = [Check("fax service", False, "the fax service did not answer (no one at fb.sock)"),
             Check("web page", True), Check("spool", True)]


@pytest.fixture
def cmds(box: Box, monkeypatch: pytest.MonkeyPatch) -> tuple[Commands, Path]:
    monkeypatch.setenv("FAXBRIDGE_BOOT_DIR", str(box.boot))
    monkeypatch.setenv("FAXBRIDGE_CMDLINE", str(box.proc_cmdline))
    return standins.make(box.boot.parent / "bin")


def hand_over(box: Box, first_line: bytes = b"SIGNED 2.0.0") -> None:
    """What the web UI does: the bundle at its fixed name, then the request."""
    request.store_bundle(box.state, io.BytesIO(first_line + b"\n" + os.urandom(4096)))
    request.write_request(box.state, "web")


def status(box: Box) -> dict[str, object]:
    return json.loads((box.state / "update" / "status.json").read_text())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def health(box: Box, cmds: Commands, checks: list[Check], timeout: float = 300.0) -> int:
    clock = Clock()
    return boot_health(box.paths, cmds, lambda: checks, timeout=timeout, clock=clock, sleep=clock.sleep)


def test_an_update_is_installed_tried_and_committed(box: Box, cmds: tuple[Commands, Path]) -> None:
    c, log = cmds
    hand_over(box)
    assert apply_request(box.paths, c) == 0
    s = status(box)
    assert s["phase"] == "rebooting" and s["version"] == "2.0.0" and s["target_slot"] == "b" and s["percent"] == 100
    assert "restarts to try it" in str(s["message"])
    assert "reboot --reboot-argument=0 tryboot" in log.read_text()
    assert box.text("config.txt") == CONFIG_TXT, "nothing committed before the trial"
    assert not (box.work / "bundle.raucb").exists() and not (box.state / "update" / "bundle.raucb").exists()
    assert not request.pending(box.state)
    # the trial boot
    assert box.firmware_boot(tryboot=True) == "b"
    assert health(box, c, HEALTHY) == 0
    assert "status mark-good" in log.read_text()
    assert box.text("config.txt") == CONFIG_TXT.replace("os_prefix=a/", "os_prefix=b/")
    s = status(box)
    assert s["phase"] == "committed" and s["result"] == "Updated to version 2.0.0." and s["busy"] is False
    assert box.firmware_boot(tryboot=False) == "b"
    # every later boot: nothing to do, the result stays
    assert health(box, c, NO_DAEMON) == 0
    assert status(box)["result"] == "Updated to version 2.0.0."


def test_an_unhealthy_trial_is_rolled_back_and_the_old_system_says_why(box: Box, cmds: tuple[Commands, Path]) -> None:
    c, log = cmds
    hand_over(box)
    assert apply_request(box.paths, c) == 0
    assert box.firmware_boot(tryboot=True) == "b"
    assert health(box, c, NO_DAEMON, timeout=300) == 1
    calls = log.read_text().splitlines()
    assert calls[-2:] == ["status mark-bad booted", "reboot"], calls
    assert box.text("config.txt") == CONFIG_TXT and box.text("tryboot.txt") is None
    assert box.firmware_boot(tryboot=False) == "a"
    assert health(box, c, HEALTHY) == 0
    s = status(box)
    assert s["phase"] == "rolled_back"
    assert s["result"] == ("The update to version 2.0.0 was rolled back: after 300 s on trial: the fax service "
                           "did not answer (no one at fb.sock).")


def test_a_trial_that_never_reports_back_is_recorded_as_rolled_back(box: Box, cmds: tuple[Commands, Path]) -> None:
    """A panic or hang in the new system: the watchdog reboots ordinarily, boot health never ran there."""
    c, log = cmds
    hand_over(box)
    assert apply_request(box.paths, c) == 0
    assert box.firmware_boot(tryboot=True) == "b"
    assert box.firmware_boot(tryboot=False) == "a"
    assert health(box, c, HEALTHY) == 0
    s = status(box)
    assert s["phase"] == "rolled_back" and "the new system did not start" in str(s["result"])
    assert "status mark-bad other" in log.read_text()
    assert box.text("tryboot.txt") is None, "the stale trial is dropped through the backend"


def test_a_power_cut_after_the_commit_still_reports_the_update(box: Box, cmds: tuple[Commands, Path]) -> None:
    c, _ = cmds
    hand_over(box)
    apply_request(box.paths, c)
    box.firmware_boot(tryboot=True)
    # the backend committed, then the power went before status.json said so
    subprocess.run([sys.executable, "-m", "appliance", "rauc-backend", "set-state", "b", "good"], check=True)
    assert status(box)["phase"] == "rebooting"
    assert box.firmware_boot(tryboot=False) == "b"
    assert health(box, c, NO_DAEMON) == 0
    assert status(box)["result"] == "Updated to version 2.0.0."


def test_a_healthy_trial_that_cannot_be_committed_goes_back(box: Box, cmds: tuple[Commands, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    c, _ = cmds
    hand_over(box)
    apply_request(box.paths, c)
    box.firmware_boot(tryboot=True)
    monkeypatch.setenv("FAKE_RAUC_STATUS_FAILS", "1")
    assert health(box, c, HEALTHY) == 1
    assert "could not be committed" in str(status(box)["error"])
    assert box.firmware_boot(tryboot=False) == "a"


@pytest.mark.parametrize("first_line, words", [
    (b"UNSIGNED 6.6.6", "signature is not valid for this box"),
    (b"SIGNED 2.0.0 FAIL-WRITE", "ran out of space"),
    (b"SIGNED 2.0.0 NO-PRIMARY", "was not prepared to try it"),
])
def test_a_refused_install_changes_nothing_and_says_why(box: Box, cmds: tuple[Commands, Path],
                                                         first_line: bytes, words: str) -> None:
    c, log = cmds
    hand_over(box, first_line)
    assert apply_request(box.paths, c) == 1
    s = status(box)
    assert s["phase"] == "failed" and words in str(s["error"]) and s["busy"] is False
    assert str(s["result"]).startswith("The update could not be installed: ") and "Nothing was changed" in str(s["result"])
    assert "reboot" not in log.read_text()
    assert box.text("config.txt") == CONFIG_TXT
    assert box.text("tryboot.txt") is None
    assert not (box.work / "bundle.raucb").exists() and not (box.state / "update" / "bundle.raucb").exists()
    assert box.firmware_boot(tryboot=True) == "a"


def test_a_pi_3_is_refused_before_anything_runs(box: Box, cmds: tuple[Commands, Path]) -> None:
    c, log = cmds
    box.model.write_bytes(b"Raspberry Pi 3 Model B Rev 1.2\x00")
    hand_over(box)
    assert apply_request(box.paths, c) == 1
    assert "no 'tryboot'" in str(status(box)["error"])
    assert log.read_text() == ""
    assert any("refused" in line for line in status_lines(box.paths))


def test_no_update_while_a_trial_runs(box: Box, cmds: tuple[Commands, Path]) -> None:
    c, log = cmds
    hand_over(box)
    apply_request(box.paths, c)
    box.firmware_boot(tryboot=True)
    hand_over(box, b"SIGNED 3.0.0")
    assert apply_request(box.paths, c) == 1
    assert "still on trial" in str(status(box)["error"])


def test_the_cli_hands_over_and_follows_to_the_reboot(box: Box, cmds: tuple[Commands, Path], tmp_path: Path) -> None:
    """`faxbridge update FILE` as a process; the root service (faxbridge-update.path's job) here
    is a thread that starts when the request appears."""
    c, log = cmds
    bundle = tmp_path / "faxbridge-2.0.0.raucb"
    bundle.write_bytes(b"SIGNED 2.0.0\n" + os.urandom(100_000))
    stop = threading.Event()

    def path_unit() -> None:
        while not stop.is_set():
            if request.pending(box.state):
                apply_request(box.paths, c)
                return
            time.sleep(0.05)

    t = threading.Thread(target=path_unit)
    t.start()
    try:
        r = subprocess.run([sys.executable, "-m", "appliance", "update", str(bundle), "--state-dir", str(box.state),
                            "--boot", str(box.boot)], capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "handed to the installer" in r.stdout and "rebooting 100%" in r.stdout
    assert "the box now restarts into the new system" in r.stdout
    out = subprocess.run([sys.executable, "-m", "appliance", "update", "--status", "--state-dir", str(box.state),
                          "--boot", str(box.boot)], capture_output=True, text=True, timeout=60).stdout
    assert "booted:    slot a" in out and "committed: slot a" in out and "next:      a tryboot reboot would try slot b" in out


def test_the_cli_says_when_no_installer_takes_the_request(box: Box, tmp_path: Path) -> None:
    from appliance.update.service import submit

    bundle = tmp_path / "u.raucb"
    bundle.write_bytes(b"SIGNED 2.0.0\n")
    clock = Clock()
    assert submit(box.paths, bundle, pickup_timeout=30, clock=clock, sleep=clock.sleep) == 1
    assert request.pending(box.state), "the request stays for when the path unit starts"


def test_a_health_check_that_crashes_counts_as_unhealthy(box: Box, cmds: tuple[Commands, Path]) -> None:
    c, log = cmds
    hand_over(box)
    apply_request(box.paths, c)
    box.firmware_boot(tryboot=True)

    def broken() -> list[Check]:
        raise RuntimeError("boom")

    clock = Clock()
    assert boot_health(box.paths, c, broken, clock=clock, sleep=clock.sleep) == 1
    assert "the health check itself failed (RuntimeError: boom)" in str(status(box)["error"])
    assert log.read_text().splitlines()[-1] == "reboot"
    assert box.firmware_boot(tryboot=False) == "a"


def test_a_hostile_request_is_answered_in_status_json(box: Box, cmds: tuple[Commands, Path], tmp_path: Path) -> None:
    c, log = cmds
    (box.state / "update").mkdir()
    (tmp_path / "elsewhere.raucb").write_bytes(b"SIGNED 6.6.6\n")
    (box.state / "update" / "bundle.raucb").symlink_to(tmp_path / "elsewhere.raucb")
    request.write_request(box.state, "web")
    assert apply_request(box.paths, c) == 1
    s = status(box)
    assert s["phase"] == "failed" and "not a regular file" in str(s["error"])
    assert log.read_text() == "" and not request.pending(box.state)
    assert (tmp_path / "elsewhere.raucb").exists()
