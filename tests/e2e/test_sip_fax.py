"""A fax sent over SIP (G.711) arrives as an email with its TIFF: real calls, real time.

Each test places real fax calls with spandsp on both ends over loopback SIP/RTP, so each takes
30-100 s; calls inside a test run concurrently and pytest-xdist runs tests side by side.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.fax.pages import FINE, STANDARD, write_fax_tiff
from appliance.fax.testpages import demo_pages
from tests.budgets import LOADED

from .conftest import assert_pages_equal, finish, send_fax, tiff_attachment

pytestmark = pytest.mark.slow


def _pages(tmp: Path, name: str, dpi: tuple[int, int], count: int = 3, seed: int = 1):
    pages = demo_pages(count, dpi, seed=seed)
    path = tmp / f"{name}.tif"
    write_fax_tiff(pages, path, dpi)
    return pages, path


@pytest.mark.xdist_group("calls-a")
def test_four_simultaneous_calls_codecs_ecm_resolutions_routing(tmp_path, smtp, appliance_factory):
    """Four calls at once, PCMU/PCMA x ECM on/off x fine/standard, each routed by its called number."""
    app = appliance_factory(smtp.port)
    app.start()
    cases = [
        # called, expected recipient, codec, ecm, dpi, transport
        ("5551000", "sales@example.test", "PCMU", True, FINE, "udp"),
        ("5551001", "support@example.test", "PCMA", True, STANDARD, "tcp"),
        ("5551002", "billing@example.test", "PCMU", False, STANDARD, "udp"),
        ("5559999", "faxes@example.test", "PCMA", False, FINE, "udp"),
    ]
    sent, procs = {}, []
    for i, (called, rcpt, codec, ecm, dpi, transport) in enumerate(cases):
        pages, path = _pages(tmp_path, f"doc{i}", dpi, seed=i + 1)
        sent[rcpt] = (pages, codec, ecm, dpi)
        args = ["--codec", codec, "--caller", f"55501{i:02d}"] + ([] if ecm else ["--no-ecm"])
        procs.append(send_fax(app.uri(called, transport), path, *args))
    for p in procs:
        rc, out = finish(p)
        assert rc == 0, out
    msgs = smtp.wait_for(4, timeout=60)
    assert sorted(m["To"] for m in msgs) == sorted(sent)
    for m in msgs:
        pages, codec, ecm, dpi = sent[m["To"]]
        assert m["Subject"].endswith("(3 pages)"), m["Subject"]
        assert m["X-FaxNumberOfPages"] == "3"
        assert_pages_equal(tiff_attachment(m), pages)
    # the spool recorded what the calls were (codec, ECM) — the fax facts, not just the mail
    db = sqlite3.connect(app.workdir / "spool" / "spool.db")
    rows = {r[0]: r[1:] for r in db.execute("SELECT called_number, ecm, resolution, state, pages FROM faxes")}
    for called, rcpt, codec, ecm, dpi, _ in cases:
        assert rows[called][0] == int(ecm), (called, rows[called])
        assert rows[called][1] == f"{dpi[0]}x{dpi[1]}"
        assert rows[called][2] == "delivered"
        assert rows[called][3] == 3


@pytest.mark.xdist_group("calls-b")
def test_caller_hangs_up_after_page_2_delivers_two_pages_marked_incomplete(tmp_path, smtp, appliance_factory):
    app = appliance_factory(smtp.port)
    app.start()
    pages, path = _pages(tmp_path, "doc", STANDARD)
    rc, out = finish(send_fax(app.uri("5551000"), path, "--hangup-after", "2"))
    assert "hung up after page 2" in out, out
    (msg,) = smtp.wait_for(1, timeout=60)
    assert "Incomplete" in msg["Subject"] and "2 pages" in msg["Subject"], msg["Subject"]
    assert msg["X-FaxNumberOfPages"] == "2"
    assert_pages_equal(tiff_attachment(msg), pages[:2])
    body = msg.get_body(("plain",)).get_content()
    assert "incomplete" in body.lower()


@pytest.mark.xdist_group("calls-c")
def test_smtp_down_when_fax_arrives_then_delivered_when_back(tmp_path, smtp, appliance_factory):
    smtp.stop()  # nothing listens on the port the appliance delivers to
    app = appliance_factory(smtp.port)
    app.start()
    pages, path = _pages(tmp_path, "doc", STANDARD, count=1)
    rc, out = finish(send_fax(app.uri("5551000"), path, "--codec", "PCMA"))
    assert rc == 0, out
    app.wait_log("retrying in", timeout=30)  # the delivery failed temporarily at least once
    smtp.start()
    (msg,) = smtp.wait_for(1, timeout=30)
    assert_pages_equal(tiff_attachment(msg), pages)
    app.wait_settled()  # nothing left to send: a second copy would have come by now
    assert len(smtp.handler.messages) == 1, "delivered more than once"


@pytest.mark.xdist_group("calls-d")
def test_sigkill_after_receive_before_delivery_delivers_exactly_once(tmp_path, smtp, appliance_factory):
    smtp.handler.fail_with = "451 4.3.0 try again later"  # hold the fax in the queue
    app = appliance_factory(smtp.port, retry_initial=2.0)
    app.start()
    pages, path = _pages(tmp_path, "doc", FINE, count=1)
    rc, out = finish(send_fax(app.uri("5551001"), path))
    assert rc == 0, out
    app.wait_log("retrying in", timeout=30)
    app.kill()
    smtp.handler.fail_with = None
    app.start()  # same spool: recovery must requeue the job
    (msg,) = smtp.wait_for(1, timeout=40)
    assert msg["To"] == "support@example.test"
    assert_pages_equal(tiff_attachment(msg), pages)
    app.wait_settled()
    assert len(smtp.handler.messages) == 1, "delivered more than once after the restart"


class SilentTerminal:
    """A caller that never sends a fax signal (a misrouted voice call)."""

    def receive_g711(self, payload: bytes) -> None:
        pass

    def receive_fillin(self, samples: int) -> None:
        pass

    def transmit_g711(self, samples: int = 160) -> bytes:
        return b"\xff" * samples


@pytest.mark.xdist_group("calls-e")
def test_call_without_fax_signal_is_ended_and_nothing_mailed_daemon_survives_garbage(tmp_path, smtp,
                                                                                     appliance_factory):
    import asyncio
    import socket

    from appliance.media.channel import MediaChannel
    from appliance.media.clock import MediaClock
    from appliance.sip import events as sipev
    from appliance.sip.sdp import offer_audio, parse_answer
    from appliance.sip.transport import SipEndpoint

    app = appliance_factory(smtp.port)
    app.start()
    # hostile datagrams first: the daemon must shrug them off
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"\x00" * 50, b"INVITE sip:x SIP/2.0\r\n\r\n", b"SIP/2.0 200 OK\r\nVia: \r\n\r\n",
                     "OPTIONS sip:\u00e9 SIP/2.0\r\nVia: ???\r\n\r\n".encode(), b"\r\n\r\n" * 1000):
            s.sendto(junk, ("127.0.0.1", app.sip_port))

    async def call() -> tuple[str, float]:
        ep = SipEndpoint()
        await ep.start([("udp", "127.0.0.1", 0)])
        ch = await MediaChannel.open_ephemeral("127.0.0.1")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        call_id = ep.invite(app.uri("5551000"), from_uri="sip:5550199@127.0.0.1",
                            sdp=offer_audio("127.0.0.1", ch.port, 1, 1), remote=("127.0.0.1", app.sip_port))
        reason = ""
        try:
            while True:
                ev = await asyncio.wait_for(ep.events.get(), 30)
                if isinstance(ev, sipev.CallAnswered):
                    ans = parse_answer(str(ev.answer))
                    ch.remote = ans.remote
                    ch.start(SilentTerminal(), MediaClock())
                elif isinstance(ev, (sipev.CallEnded, sipev.CallFailed)) and ev.call_id == call_id:
                    reason = ev.reason
                    break
        finally:
            ch.close()
            await ep.close()
        return reason, loop.time() - t0

    reason, took = asyncio.run(call())
    assert reason == "remote BYE", reason  # the appliance hung up, not us
    assert 7 <= took <= 20, took  # no_signal_timeout = 8 s in the test config
    app.wait_log("no pages received", timeout=LOADED)
    db = sqlite3.connect(app.workdir / "spool" / "spool.db")
    (state, text), = db.execute("SELECT state, result_text FROM faxes").fetchall()
    assert state == "no_fax" and "no fax signal" in text
    app.wait_settled()
    assert smtp.handler.messages == []  # never a "fax received" mail without a fax
    assert app.proc is not None and app.proc.poll() is None


@pytest.mark.xdist_group("calls-e")
def test_daemon_killed_mid_call_keeps_the_pages_it_had_and_delivers_them_incomplete(tmp_path, smtp,
                                                                                   appliance_factory):
    """SIGKILL during page 3 of 3: after a restart the two received pages go out, marked incomplete."""
    app = appliance_factory(smtp.port)
    app.start()
    pages, path = _pages(tmp_path, "doc", STANDARD)
    sender = send_fax(app.uri("5551002"), path, "--timeout", "120")
    app.wait_log("page 2 received", timeout=120)
    app.kill()
    sender.kill()  # the line is dead for the sender too
    sender.wait()
    app.start()
    (msg,) = smtp.wait_for(1, timeout=40)
    assert msg["To"] == "billing@example.test"
    assert "Incomplete" in msg["Subject"], msg["Subject"]
    assert_pages_equal(tiff_attachment(msg), pages[:2])


@pytest.mark.xdist_group("calls-b")
def test_referral_from_a_peer_that_is_not_exchange_um_is_ignored(tmp_path, smtp, appliance_factory):
    """No [[sip.peers]]: the implicit private-network peer lets 127.0.0.1 call, but it is never an
    exchange_um peer.  Its Referred-By naming an outside mailbox is ignored: the fax goes where the
    called number routes it, as a plain fax mail, and the daemon counts the attempt."""
    import base64
    import urllib.parse

    from appliance.control import ControlClient
    from tests.control.harness import short_dir

    sock = short_dir() / "fb.sock"
    app = appliance_factory(smtp.port, extra=f'[system]\ncontrol_socket = "{sock}"\n')
    app.start()
    ctx = urllib.parse.quote(base64.b64encode(b"CallId=c1&CallerIdDisplayName=Eve").decode(), safe="")
    referral = f"Referred-By: <sip:um.evil.example;msExchUMFaxRecipient=smtp:eve@evil.example;msExchUMContext={ctx}>"
    pages, path = _pages(tmp_path, "doc", STANDARD, count=1)
    rc, out = finish(send_fax(app.uri("5551000"), path, "--header", referral))
    assert rc == 0, out
    (msg,) = smtp.wait_for(1, timeout=60)
    assert msg["To"] == "sales@example.test" and msg["Content-Class"] == "fax-ca"
    assert msg["X-MS-Exchange-UM-PartnerContext"] is None
    assert_pages_equal(tiff_attachment(msg), pages)
    app.wait_settled()
    assert [rcpts for _, rcpts, _ in smtp.handler.messages] == [["sales@example.test"]]
    status = ControlClient(sock, LOADED).request({"cmd": "status"})
    assert status["stats"]["um_referrals_ignored"] == 1
    assert "Exchange UM referral ignored (peer 'private-network' is not an exchange_um peer): " \
           "recipient 'eve@evil.example' not used" in app.log_text()
    sock.unlink(missing_ok=True)
    sock.parent.rmdir()
