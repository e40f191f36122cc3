"""Who may name a fax's recipient (issue 10, finding 3): Exchange UM's Referred-By fields count only
from a [[sip.peers]] entry with ``exchange_um = true``, and only into ``routing.accepted_domains``.

The daemon runs in this process with its real SIP listener, spool, delivery worker (Maildir) and
control socket on loopback; the caller is our own SIP endpoint on 127.0.0.1 or 127.0.0.2, which
sends a referral and hangs up as soon as it is answered: a call without pages, which for a UM
referral the daemon honours owes the UM mailbox a "missed fax call" notice.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import shutil
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest

from appliance.config import Config
from appliance.control import ControlClient
from appliance.daemon import Appliance
from appliance.media.channel import MediaChannel
from appliance.sip import events as sipev
from appliance.sip.sdp import offer_audio
from appliance.sip.transport import SipEndpoint
from appliance.spool.store import FaxRecord, Job
from tests.conftest import free_port
from tests.budgets import LOADED
from tests.control.harness import short_dir

CONTEXT = "CallId=0b9c1d2e&CallerId=tel:+15550123&Extension=4242&PhoneContext=dp.example.test"
#: the RTP ports of this module's daemons: per process, so parallel workers do not collide
RTP = 45000 + (os.getpid() % 90) * 50


def referred_by(recipient: str) -> str:
    b64 = urllib.parse.quote(base64.b64encode(CONTEXT.encode()).decode(), safe="")
    return f"<sip:um1.example.test;msExchUMFaxRecipient=smtp:{recipient};msExchUMContext={b64}>"


@pytest.fixture
def sockdir() -> Iterator[Path]:
    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def appliance_side_effects() -> Iterator[None]:
    """Appliance.start() tunes the process (gc off and frozen, a short switch interval): undo it."""
    interval = sys.getswitchinterval()
    yield
    gc.unfreeze()
    gc.enable()
    sys.setswitchinterval(interval)


def config(tmp_path: Path, sockdir: Path, peers: list[dict[str, Any]], routing: dict[str, Any]) -> Config:
    sip: dict[str, Any] = {"listen": [f"udp:127.0.0.1:{free_port()}"], "rtp_ports": [RTP, RTP + 49]}
    if peers:
        sip["peers"] = peers
    return Config.from_dict({
        "sip": sip, "spool": {"dir": "spool"}, "delivery": {"backend": "maildir", "url": "Maildir"},
        "routing": routing, "web": {"enabled": False}, "system": {"control_socket": str(sockdir / "fb.sock")},
    }, base_dir=tmp_path)


async def referred_call(app: Appliance, source: str, recipient: str) -> str:
    """INVITE with a UM referral from ``source``; hang up once answered.  The call's end reason."""
    port = app.sip.locals[0].port
    ep = SipEndpoint()
    await ep.start([("udp", source, 0)])
    ch = await MediaChannel.open_ephemeral(source)
    try:
        call_id = ep.invite(f"sip:5551000@127.0.0.1:{port}", from_uri=f"sip:5550199@{source}",
                            sdp=offer_audio(source, ch.port, 1, 1), remote=("127.0.0.1", port),
                            headers=[("Referred-By", referred_by(recipient))])
        while True:
            ev = await asyncio.wait_for(ep.events.get(), LOADED)
            if isinstance(ev, sipev.CallAnswered) and ev.call_id == call_id:
                ep.hangup(call_id)
            elif isinstance(ev, (sipev.CallEnded, sipev.CallFailed)) and ev.call_id == call_id:
                return ev.reason
    finally:
        ch.close()
        await ep.close()


