"""The wizard's "send a test fax to the appliance itself" against the real daemon process, after
the owner followed step 2's advice and added the gateway as a peer (which leaves this machine
out of who may call): the button starts the call over the control socket, the status page
follows it to "It works.", and the fax lands in the configured Maildir.  One real fax call
(about 20 s), hence slow."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from webauth import csrf, login

from appliance.config import Config
from appliance.web.app import create_app

pytestmark = pytest.mark.slow


def test_test_fax_button_sends_a_fax_through_the_own_sip_listener(tmp_path: Path) -> None:
    from tests.control.harness import DaemonProcess

    daemon = DaemonProcess(tmp_path).start()
    try:
        client = create_app(Config.load(daemon.config)).test_client()
        login(client)
        # step 2: the gateway as the only peer; saved, and applied by the daemon at once
        r = client.post("/setup/lines", data={
            "csrf_token": csrf(client), "modem.devices": "", "fax.ident": "+1 555 1000", "peers-count": "1",
            "peers-0-_origin": "", "peers-0-name": "gateway", "peers-0-match": "192.0.2.10",
            "peers-0-transport": "", "peers-0-t38": "accept", "peers-0-username": "",
            "peers-0-t38_max_datagram": "0"})
        assert r.status_code == 302 and r.headers["Location"].endswith("/setup/delivery"), r.get_data(as_text=True)
        assert 'match = "192.0.2.10"' in daemon.config.read_text()
        status = daemon.client().request({"cmd": "status"})
        assert [p["name"] for p in status["sip"]["peers"]] == ["gateway"]  # the daemon applied it
        page = client.get("/setup/done").get_data(as_text=True)
        assert "Send a test fax to the appliance" in page
        r = client.post("/setup/test-fax", data={"csrf_token": csrf(client)})
        assert r.status_code == 302 and "/setup/test-fax/" in r.headers["Location"]
        status_url = r.headers["Location"]
        deadline = time.monotonic() + 120
        while True:
            page = client.get(status_url).get_data(as_text=True)
            m = re.search(r'id="test-fax" data-state="(\w+)">\s*<p><strong>(.*?)</strong>', page, re.S)
            assert m, page
            if m.group(1) != "running":
                break
            assert "wizard.js" in page  # the page looks again by itself while the call runs
            assert time.monotonic() < deadline, page
            time.sleep(1.0)
        assert m.group(2) == "It works.", page
        deadline = time.monotonic() + 30  # routed and delivered into the Maildir
        while not list((tmp_path / "Maildir" / "new").glob("*")):
            assert time.monotonic() < deadline, daemon.log_text()[-3000:]
            time.sleep(0.5)
        mail = next((tmp_path / "Maildir" / "new").glob("*")).read_bytes()
        assert b"faxes@example.test" in mail
    finally:
        daemon.stop()
