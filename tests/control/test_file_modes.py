"""Faxes, the spool database and the logs are the service user's alone: the real daemon
(`faxbridge run`) and its web process create every file without group or other bits, a rotated log
too, and the systemd units say UMask=0077."""

from __future__ import annotations

import configparser
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from appliance.logfile import LOG_FILE, MAX_BYTES
from tests.conftest import free_port
from tests.control.harness import DaemonProcess
from tests.budgets import LOADED

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "systemd").glob("*.service"))


def umask_of(pid: int) -> int:
    """The umask a running process has (Linux reports it in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError(f"/proc/{pid}/status has no Umask line")


def open_to_others(root: Path, skip: set[Path]) -> list[str]:
    """Every file and directory under ``root`` (but ``skip``) that group or others may read."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p in skip or p.is_symlink():
                continue
            mode = stat.S_IMODE(p.lstat().st_mode)
            if mode & 0o077:
                found.append(f"{p.relative_to(root)} {oct(mode)}")
    return found


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """The daemon with a log one record short of its rotation, written by an older version (0644)."""
    d = DaemonProcess(tmp_path)
    log = tmp_path / LOG_FILE
    log.parent.mkdir(parents=True)
    for made in (log.parent, log.parent.parent):  # the test's own directories: not what is checked
        made.chmod(0o700)
    log.write_text("x" * (MAX_BYTES - 10) + "\n")
    log.chmod(0o644)
    d.start()
    yield d
    d.stop()


def _own_files(d: DaemonProcess) -> set[Path]:
    """What the test itself wrote (the configuration, the daemon's captured stdout)."""
    return {d.config, d.log}


def test_the_daemon_creates_the_spool_the_database_and_its_logs_private(daemon: DaemonProcess) -> None:
    root = daemon.workdir
    log = root / LOG_FILE
    deadline = time.monotonic() + LOADED
    while not log.with_name(log.name + ".1").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    rotated = log.with_name(log.name + ".1")
    assert rotated.exists(), "the log did not rotate"
    assert rotated.read_text().startswith("xxx")  # the old one moved aside, a new one started
    for p in (root / "spool", root / "spool" / "incoming", root / "spool" / "faxes", root / "spool" / "spool.db",
              log, rotated):
        assert p.exists(), p
    assert open_to_others(root, _own_files(daemon)) == []


@pytest.mark.slow
def test_a_received_fax_and_its_mail_are_private(daemon: DaemonProcess) -> None:
    """A real one-page fax from the daemon to itself: the TIFF in the spool and the message in the
    Maildir are the service user's alone."""
    c = daemon.client()
    started = c.request({"cmd": "test-fax"})
    assert started["ok"] is True, started
    deadline = time.monotonic() + 180
    while (st := c.request({"cmd": "test-fax-status", "id": started["id"]}))["state"] == "running":
        assert time.monotonic() < deadline, st
        time.sleep(0.5)
    assert st["state"] == "ok", st
    root = daemon.workdir
    deadline = time.monotonic() + LOADED
    while not list((root / "Maildir" / "new").glob("*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list((root / "spool" / "faxes").glob("*.tif")) and list((root / "Maildir" / "new").glob("*"))
    assert open_to_others(root, _own_files(daemon)) == []


def _config(tmp_path: Path, name: str) -> Path:
    """A configuration of its own per process: each web process needs its own port."""
    port, web = free_port(), free_port("tcp")
    cfg = tmp_path / name / "faxbridge.toml"
    cfg.parent.mkdir()
    cfg.write_text(f'[sip]\nlisten = ["udp:127.0.0.1:{port}"]\nrtp_ports = [47100, 47199]\n'
                   f'[spool]\ndir = "spool"\n[web]\nlisten = "127.0.0.1:{web}"\nhttps = false\n'
                   f'[system]\ncontrol_socket = "/tmp/fb-umask-{port}.sock"\n')
    return cfg


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_every_entry_point_sets_the_umask(tmp_path: Path) -> None:
    """`faxbridge run` and the web process it starts, `faxbridge web` and `python -m appliance.web`,
    each started with a shell's usual umask 022."""
    commands = {
        "run": ["-m", "appliance", "run", "--config", str(_config(tmp_path, "run"))],
        "faxbridge web": ["-m", "appliance", "web", "--config", str(_config(tmp_path, "web"))],
        "python -m appliance.web": ["-m", "appliance.web", "-c", str(_config(tmp_path, "module"))],
    }
    procs = {name: subprocess.Popen([sys.executable, *args], cwd=REPO, umask=0o022, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE) for name, args in commands.items()}
    try:
        seen: dict[str, int] = {}
        deadline = time.monotonic() + LOADED
        # until all four are up and past their imports (a loaded machine takes seconds to start Python)
        while time.monotonic() < deadline and (len(seen) < 4 or set(seen.values()) != {0o77}):
            for name, proc in procs.items():
                assert proc.poll() is None, (name, proc.stderr.read().decode())  # type: ignore[union-attr]
                seen[name] = umask_of(proc.pid)
            kids = _children(procs["run"].pid)
            if kids:
                seen["web started by run"] = umask_of(kids[0])
            time.sleep(0.2)
        assert {k: oct(v) for k, v in seen.items()} == dict.fromkeys(
            ("run", "faxbridge web", "python -m appliance.web", "web started by run"), "0o77")
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(LOADED)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stderr.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_every_unit_sets_a_private_umask(unit: Path) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    assert parser.get("Service", "UMask", fallback=None) == "0077", f"{unit.name}: [Service] UMask=0077 missing"


def test_there_are_units_to_check() -> None:
    assert {u.name for u in UNITS} >= {"faxbridge.service", "faxbridge-web.service"}
