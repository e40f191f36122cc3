"""The systemd units as systemd reads them: `systemd-analyze verify` in a root tree that holds the
units and stand-ins for the venv's commands, `systemd-analyze security --offline=true` below the
exposure measured when they were written, and the issue's hardening read back from the files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.provided import provided

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
DAEMON, WEB = "faxbridge.service", "faxbridge-web.service"
#: `systemd-analyze security --offline=true` (systemd 252, bookworm) when these units were written;
#: a change that loosens them fails here (tighten the number when a change improves it)
EXPOSURE = {DAEMON: 1.9, WEB: 1.3}
STATE = "/var/lib/faxbridge"

ANALYZE = shutil.which("systemd-analyze")
pytestmark = provided(ANALYZE is not None, "systemd-analyze missing: `make test` installs Debian's systemd "
                                            "package (not run as PID 1)")


def directives(name: str) -> dict[str, list[str]]:
    """`Key` -> every value it is given, in order (systemd allows repeats)."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def one(name: str, key: str) -> str:
    values = directives(name).get(key, [])
    assert len(values) == 1, f"{name}: {key} {values}"
    return values[0]


def commands(name: str) -> list[list[str]]:
    """The Exec lines' words, ${VAR} given the unit's own Environment= default (as systemd does
    when no EnvironmentFile= overrides it)."""
    d = directives(name)
    env = dict(v.split("=", 1) for e in d.get("Environment", []) for v in e.split())
    return [[env.get(w[2:-1], w) if w.startswith("${") and w.endswith("}") else w for w in v.split()]
            for v in d.get("ExecStartPre", []) + d.get("ExecStart", [])]


def build_root(root: Path, units: Path = UNITS, names: tuple[str, ...] = (DAEMON, WEB)) -> Path:
    """A filesystem root for `--root=`: systemd's own units, ours, and an executable at every path
    our Exec lines name (verify checks that they exist and are executable)."""
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in names:
        shutil.copy(units / unit, root / "etc/systemd/system" / unit)
        for argv in commands(unit):
            exe = root / argv[0].lstrip("/")
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text("#!/bin/sh\n")
            exe.chmod(0o755)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ANALYZE), f"--root={root}", *args], capture_output=True, text=True, timeout=120)


def test_systemd_verifies_both_units(tmp_path: Path) -> None:
    r = analyze(build_root(tmp_path / "root"), "verify", DAEMON, WEB)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_verify_finds_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt setting and a missing command are errors."""
    broken = tmp_path / "units"
    shutil.copytree(UNITS, broken)
    text = (broken / DAEMON).read_text().replace("Restart=on-failure", "Restart=on-fail")
    (broken / DAEMON).write_text(text)
    root = build_root(tmp_path / "root", broken)
    (root / "opt/faxbridge/venv/bin/faxbridge").unlink()
    r = analyze(root, "verify", DAEMON)
    assert r.returncode != 0 and "not executable" in r.stderr and "on-fail" in r.stderr, r.stderr


@pytest.mark.parametrize("unit", [DAEMON, WEB])
def test_exposure_is_at_most_what_was_measured(tmp_path: Path, unit: str) -> None:
    r = analyze(build_root(tmp_path / "root"), "security", "--offline=true", "--no-pager", unit)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert found, r.stdout + r.stderr
    print(f"{unit}: exposure {found.group(1)}")
    assert float(found.group(1)) <= EXPOSURE[unit], r.stdout


@pytest.mark.parametrize("unit", [DAEMON, WEB])
def test_hardened_as_the_issue_asks(unit: str) -> None:
    d = directives(unit)
    assert one(unit, "User") == "faxbridge" and one(unit, "Group") == "faxbridge"
    assert one(unit, "ProtectSystem") == "strict"
    assert d["ReadWritePaths"] == [STATE] and one(unit, "RequiresMountsFor") == STATE
    assert one(unit, "UMask") == "0077" and one(unit, "NoNewPrivileges") == "yes"
    assert one(unit, "PrivateTmp") == "yes" and one(unit, "Restart") == "on-failure"
    assert "time-set.target" in one(unit, "After").split()
    assert all(f"--state-dir {STATE}" in " ".join(argv) for argv in commands(unit))


def test_the_daemon_alone_binds_5060_runs_real_time_and_feeds_a_watchdog() -> None:
    assert one(DAEMON, "CapabilityBoundingSet") == one(DAEMON, "AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
    assert one(WEB, "CapabilityBoundingSet") == "" and "AmbientCapabilities" not in directives(WEB)
    assert one(DAEMON, "SupplementaryGroups") == "dialout" and int(one(DAEMON, "LimitRTPRIO")) >= 10
    assert one(DAEMON, "Type") == "notify" and one(DAEMON, "NotifyAccess") == "main"
    assert one(DAEMON, "WatchdogSec").endswith("s")
    assert {"time-sync.target", "network-online.target"} <= set(one(DAEMON, "After").split())
    assert commands(DAEMON)[0][1:3] == ["selftest", "--state-dir"]  # ExecStartPre: the start check
    assert "--no-web" in commands(DAEMON)[1]  # the web UI is its own unit


def test_neither_unit_takes_the_other_down() -> None:
    """Only ordering between them: no Requires/BindsTo/PartOf/Requisite, so a crash or a stop of one
    never stops the other."""
    for unit, other in ((DAEMON, WEB), (WEB, DAEMON)):
        d = directives(unit)
        for key in ("Requires", "BindsTo", "PartOf", "Requisite", "PropagatesStopTo", "StopPropagatedFrom"):
            assert other not in " ".join(d.get(key, [])), f"{unit}: {key}= names {other}"


def test_the_web_restart_exit_is_restarted_and_not_a_failure() -> None:
    from appliance.web.server import RESTART_EXIT

    assert one(WEB, "SuccessExitStatus") == one(WEB, "RestartForceExitStatus") == str(RESTART_EXIT)


@pytest.mark.parametrize("unit", [DAEMON, WEB])
def test_the_commands_are_real(unit: str, tmp_path: Path) -> None:
    """Every Exec line, run from this venv with a scratch state directory, is a command the CLI
    takes (ExecStartPre's selftest runs to the end)."""
    faxbridge = Path(sys.executable).with_name("faxbridge")
    for argv in commands(unit):
        assert argv[0] == "/opt/faxbridge/venv/bin/faxbridge"
        args = [str(tmp_path) if a == STATE else a for a in argv[1:]]
        if args[0] != "selftest":
            args.append("--help")
        r = subprocess.run([str(faxbridge), *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
