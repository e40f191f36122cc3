"""The daemon's _route keeps the decision's delivery choices in extra["route"], one job per recipient."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from appliance.calls.facts import CallFacts
from appliance.config import Config
from appliance.daemon import Appliance
from appliance.delivery.queue import ARCHIVE


class _Loop:
    def __init__(self) -> None:
        self.calls: list[object] = []

    def call_soon_threadsafe(self, fn: object) -> None:
        self.calls.append(fn)


def _tiff() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (1728, 400), 1).save(buf, format="TIFF", compression="group4", dpi=(204, 196))
    return buf.getvalue()


def _appliance(tmp_path: Path, routing: dict) -> Appliance:
    cfg = Config.from_dict({"spool": {"dir": str(tmp_path / "spool")}, "routing": routing}, base_dir=tmp_path)
    app = Appliance(cfg)
    app._loop = _Loop()  # type: ignore[assignment]
    return app


def _received(app: Appliance, **facts):
    fax = app.spool.begin_fax(1_700_000_000.0, **facts)
    app.spool.incoming_path(fax).write_bytes(_tiff())
    return app.spool.finish_fax(fax.id, 1_700_000_030.0, complete=True)


def test_route_stores_the_decision(tmp_path: Path):
    app = _appliance(tmp_path, {"default": "faxes@x.test", "rules": [
        {"name": "sales", "line": "modem:*", "called": "5551000", "to": ["sales@x.test"],
         "cc": ["boss@x.test"], "format": "pdf", "tiff": "profile-s", "subject": "Fax from {tsi}"}]})
    try:
        rec = _received(app, called_number="5551000", caller_number="5550100", remote_ident="ACME",
                        line="modem:ttyUSB0")
        app._route(rec)
        want = {"to": ["sales@x.test"], "cc": ["boss@x.test"], "format": "pdf", "tiff": "profile-s",
                "subject": "Fax from {tsi}", "rule": "sales"}
        assert rec.extra["route"] == want
        stored = app.spool.get_fax(rec.id)
        assert stored is not None and stored.extra["route"] == want
        assert [j.recipient for j in app.spool.jobs_for(rec.id)] == ["sales@x.test", "boss@x.test"]
        assert app._loop.calls  # delivery woken
    finally:
        app.spool.close()


def test_um_referral_keeps_other_extra(tmp_path: Path):
    app = _appliance(tmp_path, {"default": "faxes@x.test"})
    try:
        rec = _received(app, called_number="5551000", extra={"exchange_um": {"recipient": "bob@x.test"}})
        app._route(rec)
        stored = app.spool.get_fax(rec.id)
        assert stored is not None
        assert stored.extra["exchange_um"] == {"recipient": "bob@x.test"}
        assert stored.extra["route"] == {"to": ["bob@x.test"], "cc": [], "format": "tiff", "tiff": "profile-s",
                                         "subject": "", "rule": "Exchange UM msExchUMFaxRecipient"}
        assert [j.recipient for j in app.spool.jobs_for(rec.id)] == ["bob@x.test"]
    finally:
        app.spool.close()


def test_archive_adds_one_job_beside_the_recipients(tmp_path: Path):
    cfg = Config.from_dict({"spool": {"dir": str(tmp_path / "spool")}, "routing": {"default": "faxes@x.test"},
                            "delivery": {"archive": "var/archive"}}, base_dir=tmp_path)
    app = Appliance(cfg)
    app._loop = _Loop()  # type: ignore[assignment]
    try:
        rec = _received(app, called_number="5551000")
        app._route(rec)
        assert [j.recipient for j in app.spool.jobs_for(rec.id)] == ["faxes@x.test", ARCHIVE]
    finally:
        app.spool.close()


def test_um_call_without_a_page_gets_a_notice_job_and_stays_no_fax(tmp_path: Path):
    from base64 import b64encode

    from appliance.spandsp.t30 import CALL_DROPPED

    app = _appliance(tmp_path, {"default": "faxes@x.test"})
    try:
        um = {"recipient": "bob@x.test", "context_raw": b64encode(b'{"CallId":"c1"}').decode()}
        fax = app.spool.begin_fax(1_700_000_000.0, called_number="5551000", extra={"exchange_um": um})
        app._finish(fax, False, CallFacts(result_code=CALL_DROPPED, result_text="call dropped"))
        assert [j.recipient for j in app.spool.jobs_for(fax.id)] == ["bob@x.test"]
        assert app.spool.get_fax(fax.id).state == "no_fax"
        # without a UM referral, a call without pages owes nobody a message
        plain = app.spool.begin_fax(1_700_000_100.0, called_number="5551000")
        app._finish(plain, False, CallFacts(result_code=CALL_DROPPED, result_text="call dropped"))
        assert app.spool.jobs_for(plain.id) == []
    finally:
        app.spool.close()


def test_um_recipient_outside_accepted_domains_goes_to_the_routing_result(tmp_path: Path, caplog):
    """A referral from a trusted UM peer naming a mailbox outside routing.accepted_domains: the fax
    is delivered where routing sends it without that recipient (never lost), as ordinary mail,
    with the refusal on the record and in the log; nothing goes to the refused address."""
    import asyncio
    import email
    import logging
    from base64 import b64encode

    cfg = Config.from_dict({"spool": {"dir": str(tmp_path / "spool")},
                            "delivery": {"backend": "maildir", "url": str(tmp_path / "Maildir")},
                            "routing": {"default": "faxes@x.test", "accepted_domains": ["x.test"],
                                        "called": {"5551000": "sales@x.test"},
                                        "rules": [{"name": "ceo", "um_recipient": "^ceo@",
                                                   "use_um_recipient": True, "cc": ["pa@x.test"]}]}},
                           base_dir=tmp_path)
    app = Appliance(cfg)
    app._loop = _Loop()  # type: ignore[assignment]
    um = {"recipient": "ceo@x.test.evil.example", "context_raw": b64encode(b"CallId=c1").decode()}
    try:
        rec = _received(app, called_number="5551000", extra={"exchange_um": um})
        with caplog.at_level(logging.WARNING, logger="faxbridge"):
            app._route(rec)
        why = "'ceo@x.test.evil.example' is outside routing.accepted_domains (x.test)"
        stored = app.spool.get_fax(rec.id)
        assert stored is not None and stored.extra["route"] == {
            "to": ["sales@x.test"], "cc": [], "format": "tiff", "tiff": "tiff-f", "subject": "",
            "rule": "called 5551000", "refused": [why], "um_refused": "ceo@x.test.evil.example"}
        assert stored.extra["exchange_um"] == um  # the referral itself stays on the record
        assert [j.recipient for j in app.spool.jobs_for(rec.id)] == ["sales@x.test"]
        assert app.stats["recipients_refused"] == 1
        assert [r.getMessage() for r in caplog.records] == [f"fax {rec.id}: not sent to {why}"]
        asyncio.run(app.delivery.run_once())
        assert [j.state for j in app.spool.jobs_for(rec.id)] == ["delivered"]
        (path,) = (tmp_path / "Maildir" / "new").iterdir()
        msg = email.message_from_bytes(path.read_bytes())
        assert msg["To"] == "sales@x.test" and msg["Content-Class"] == "fax-ca"  # plain fax mail, not UM's
        assert msg["X-MS-Exchange-UM-PartnerContext"] is None
        assert "evil" not in path.read_text()
    finally:
        app.spool.close()


def test_delivery_refuses_a_queued_job_outside_accepted_domains(tmp_path: Path):
    """A job queued before the domains were narrowed (or by an older version) never leaves the box."""
    import asyncio
    import time

    cfg = Config.from_dict({"spool": {"dir": str(tmp_path / "spool")},
                            "delivery": {"backend": "maildir", "url": str(tmp_path / "Maildir")},
                            "routing": {"default": "faxes@x.test"}}, base_dir=tmp_path)
    app = Appliance(cfg)
    try:
        rec = _received(app, called_number="5551000")
        app.spool.add_jobs(rec.id, ["faxes@x.test", "eve@evil.example"], time.time())
        asyncio.run(app.delivery.run_once())
        jobs = {j.recipient: j for j in app.spool.jobs_for(rec.id)}
        assert jobs["faxes@x.test"].state == "delivered"
        assert jobs["eve@evil.example"].state == "dead"
        assert jobs["eve@evil.example"].last_error == ("not sent: 'eve@evil.example' is outside routing."
                                                       "accepted_domains (not set, so only the domain of "
                                                       "routing.default: x.test)")
        assert len(list((tmp_path / "Maildir" / "new").iterdir())) == 1
    finally:
        app.spool.close()


def test_um_notice_for_a_refused_recipient_is_not_sent(tmp_path: Path):
    from base64 import b64encode

    from appliance.spandsp.t30 import CALL_DROPPED

    app = _appliance(tmp_path, {"default": "faxes@x.test"})
    try:
        um = {"recipient": "bob@y.test", "context_raw": b64encode(b"CallId=c1").decode()}
        fax = app.spool.begin_fax(1_700_000_000.0, called_number="5551000", extra={"exchange_um": um})
        app._finish(fax, False, CallFacts(result_code=CALL_DROPPED, result_text="call dropped"))
        stored = app.spool.get_fax(fax.id)
        assert app.spool.jobs_for(fax.id) == [] and stored.state == "no_fax"
        assert stored.extra["route"]["um_refused"] == "bob@y.test"
    finally:
        app.spool.close()
