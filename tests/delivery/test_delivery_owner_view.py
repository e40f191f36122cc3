"""What a mailbox reads, from the daemon's own delivery to a real SMTP server (aiosmtpd):

* times in the owner's zone (``system.timezone``), named, and a reload changes the next mail;
  the Date header stays RFC 5322, with that zone's offset;
* "Send to this address" on the fax page: the resent mail is addressed to the new address, in
  its To header and nowhere else, not to the people the fax first went to.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import time
from email.message import EmailMessage
from pathlib import Path

from appliance.config import Config, RoutingConfig, SpoolConfig
from appliance.daemon import Appliance
from appliance.delivery.queue import DeliveryWorker
from appliance.spool.store import Spool
from appliance.web.app import create_app
from smtp_harness import T0, Clock, smtp_cfg
from tests.web.webauth import csrf, login


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def write_config(path: Path, zone: str, port: int) -> None:
    path.write_text(f'[system]\ntimezone = "{zone}"\n[spool]\ndir = "spool"\n'
                    f'[delivery]\nbackend = "smtp"\nurl = "smtp://127.0.0.1:{port}"\nfrom = "fax@example.com"\n'
                    f'starttls = "none"\n[routing]\ndefault = "faxes@example.com"\n[web]\nenabled = false\n')


def facts(msg: EmailMessage) -> dict[str, str]:
    """The plain body's "Name: value" rows."""
    body = msg.get_body(("plain",)).get_content()
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in body.splitlines()) if v}


def test_mail_times_are_in_the_owners_zone_and_follow_a_reload(tmp_path: Path, smtp_server, tiff_bytes):
    server = smtp_server()
    path = tmp_path / "faxbridge.toml"
    write_config(path, "Europe/Berlin", server.port)
    app = Appliance(Config.load(path))  # its delivery worker, as the daemon runs it
    app.delivery.clock = Clock(T0 + 120)
    try:
        fax = app.spool.begin_fax(T0, caller_number="5550100")  # 2023-11-14 22:13:20 UTC
        app.spool.incoming_path(fax).write_bytes(tiff_bytes)
        fax = app.spool.finish_fax(fax.id, T0 + 60, complete=True)
        app.spool.add_jobs(fax.id, ["faxes@example.com"], T0 + 60)  # as routing does, on the test's clock
        asyncio.run(app.delivery.run_once())
        (first,) = [parse(m["data"]) for m in server.handler.messages]
        assert facts(first)["Received"] == "2023-11-14 23:14:20 CET"
        assert facts(first)["Fax"] == f"number {fax.id} on the fax appliance"
        assert "2023-11-14 23:14:20 CET" in first.get_body(("html",)).get_content()
        assert first["Date"].datetime == datetime.datetime.fromtimestamp(T0, datetime.timezone.utc)
        assert str(first["Date"]).endswith(" +0100")  # RFC 5322, the zone's offset
        (att,) = first.iter_attachments()
        assert att.get_filename() == f"fax-20231114-231320-{fax.id}.tif"

        write_config(path, "America/New_York", server.port)  # the owner changes the zone and saves
        reply = asyncio.run(app.reload_config())
        assert reply["ok"] and "system" in reply["applied"] and reply["restart"] == []
        app.spool.resend(fax.id, "faxes@example.com", T0 + 120)
        asyncio.run(app.delivery.run_once())
        second = parse(server.handler.messages[-1]["data"])
        assert facts(second)["Received"] == "2023-11-14 17:14:20 EST"
        assert str(second["Date"]).endswith(" -0500")
    finally:
        app.spool.close()


def test_send_to_this_address_addresses_the_new_recipient(tmp_path: Path, smtp_server, tiff_bytes):
    """The fax page's "Send to this address", then the daemon's delivery: the new mail's To is
    the address typed in (the envelope's too), and the first recipients are named nowhere."""
    server = smtp_server()
    config = Config(spool=SpoolConfig(dir="spool"), routing=RoutingConfig(default="faxes@example.com"),
                    base_dir=tmp_path)
    spool = Spool(config.path(config.spool.dir))
    try:
        fax = spool.begin_fax(T0, caller_number="5550100")
        spool.incoming_path(fax).write_bytes(tiff_bytes)
        fax = spool.finish_fax(fax.id, T0 + 60, complete=True)
        route = {"to": ["sales@example.com"], "cc": ["ops@example.com"], "format": "tiff", "tiff": "tiff-f",
                 "subject": "", "rule": "sales"}
        spool.update_facts(fax.id, extra={"route": route})
        spool.add_jobs(fax.id, ["sales@example.com", "ops@example.com"], T0 + 60)
        worker = DeliveryWorker(spool, smtp_cfg(server.port), clock=Clock(T0 + 120))
        asyncio.run(worker.run_once())
        assert {parse(m["data"])["To"] for m in server.handler.messages} == {"sales@example.com"}

        client = create_app(config).test_client()
        login(client)
        r = client.post(f"/faxes/{fax.id}/resend", data={"to": "other", "address": "boss@example.com",
                                                         "csrf_token": csrf(client)})
        assert r.status_code == 302, r.get_data(as_text=True)[-500:]
        worker.clock = time.time  # the page queued the job now
        asyncio.run(worker.run_once())
        resent = server.handler.messages[-1]
        assert resent["to"] == ["boss@example.com"]  # the envelope
        msg = parse(resent["data"])
        assert msg["To"] == "boss@example.com" and msg["Cc"] is None and msg["Bcc"] is None
        headers = "".join(f"{k}: {v}\n" for k, v in msg.items())
        assert "sales@example.com" not in headers and "ops@example.com" not in headers
    finally:
        spool.close()
