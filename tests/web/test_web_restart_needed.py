""""Restart needed" is said exactly when it is true, and on every page until the restart is done.

Against a real Appliance answering on a real control socket (and, for the restart itself, the
real daemon process), with the web app built the way `faxbridge web` builds it.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from webauth import csrf, login

from appliance.config import Config
from appliance.web.app import create_app
from appliance.web.tomledit import ConfigDoc
from tests.budgets import LOADED
from tests.conftest import free_port

PAGES = ("/", "/faxes", "/settings/system", "/system", "/setup/lines")


def _post(client: FlaskClient, url: str, data: dict[str, str]) -> str:
    r = client.post(url, data={"csrf_token": csrf(client), **data}, follow_redirects=True)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_data(as_text=True)


def _banner(page: str) -> str:
    m = re.search(r'<div class="restart-needed"[^>]*>(.*?)</div>', page, re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip() if m else ""


@pytest.fixture
def embedded_box(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`make run` on a fresh clone: no configuration file, the embedded defaults relative to the
    working directory (a short one: the control socket's path must fit in sun_path)."""
    from tests.control.harness import short_dir

    from appliance.config import STATE_DIR_ENV

    d = short_dir()
    monkeypatch.chdir(d)
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)  # the state directory is ./var, as on a clone
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_the_first_wizard_save_claims_no_restart(embedded_box: Path) -> None:
    """The embedded defaults and the file the wizard writes (var/faxbridge.toml) name the same
    folders, however spelled: nothing waits for a restart."""
    from appliance.startup import load_config as _load
    from appliance.daemon import Appliance
    from tests.control.harness import serve_appliance

    cfg = _load(None)
    assert cfg.source is None
    appliance = Appliance(cfg)
    try:
        with serve_appliance(cfg.path(cfg.system.control_socket), appliance):
            client = create_app(_load(None)).test_client()
            login(client)
            page = _post(client, "/setup/system", {"system.hostname": "faxdesk", "system.timezone": "Europe/Berlin"})
            assert (embedded_box / "var" / "faxbridge.toml").is_file()
            assert "Saved and applied; calls in progress were not disturbed." in page, page
            assert "restart" not in page.lower().replace("/system/restart", ""), _banner(page)
            for path in PAGES:
                assert _banner(client.get(path).get_data(as_text=True)) == "", path
            assert appliance.restart_needed() == []
    finally:
        appliance.spool.close()


def test_a_web_setting_waits_for_the_web_restart_on_every_page_until_it_is_done(tmp_path: Path) -> None:
    box = tmp_path / "faxbridge.toml"
    box.write_text('[spool]\ndir = "spool"\n[web]\nlisten = "127.0.0.1:8080"\n')
    client = create_app(Config.load(box)).test_client()
    login(client)
    for path in PAGES:
        assert _banner(client.get(path).get_data(as_text=True)) == "", path
    doc = ConfigDoc.load(box)  # as a restored backup, or the owner's editor, changes it
    doc.set("web", "listen", "127.0.0.1:8443")
    doc.save()
    for path in PAGES:
        said = _banner(client.get(path).get_data(as_text=True))
        assert "Restart needed." in said and "the web page's address" in said, (path, said)
        assert "web.listen" not in said and "Calls in progress" not in said  # page words; no call is ended
    # a restart is a new process that loads the saved file: then nothing waits
    again = create_app(Config.load(box)).test_client()
    login(again)
    for path in PAGES:
        assert _banner(again.get(path).get_data(as_text=True)) == "", path


@pytest.mark.slow
def test_a_daemon_setting_waits_until_the_daemon_restarts(tmp_path: Path) -> None:
    """A new SIP listener is saved and reloaded, but only a restart opens it: every page says so,
    the banner's button restarts the daemon, and then no page says it any more."""
    from tests.control.harness import DaemonProcess

    daemon = DaemonProcess(tmp_path).start()
    try:
        client = create_app(Config.load(daemon.config)).test_client()
        login(client)
        assert _banner(client.get("/settings/sip").get_data(as_text=True)) == ""
        port = free_port()
        page = _post(client, "/settings/sip", {
            "sip.listen": f"udp:127.0.0.1:{port}", "sip.public_address": "",
            "sip.rtp_ports": "-".join(str(p) for p in Config.load(daemon.config).sip.rtp_ports),
            "sip.tls_cert": "", "sip.tls_key": "", "sip.tls_ca": "", "peers-count": "0", "regs-count": "0"})
        assert "except the SIP listeners, which only a restart puts into effect" in page
        for path in PAGES:
            said = _banner(client.get(path).get_data(as_text=True))
            assert "the SIP listeners" in said and "Calls in progress are ended" in said, (path, said)
        before = daemon.client().request({"cmd": "status"})
        assert before["restart_needed"] == ["sip.listen"]
        assert 'action="/system/restart"' in client.get("/faxes").get_data(as_text=True)
        client.post("/system/restart", data={"csrf_token": csrf(client)})
        after = daemon.wait_ready(not_started=before["started"])
        assert after["restart_needed"] == [] and after["sip"]["listeners"][0]["port"] == port
        for path in PAGES:
            assert _banner(client.get(path).get_data(as_text=True)) == "", path
    finally:
        daemon.stop()


