"""Appliance.reload_config: a saved file takes effect without a restart, calls in progress keep theirs.

A real Appliance (real spool, real SIP endpoint objects, not started: no sockets needed for what
reload touches) and a real configuration file edited the way the web UI edits it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from appliance.config import Config
from appliance.daemon import Appliance
from appliance.calls.sip_call import InboundSipCall
from appliance.media.channel import MediaChannel
from appliance.web.tomledit import ConfigDoc
from tests.budgets import async_wait_until

FILE = """# the box
[spool]
dir = "spool"  # beside this file

[fax]
ident = "+49 30 1"

[routing]
default = "old@example.com"

[delivery]
backend = "maildir"
url = "Maildir"
"""


def _appliance(tmp_path: Path) -> Appliance:
    path = tmp_path / "faxbridge.toml"
    path.write_text(FILE)
    return Appliance(Config.load(path))


def test_reload_applies_routing_delivery_and_keeps_the_call_in_progress(tmp_path: Path) -> None:
    app = _appliance(tmp_path)

    async def go() -> dict:
        channel = await MediaChannel.open(app.ports, "127.0.0.1", payload_type=0, remote=None, delay=0.06)
        call = InboundSipCall("call-1", app.cfg, app.sip, channel, app.media_clock, tmp_path / "rx.tif",
                              "127.0.0.1")
        app.calls["call-1"] = call
        try:
            doc = ConfigDoc.load(tmp_path / "faxbridge.toml")
            doc.set("routing", "default", "new@example.com")
            doc.set("delivery", "backend", "smtp")
            doc.set("delivery", "url", "smtp://127.0.0.1:2525")
            doc.set("delivery", "username", "fax")
            doc.set_secret("delivery", "password", "pw-for-reload")
            doc.set("fax", "ident", "+49 30 2")
            doc.set_entries("sip", "peers", [{"name": "gw", "match": "192.0.2.10", "t38": "request"}], [None])
            doc.save()
            reply = await app.reload_config()
            assert app.calls["call-1"] is call
            assert call.cfg.fax.ident == "+49 30 1"  # answered with the old settings, keeps them
            assert call.cfg.routing.default == "old@example.com"
            return reply
        finally:
            channel.close()

    try:
        reply = asyncio.run(go())
        assert reply["ok"] is True
        assert {"delivery", "routing", "fax", "sip.peers"} <= set(reply["applied"])
        assert reply["restart"] == []
        assert app.cfg.routing.default == "new@example.com"
        assert app.cfg.fax.ident == "+49 30 2"
        assert app.delivery.cfg.backend == "smtp" and app.delivery.cfg.url == "smtp://127.0.0.1:2525"
        assert app.delivery.cfg.password == "pw-for-reload"  # from secrets.toml
        peer = app.peers.match("192.0.2.10", "udp")
        assert peer is not None and peer.t38 == "request"
        assert app.sip.gate.peers is app.peers  # the call gate admits by the new table
        assert app.peers.match("203.0.113.9", "udp") is None
    finally:
        app.spool.close()


def test_reload_names_what_needs_a_restart_and_refuses_a_bad_file(tmp_path: Path) -> None:
    app = _appliance(tmp_path)
    try:
        doc = ConfigDoc.load(tmp_path / "faxbridge.toml")
        doc.set("sip", "listen", ["udp:127.0.0.1:5070"])
        doc.save()
        reply = asyncio.run(app.reload_config())
        assert reply["ok"] and "sip.listen" in reply["restart"]

        (tmp_path / "faxbridge.toml").write_text(FILE.replace('default = "old@example.com"', 'default = "nobody"'))
        reply = asyncio.run(app.reload_config())
        assert reply["ok"] is False and "routing.default" in reply["error"]
        assert app.cfg.routing.default == "old@example.com"  # the running settings stay
    finally:
        app.spool.close()


def test_reload_starts_a_modem_line_for_a_new_device(tmp_path: Path) -> None:
    app = _appliance(tmp_path)
    device = str(tmp_path / "ttyFAKE0")  # absent: the line waits for it ("down")

    async def go() -> None:
        doc = ConfigDoc.load(tmp_path / "faxbridge.toml")
        doc.set("modem", "devices", [device])
        doc.set("modem", "rings", 4)
        doc.save()
        reply = await app.reload_config()
        assert "modem" in reply["applied"]
        assert app.modems is not None and device in app.modems.lines
        assert app.modems.lines[device].settings.rings == 4
        await async_wait_until(lambda: app.modems.lines[device].state == "down", "the new line is down")
        await app.modems.stop()

    try:
        asyncio.run(go())
    finally:
        app.spool.close()


def test_run_and_web_without_config_load_the_file_the_web_ui_wrote(tmp_path: Path, monkeypatch) -> None:
    from appliance.startup import load_config as _load

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAXBRIDGE_STATE_DIR")  # the default state directory: ./var
    assert _load(None).source is None  # nothing written yet: the embedded defaults
    running = _load(None)
    doc = ConfigDoc.for_config(running)
    doc.set("routing", "default", "desk@example.com")
    doc.save()
    cfg = _load(None)
    assert cfg.source == (tmp_path / "var" / "faxbridge.toml").resolve()
    assert cfg.routing.default == "desk@example.com"
    assert cfg.path(cfg.spool.dir).resolve() == running.path(running.spool.dir).resolve()


def test_reload_registers_a_new_account_and_unregisters_a_removed_one(tmp_path: Path) -> None:
    """Against a real registrar on loopback UDP (the SIP tests' digest-checking one)."""
    from tests.sip.test_registration import Registrar

    app = _appliance(tmp_path)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        transport, registrar = await loop.create_datagram_endpoint(Registrar, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        await app.sip.start([("udp", "127.0.0.1", 0)])
        try:
            doc = ConfigDoc.load(tmp_path / "faxbridge.toml")
            doc.set_entries("sip", "registrations", [{"name": "pbx", "registrar": f"sip:127.0.0.1:{port}",
                                                      "user": "5551000", "auth_user": "fax", "expires": 120}])
            doc.set_secret("sip", "password", "s3cret", ("registrations", "pbx"))
            doc.save()
            reply = await app.reload_config()
            assert "sip.registrations" in reply["applied"] and reply["restart"] == []
            await async_wait_until(lambda: registrar.bindings, "registered")
            assert list(registrar.bindings) == ["<sip:5551000@127.0.0.1>"]
            assert [r.name for r in app.sip.registrations] == ["pbx"]

            doc = ConfigDoc.load(tmp_path / "faxbridge.toml")
            doc.set_entries("sip", "registrations", [])
            doc.save()
            reply = await app.reload_config()
            assert "sip.registrations" in reply["applied"]
            assert registrar.bindings == {} and app.sip.registrations == []
            assert "s3cret" not in (tmp_path / "secrets.toml").read_text()  # its secret left with it
        finally:
            await app.sip.close()
            transport.close()

    try:
        asyncio.run(go())
    finally:
        app.spool.close()