async def until(pred: Any, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def one_call(cfg: Config, source: str, recipient: str) -> tuple[FaxRecord, list[Job], dict[str, Any]]:
    """Start the daemon, place one referred call, let delivery run: the fax, its jobs and the
    daemon's status as its control socket gives it."""
    app = Appliance(cfg)
    await app.start()
    try:
        background = len(app._tasks)  # the daemon's own loops; a call adds one task until it is routed
        reason = await referred_call(app, source, recipient)
        assert reason == "local hangup", reason
        await until(lambda: app.stats["no_fax"] == 1 and len(app._tasks) == background, LOADED, "call routed")
        (fax,) = app.spool.list_faxes(limit=10)
        await until(lambda: all(j.state == "delivered" for j in app.spool.jobs_for(fax.id)), LOADED, "delivery")
        status = await asyncio.to_thread(
            lambda: ControlClient(cfg.path(cfg.system.control_socket), LOADED).request({"cmd": "status"}))
        return app.spool.get_fax(fax.id) or fax, app.spool.jobs_for(fax.id), status
    finally:
        await app.stop()


def maildir(tmp_path: Path) -> list[Path]:
    new = tmp_path / "Maildir" / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


@pytest.mark.parametrize("peers", [
    [{"name": "gw", "match": "127.0.0.1"}],  # a configured peer that is not exchange_um
    [],  # no peers at all: the implicit "private-network" peer, never an exchange_um one
], ids=["configured-peer", "implicit-private-network"])
def test_referral_from_a_peer_that_is_not_exchange_um_is_ignored_logged_and_counted(
        tmp_path: Path, sockdir: Path, caplog: pytest.LogCaptureFixture, peers: list[dict[str, Any]]) -> None:
    """Before the fix any accepted source chose the recipient: a no-page call mailed a missed-call
    notice to whatever address the caller named (and a fax went there, over every rule)."""
    cfg = config(tmp_path, sockdir, peers, {"default": "faxes@example.test"})
    evil = "eve@evil.example"  # a plain address: the parser passes it, only trust can stop it
    with caplog.at_level(logging.WARNING, logger="faxbridge"):
        fax, jobs, status = asyncio.run(asyncio.wait_for(one_call(cfg, "127.0.0.1", evil), 4 * LOADED))
    assert fax.state == "no_fax" and jobs == []  # no notice, to anyone
    assert maildir(tmp_path) == []
    assert "exchange_um" not in fax.extra  # nothing stored as trusted
    peer = peers[0]["name"] if peers else "private-network"
    assert fax.extra["um_referral_ignored"] == {"why": f"peer {peer!r} is not an exchange_um peer",
                                                "recipient": "eve@evil.example"}
    assert status["stats"]["um_referrals_ignored"] == 1
    logged = [r.getMessage() for r in caplog.records if "Exchange UM referral ignored" in r.getMessage()]
    assert logged == [f"call {fax.call_id} from 127.0.0.1: Exchange UM referral ignored (peer {peer!r} is "
                      "not an exchange_um peer): recipient 'eve@evil.example' not used"]


def test_referral_from_an_exchange_um_peer_gets_its_missed_call_notice(tmp_path: Path, sockdir: Path) -> None:
    peers = [{"name": "gw", "match": "127.0.0.1"}, {"name": "um-gw", "match": "127.0.0.2", "exchange_um": True}]
    cfg = config(tmp_path, sockdir, peers, {"default": "faxes@example.test"})
    fax, jobs, status = asyncio.run(asyncio.wait_for(one_call(cfg, "127.0.0.2", "bob@example.test"), 4 * LOADED))
    assert fax.extra["exchange_um"]["recipient"] == "bob@example.test"
    assert fax.extra["exchange_um"]["context"]["CallId"] == "0b9c1d2e"
    assert [(j.recipient, j.state) for j in jobs] == [("bob@example.test", "delivered")]
    (mail,) = maildir(tmp_path)
    text = mail.read_text()
    assert "X-MS-Exchange-UM-PartnerStatus: 2.4" in text and "Content-Class: MS-Exchange-UM-Partner" in text
    assert status["stats"]["um_referrals_ignored"] == 0 and status["stats"]["recipients_refused"] == 0


def test_exchange_um_recipient_outside_accepted_domains_gets_no_notice(tmp_path: Path, sockdir: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Even a trusted UM names only mailboxes of the accepted domains; the refusal is on the record."""
    peers = [{"name": "um-gw", "match": "127.0.0.2", "exchange_um": True}]
    cfg = config(tmp_path, sockdir, peers, {"default": "faxes@example.test", "accepted_domains": ["example.test"]})
    with caplog.at_level(logging.WARNING, logger="faxbridge"):
        fax, jobs, status = asyncio.run(asyncio.wait_for(one_call(cfg, "127.0.0.2", "bob@sub.example.test"),
                                                         4 * LOADED))
    why = "'bob@sub.example.test' is outside routing.accepted_domains (example.test)"
    assert jobs == [] and maildir(tmp_path) == [] and fax.state == "no_fax"
    assert fax.extra["route"]["refused"] == [why] and fax.extra["route"]["um_refused"] == "bob@sub.example.test"
    assert status["stats"]["recipients_refused"] == 1
    assert any(r.getMessage() == f"fax {fax.id}: not sent to {why}" for r in caplog.records)
