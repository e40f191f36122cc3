"""One base for every relative path, the state directory (decision 0013): the log, the spool, the
web state and the control socket stay where they are when the web UI writes the configuration file,
and a configuration file kept elsewhere (--config) moves none of them.

Real `faxbridge run` processes, the web UI's own editor (tomledit) and the real System page."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.budgets import LOADED, wait_until
from tests.conftest import free_port
from tests.control.harness import short_dir
from tests.web.webauth import login

REPO = Path(__file__).resolve().parents[2]
#: the embedded defaults' SIP port: only the first start of the first test listens there
DEFAULT_SIP = ("127.0.0.1", 5060)


def _env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no state directory named, unless the test names one."""
    env = {k: v for k, v in os.environ.items() if k != "FAXBRIDGE_STATE_DIR"}
    env.update(extra)
    return env


def _run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`faxbridge run --no-web [args]` until it is up, then a clean stop; its stderr."""
    err = cwd / f"run-{len(list(cwd.glob('run-*.err')))}.err"
    with open(err, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--no-web", *args], cwd=cwd,
                                env=env or _env(), stdout=subprocess.DEVNULL, stderr=f)
    try:
        wait_until(lambda: "Faxbridge is running" in err.read_text() or proc.poll() is not None,
                   "the daemon's banner")
        assert proc.poll() is None, err.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(LOADED) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err.read_text()


def _port_taken(host: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return True
    return False


def _system_page(cfg: object) -> str:
    """The System page of a web process started on ``cfg``, as the owner sees it."""
    from appliance.web.app import create_app

    client = create_app(cfg).test_client()
    login(client)
    r = client.get("/system")
    assert r.status_code == 200
    return r.get_data(as_text=True)


@pytest.mark.xdist_group("embedded-defaults")
def test_the_log_stays_where_it_is_when_the_web_ui_writes_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    if _port_taken(*DEFAULT_SIP):
        pytest.skip("127.0.0.1:5060, the embedded defaults' SIP port, is in use by another program")
    from appliance.startup import load_config as _load
    from appliance.web.tomledit import ConfigDoc

    checkout = short_dir()  # a fresh clone, where `make run` starts (short: the socket is in var/)
    try:
        var = checkout / "var"
        log = var / "log" / "faxbridge.log"
        first = _run(checkout)  # no file yet: the embedded defaults
        assert not (var / "faxbridge.toml").exists()
        before = log.read_text()
        assert before.count("control socket on") == 1

        # the owner's first save on the web page: the web UI edits the configuration it runs on
        monkeypatch.chdir(checkout)
        monkeypatch.delenv("FAXBRIDGE_STATE_DIR", raising=False)
        running = _load(None)
        assert running.source is None
        doc = ConfigDoc.for_config(running)
        doc.set("routing", "default", "desk@localhost")
        doc.set("sip", "listen", [f"udp:127.0.0.1:{free_port()}"])  # and the box's own SIP port
        doc.save()
        assert doc.path == var / "faxbridge.toml"

        second = _run(checkout)  # the restart: no --config, the file the web UI wrote
        after = log.read_text()
        assert after.startswith(before), "the first start's lines are gone"
        assert after.count("control socket on") == 2 and after.count("INFO faxbridge.cli: stopped") == 2
        assert not (var / "var").exists(), sorted(str(p.relative_to(checkout)) for p in var.rglob("*"))
        # web/ holds only the first-start code the banner shows (the web UI, run on its own, asks for it)
        assert {p.name for p in var.iterdir()} - {"faxbridge.sock"} == {"faxbridge.toml", "log", "spool", "web"}
        assert [p.name for p in (var / "web").iterdir()] == ["setup-code.json"]
        # the banner says where things are, the same on both starts
        assert f"Log:       {log}" in first and f"Log:       {log}" in second
        assert f"Config:    {var / 'faxbridge.toml'}" in second

        # the web process, started as `faxbridge web` would be, shows that same log with both starts
        page = _system_page(_load(None))
        assert str(log) in page
        assert page.count("control socket on") == 2
    finally:
        shutil.rmtree(checkout, ignore_errors=True)


def _box_config(etc: Path) -> Path:
    etc.mkdir(parents=True)
    path = etc / "faxbridge.toml"
    path.write_text(f'[sip]\nlisten = ["udp:127.0.0.1:{free_port()}"]\n'
                    '[spool]\ndir = "spool"\n[web]\nenabled = false\n'
                    '[routing]\ndefault = "faxes@example.com"\n')
    return path


def test_a_configuration_file_elsewhere_moves_nothing_out_of_the_state_directory(tmp_path: Path) -> None:
    from appliance.startup import load_args

    config = _box_config(tmp_path / "etc" / "faxbridge")  # where a packager would put it
    state = short_dir()
    try:
        err = _run(tmp_path, "--config", str(config), "--state-dir", str(state))
        log = state / "log" / "faxbridge.log"
        assert f"State:     {state}" in err and f"Log:       {log}" in err
        assert "control socket on " + str(state / "faxbridge.sock") in log.read_text()
        assert (state / "spool").is_dir()
        assert [p.name for p in config.parent.iterdir()] == ["faxbridge.toml"]  # nothing beside the file
        assert not (tmp_path / "var").exists()  # nor in the working directory

        # the other commands, and $FAXBRIDGE_STATE_DIR instead of the flag, agree
        for env in (_env(), _env(FAXBRIDGE_STATE_DIR=str(state))):
            flag = [] if "FAXBRIDGE_STATE_DIR" in env else ["--state-dir", str(state)]
            queue = subprocess.run([sys.executable, "-m", "appliance", "queue", "--config", str(config), *flag],
                                   cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LOADED)
            assert queue.returncode == 0 and queue.stdout.startswith("FAX "), queue.stderr
            check = subprocess.run([sys.executable, "-m", "appliance", "check-config", str(config), *flag],
                                   cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LOADED)
            assert check.returncode == 0 and f"state directory: {state}" in check.stdout, check.stderr

        import argparse
        cfg = load_args(argparse.Namespace(config=str(config), state_dir=str(state)))
        page = _system_page(cfg)
        assert str(log) in page and "control socket on" in page
        assert (state / "web" / "admin.json").exists() and not (config.parent / "web").exists()
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_without_a_state_directory_named_it_is_var_of_the_working_directory(tmp_path: Path) -> None:
    config = _box_config(tmp_path / "elsewhere")
    err = _run(tmp_path, "--config", str(config))
    assert f"State:     {tmp_path / 'var'}" in err
    assert (tmp_path / "var" / "log" / "faxbridge.log").exists() and (tmp_path / "var" / "spool").is_dir()
    assert not (config.parent / "var").exists()


def test_a_log_left_under_var_var_by_the_old_rule_is_pointed_to(tmp_path: Path) -> None:
    var = tmp_path / "var"
    _box_config(var)  # var/faxbridge.toml, as the web UI writes it
    stray = var / "var" / "log" / "faxbridge.log"  # where the old rule put the log after that
    stray.parent.mkdir(parents=True)
    stray.write_text("2026-01-01 00:00:00,000 INFO faxbridge: an old line\n")
    _run(tmp_path)
    log = (var / "log" / "faxbridge.log").read_text()
    assert f"an older log is at {stray}" in log and f"the log is {var / 'log' / 'faxbridge.log'}" in log
    assert stray.read_text().count("\n") == 1  # left alone