def test_restart_needed_compares_resolved_paths_not_spellings(tmp_path: Path) -> None:
    from appliance.restarts import daemon_changes, web_changes

    state = tmp_path / "var"
    state.mkdir()
    embedded = Config.from_dict({}, base_dir=state)
    written = Config.from_dict({"web": {"state_dir": "./web"}, "spool": {"dir": str(state / "spool")},
                                "system": {"control_socket": "./faxbridge.sock"}}, base_dir=state)
    assert embedded.web.state_dir != written.web.state_dir  # spelled differently ...
    assert embedded.spool.dir != written.spool.dir
    assert web_changes(embedded, written) == [] and daemon_changes(embedded, written) == []  # ... the same
    moved = Config.from_dict({"web": {"state_dir": "web2"}}, base_dir=state)
    assert web_changes(embedded, moved) == ["web.state_dir"]


def test_the_web_process_restarts_itself_for_its_own_settings(tmp_path: Path) -> None:
    """Served for real: with only web settings waiting, "Restart now" ends the web process after
    its reply with RESTART_EXIT, not 0: its supervisor (systemd's Restart=on-failure, supervisor's
    autorestart=unexpected, `faxbridge run`) starts it with the saved file."""
    from served import ServedUI
    from appliance.web.server import RESTART_EXIT

    with ServedUI(tmp_path) as ui:
        ui.start()
        ui.login()
        assert _banner(ui.request("GET", "/faxes").text) == ""
        doc = ConfigDoc.load(ui.config)
        doc.set("web", "session_hours", 8)
        doc.save()
        page = ui.request("GET", "/faxes").text
        assert "how long a login lasts" in _banner(page)
        token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        r = ui.post_form("/system/restart", {"csrf_token": token})
        assert r.status == 302
        assert ui.proc is not None and ui.proc.wait(LOADED) == RESTART_EXIT != 0, ui.log_text()
        assert "Traceback" not in ui.log_text()


@pytest.mark.slow
def test_faxbridge_run_starts_its_web_process_again_after_the_web_restart(embedded_box: Path) -> None:
    """`make run`: the web process is `faxbridge run`'s child; when it restarts itself for its new
    settings, run starts it again, now with the saved file, and the banner is gone."""
    import signal
    import subprocess
    import sys
    import time

    from served import PASSWORD, ServedUI

    from appliance.web.auth import AdminStore

    ui = ServedUI(embedded_box, https=False)
    sip = free_port()
    (embedded_box / "faxbridge.toml").write_text(
        f'[sip]\nlisten = ["udp:127.0.0.1:{sip}"]\nrtp_ports = [47100, 47199]\n[spool]\ndir = "spool"\n'
        f'[web]\nlisten = "127.0.0.1:{ui.port}"\nhttps = false\nstate_dir = "web"\n'
        '[system]\ncontrol_socket = "fb.sock"\n')
    AdminStore(embedded_box / "web").set_password(PASSWORD)
    log = (embedded_box / "run.out").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", "faxbridge.toml",
                             "--state-dir", str(embedded_box)],
                            cwd=embedded_box, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def page(path: str) -> str:
        deadline = time.monotonic() + LOADED
        while True:
            try:
                return ui.request("GET", path).text
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (embedded_box / "run.out").read_text()
                time.sleep(0.2)
    try:
        page("/healthz")
        ui.login()
        doc = ConfigDoc.load(embedded_box / "faxbridge.toml")
        doc.set("web", "session_hours", 8)
        doc.save()
        text = page("/faxes")
        assert "how long a login lasts" in _banner(text)
        token = re.search(r'name="csrf-token" content="([^"]+)"', text).group(1)
        assert ui.post_form("/system/restart", {"csrf_token": token}).status == 302
        deadline = time.monotonic() + LOADED
        while "how long a login lasts" in _banner(page("/faxes")):
            assert time.monotonic() < deadline, (embedded_box / "run.out").read_text()
            time.sleep(0.3)
        assert "Restart needed" not in page("/faxes") and "Received faxes" in page("/faxes")
        assert "starting it again" in (embedded_box / "run.out").read_text()
        # the daemon itself did not restart (execv keeps its pid: its log says so): nothing of its own waited
        assert proc.poll() is None and "restarting:" not in (embedded_box / "run.out").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(LOADED)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
