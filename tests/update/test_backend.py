"""RAUC's custom backend stepped through an update as RAUC 1.8 calls it, on a temp directory laid
out like the FAT, with the firmware's choice (config.txt, or tryboot.txt once) played after each
reboot; and the program RAUC runs, as a process, for its stdout and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from appliance.update.service import backend
from tests.update.conftest import CONFIG_TXT, Box


def run(box: Box, *argv: str, capsys: object = None) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = backend(list(argv), box.paths)
    return code, out.getvalue()


def test_an_update_tried_then_committed(box: Box) -> None:
    assert run(box, "get-primary") == (0, "a\n")
    assert run(box, "get-current") == (0, "a\n")
    assert run(box, "get-state", "b") == (0, "good\n")
    # rauc install: the target is marked non-bootable before it is written ...
    assert run(box, "set-state", "b", "bad") == (0, "")
    assert run(box, "get-state", "b") == (0, "bad\n")
    assert box.text("tryboot.txt") is None
    # ... and made primary after: tryboot.txt, config.txt untouched
    assert run(box, "set-primary", "b") == (0, "")
    assert box.text("config.txt") == CONFIG_TXT
    assert box.text("tryboot.txt") == CONFIG_TXT.replace("os_prefix=a/", "os_prefix=b/")
    assert run(box, "get-state", "b") == (0, "good\n")
    assert run(box, "get-primary") == (0, "b\n")
    # a power cut now: the firmware reads config.txt, slot a
    assert box.firmware_boot(tryboot=False) == "a"
    # the service's reboot "0 tryboot": slot b, once
    assert box.firmware_boot(tryboot=True) == "b"
    assert run(box, "get-current") == (0, "b\n")
    # boot health: rauc status mark-good -> set-state b good commits it
    assert run(box, "set-state", "b", "good") == (0, "")
    assert box.text("config.txt") == CONFIG_TXT.replace("os_prefix=a/", "os_prefix=b/")
    assert box.text("tryboot.txt") is None
    assert box.firmware_boot(tryboot=False) == "b"
    assert run(box, "get-primary") == (0, "b\n")
    assert not list(box.boot.glob(".*")), "no temp file left on the FAT"


def test_a_failed_trial_goes_back_to_the_old_slot(box: Box) -> None:
    run(box, "set-state", "b", "bad")
    run(box, "set-primary", "b")
    assert box.firmware_boot(tryboot=True) == "b"
    assert run(box, "set-state", "b", "bad") == (0, "")  # rauc status mark-bad
    assert box.text("tryboot.txt") is None and box.text("config.txt") == CONFIG_TXT
    assert box.firmware_boot(tryboot=False) == "a"
    assert run(box, "get-state", "b") == (0, "bad\n")
    # even a later tryboot reboot starts the old slot: there is no tryboot.txt
    assert box.firmware_boot(tryboot=True) == "a"


def test_a_hang_in_the_trial_falls_back_without_the_backend(box: Box) -> None:
    run(box, "set-primary", "b")
    assert box.firmware_boot(tryboot=True) == "b"
    # the watchdog or panic=10 reboots ordinarily: nothing was committed
    assert box.firmware_boot(tryboot=False) == "a"


def test_good_commits_only_the_booted_slot_and_bad_never_uncommits(box: Box) -> None:
    run(box, "set-primary", "b")
    assert run(box, "set-state", "b", "good") == (0, "")  # b is not running: not committed
    assert box.text("config.txt") == CONFIG_TXT and box.text("tryboot.txt") is not None
    assert run(box, "set-state", "a", "bad") == (0, "")  # the committed, running slot
    assert box.text("config.txt") == CONFIG_TXT
    assert run(box, "set-primary", "a") == (0, "")  # primary = committed: nothing to try
    assert box.text("tryboot.txt") is None


def test_bad_calls_change_nothing(box: Box) -> None:
    before = sorted((p.name, p.read_bytes()) for p in box.boot.iterdir() if p.is_file())
    assert run(box, "set-primary", "c")[0] == 1
    assert run(box, "set-state", "b", "maybe")[0] == 2
    assert run(box, "frobnicate")[0] == 2
    assert run(box)[0] == 2
    assert run(box, "get-state", "../config")[0] == 1
    assert sorted((p.name, p.read_bytes()) for p in box.boot.iterdir() if p.is_file()) == before
    (box.boot / "config.txt").write_text("arm_64bit=1\n")  # a card not made for A/B
    assert run(box, "set-primary", "b")[0] == 1
    assert box.text("tryboot.txt") is None and box.text("config.txt") == "arm_64bit=1\n"


def test_the_program_rauc_runs(box: Box) -> None:
    """stdout is the answer (RAUC strips it), failures are a non-zero exit with a reason."""
    exe = Path(sys.executable).with_name("faxbridge-rauc-backend")
    argv0 = [str(exe)] if exe.exists() else [sys.executable, "-m", "appliance", "rauc-backend"]
    env = {**os.environ, "FAXBRIDGE_BOOT_DIR": str(box.boot), "FAXBRIDGE_CMDLINE": str(box.proc_cmdline)}

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv0 + list(args), env=env, capture_output=True, text=True, timeout=60)

    r = call("get-primary")
    assert (r.returncode, r.stdout) == (0, "a\n")
    r = call("set-primary", "b")
    assert r.returncode == 0 and r.stdout == ""
    assert box.text("tryboot.txt") is not None
    r = call("get-state", "z")
    assert r.returncode != 0 and "not a bootname" in r.stderr
