"""The update units as systemd reads them (`systemd-analyze verify` in a root tree), and what they
must say for the updater: root, the request path the code watches, the state directory, and
boot health ordered after the two units it checks without pulling them in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.update.request import REQUEST, UPDATE_DIR
from tests.units.test_systemd_units import ANALYZE, DAEMON, STATE, UNITS, WEB, analyze, commands, directives, one
from tests.units.test_systemd_units import build_root as build_all
from tests.provided import provided

PATH, UPDATE, HEALTH = "faxbridge-update.path", "faxbridge-update.service", "faxbridge-health.service"
ALL = (DAEMON, WEB, PATH, UPDATE, HEALTH)
pytestmark = provided(ANALYZE is not None, "systemd-analyze missing: `make test` installs Debian's systemd "
                                            "package (not run as PID 1)")


def build_root(root: Path) -> Path:
    return build_all(root, names=ALL)


def test_systemd_verifies_the_update_units(tmp_path: Path) -> None:
    r = analyze(build_root(tmp_path / "root"), "verify", PATH, UPDATE, HEALTH)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_the_path_unit_watches_the_request_the_code_writes() -> None:
    assert one(PATH, "PathExists") == f"{STATE}/{UPDATE_DIR}/{REQUEST}"
    assert one(PATH, "Unit") == UPDATE


def test_the_installer_and_boot_health_run_as_root_on_the_state_directory() -> None:
    for unit in (UPDATE, HEALTH):
        d = directives(unit)
        assert "User" not in d and "DynamicUser" not in d, f"{unit} must be root (rauc, the FAT, reboot)"
        assert all(f"--state-dir {STATE}" in " ".join(argv) for argv in commands(unit))
        assert "/boot/firmware" in one(unit, "RequiresMountsFor").split()
    assert commands(UPDATE) == [["/opt/faxbridge/venv/bin/faxbridge", "update", "--apply-request", "--state-dir", STATE]]
    assert one(UPDATE, "Type") == "oneshot" and "Install" not in (UNITS / UPDATE).read_text()


def test_boot_health_only_orders_itself_after_what_it_checks() -> None:
    d = directives(HEALTH)
    assert {DAEMON, WEB} <= set(one(HEALTH, "After").split())
    for key in ("Requires", "BindsTo", "PartOf", "Requisite", "Wants"):
        assert DAEMON not in " ".join(d.get(key, [])) and WEB not in " ".join(d.get(key, []))
    assert one(HEALTH, "Type") == "exec"
    assert "--timeout" in commands(HEALTH)[0]


@pytest.mark.parametrize("unit", [UPDATE, HEALTH])
def test_the_commands_are_real(unit: str, tmp_path: Path) -> None:
    faxbridge = Path(sys.executable).with_name("faxbridge")
    for argv in commands(unit):
        args = [str(tmp_path) if a == STATE else a for a in argv[1:]] + ["--help"]
        r = subprocess.run([str(faxbridge), *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
