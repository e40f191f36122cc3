"""T.38 end to end: every way a call becomes T.38, over loopback SIP/UDPTL, into a real SMTP server.

Peers are told apart by source address on loopback: 127.0.0.1 is a gateway whose T.38 the
appliance accepts, 127.0.0.2 one the appliance re-INVITEs to T.38 itself (policy "request").
All calls run at once (real time, 3 pages each), then every mail is checked page by page.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import urllib.parse

import pytest

from appliance.fax.pages import FINE, STANDARD, write_fax_tiff
from appliance.fax.testpages import demo_pages

from .conftest import assert_pages_equal, finish, send_fax, tiff_attachment

pytestmark = pytest.mark.slow

PEERS = """
[[sip.peers]]
name = "gw-accept"
match = "127.0.0.1"
t38 = "accept"
exchange_um = true            # Exchange UM refers fax calls through this gateway: its Referred-By counts

[[sip.peers]]
name = "gw-request"
match = "127.0.0.2"
t38 = "request"
"""


def flood_options(port: int, count: int, seconds: float) -> int:
    """Send ``count`` OPTIONS to 127.0.0.1:port within about ``seconds``; return how many got a reply."""
    import socket
    import time

    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        me = s.getsockname()[1]
        start = time.monotonic()
        for i in range(count):
            msg = (f"OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKflood{i}\r\n"
                   f"From: <sip:flood@127.0.0.1>;tag=f{i}\r\nTo: <sip:probe@127.0.0.1>\r\n"
                   f"Call-ID: flood{i}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                   f"Content-Length: 0\r\n\r\n").encode()
            s.sendto(msg, ("127.0.0.1", port))
            time.sleep(max(0.0, start + seconds * (i + 1) / count - time.monotonic()))
            try:
                while s.recv(65536):
                    answered += 1
            except BlockingIOError:
                pass
        time.sleep(0.5)
        try:
            while s.recv(65536):
                answered += 1
        except BlockingIOError:
            pass
    return answered


def um_referred_by(recipient: str) -> str:
    ctx = "CallId=0b9c1d2e&CallerId=tel:+15550123&Extension=4242&PhoneContext=dp.contoso.test&CallerIdDisplayName=Alice"
    b64 = urllib.parse.quote(base64.b64encode(ctx.encode()).decode(), safe="")
    return (f"Referred-By: <sip:um1.contoso.test;msExchUMFaxRecipient=smtp:{recipient};"
            f"msExchUMContext={b64}>")


@pytest.mark.xdist_group("t38-a")
def test_every_negotiation_pattern_delivers_pixel_equal_pages(tmp_path, smtp, appliance_factory):
    app = appliance_factory(smtp.port, extra=PEERS)
    app.start()
    cases = [
        # (name, called, recipient, sender options, dpi, expect T.38)
        ("peer re-INVITEs to T.38", "5551000", "sales@example.test", ["--t38", "reinvite"], FINE, True),
        ("T.38 in the initial INVITE, over TCP", "5551001", "support@example.test",
         ["--t38", "initial", "--transport-tcp"], STANDARD, True),
        ("appliance re-INVITEs to T.38", "5551002", "billing@example.test",
         ["--t38", "accept", "--bind", "127.0.0.2"], STANDARD, True),
        ("peer refuses the appliance's T.38: G.711", "5551003", "legal@example.test",
         ["--t38", "refuse", "--bind", "127.0.0.2"], STANDARD, False),
        ("T.38 with 5% packet loss", "5551004", "hr@example.test",
         ["--t38", "reinvite", "--loss", "0.05"], STANDARD, True),
        ("Exchange UM referral", "4242", "bob@example.test",
         ["--t38", "reinvite", "--header", um_referred_by("bob@example.test")], STANDARD, True),
    ]
    sent, procs = {}, []
    for i, (name, called, rcpt, opts, dpi, _) in enumerate(cases):
        pages = demo_pages(3, dpi, seed=10 + i)
        path = tmp_path / f"doc{i}.tif"
        write_fax_tiff(pages, path, dpi)
        sent[rcpt] = pages
        transport = "tcp" if "--transport-tcp" in opts else "udp"
        opts = [o for o in opts if o != "--transport-tcp"]
        procs.append((name, send_fax(app.uri(called, transport), path, "--caller", f"55502{i:02d}", *opts)))
    for name, p in procs:
        rc, out = finish(p)
        assert rc == 0, f"{name}: {out}"
    msgs = smtp.wait_for(len(cases), timeout=60)
    assert sorted(m["To"] for m in msgs) == sorted(sent)
    for m in msgs:
        assert_pages_equal(tiff_attachment(m), sent[m["To"]])
    db = sqlite3.connect(app.workdir / "spool" / "spool.db")
    modes = {caller: json.loads(extra).get("mode", "") for caller, extra in
             db.execute("SELECT caller_number, extra FROM faxes")}
    for i, (name, *_rest, t38) in enumerate(cases):
        mode = modes[f"55502{i:02d}"]
        assert (mode == "T.38") is t38, f"{name}: mode {mode}"
    extra = {r[0]: json.loads(r[1]) for r in db.execute("SELECT called_number, extra FROM faxes")}
    um = extra["4242"]["exchange_um"]
    assert um["recipient"] == "bob@example.test" and um["context"]["CallId"] == "0b9c1d2e"
    lossy = extra["5551004"]
    assert lossy["udptl"].get("recovered_redundancy", 0) > 0, lossy["udptl"]


@pytest.mark.xdist_group("t38-b")
def test_glare_audio_and_image_offer_silent_gateway_refreshes_and_return_to_audio(tmp_path, smtp, appliance_factory):
    """The harder patterns: both sides re-INVITE to T.38 about the same instant (when they cross: 491
    and the RFC 3261 14.1 backoff, proven with fixed clocks in tests/sip/test_reinvite.py); audio and
    T.38 offered together; a gateway that agrees to T.38 and never sends it (fall back to G.711);
    session refreshes every 4 s during the fax and a re-INVITE back to audio after it."""
    # a switch back to G.711 starts T.30 over (CED, DIS...): give it more than the 8 s other tests use
    app = appliance_factory(smtp.port, extra=PEERS, no_signal_timeout=30)
    app.start()
    cases = [
        ("both sides want T.38 (glare when they cross)", "5551000", "sales@example.test",
         ["--t38", "reinvite", "--bind", "127.0.0.2"], True),
        ("audio and T.38 in the INVITE", "5551001", "support@example.test", ["--t38", "initial-both"], True),
        ("gateway agrees to T.38, sends none", "5551002", "billing@example.test",
         ["--t38", "silent", "--bind", "127.0.0.2"], False),
        ("refreshes mid-fax, audio after", "5551003", "legal@example.test",
         ["--t38", "reinvite", "--refresh", "4", "--audio-after"], True),
    ]
    sent, procs = {}, []
    for i, (name, called, rcpt, opts, _) in enumerate(cases):
        pages = demo_pages(3, STANDARD, seed=20 + i)
        path = tmp_path / f"doc{i}.tif"
        write_fax_tiff(pages, path, STANDARD)
        sent[rcpt] = pages
        procs.append((name, send_fax(app.uri(called), path, "--caller", f"55503{i:02d}", *opts)))
    outs = {}
    for name, p in procs:
        rc, out = finish(p)
        assert rc == 0, f"{name}: {out}"
        outs[name] = out
    assert "refresh(es)" in outs["refreshes mid-fax, audio after"]
    assert "back to audio after the fax" in outs["refreshes mid-fax, audio after"]
    msgs = smtp.wait_for(len(cases), timeout=60)
    assert sorted(m["To"] for m in msgs) == sorted(sent)
    for m in msgs:
        assert_pages_equal(tiff_attachment(m), sent[m["To"]])
    db = sqlite3.connect(app.workdir / "spool" / "spool.db")
    extra = {caller: json.loads(x) for caller, x in db.execute("SELECT caller_number, extra FROM faxes")}
    for i, (name, *_r, t38) in enumerate(cases):
        e = extra[f"55503{i:02d}"]
        assert (e["mode"] == "T.38") is t38, f"{name}: {e['mode']} {e['switches']}"
    silent = extra["5550302"]
    assert any("no UDPTL" in s for s in silent["switches"]), silent["switches"]


@pytest.mark.xdist_group("t38-c")
def test_fax_over_sip_tls_with_verified_certificate(tmp_path, smtp, appliance_factory):
    """SIP over TLS (as Exchange UM's FaxServerURI ;transport=tls uses): the sender verifies the
    appliance's certificate against a CA, then sends 3 pages over T.38."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "faxbridge.test")
    cert.private_key_pem.write_to_path(str(tmp_path / "sip.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "sip.crt"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    app = appliance_factory(smtp.port, extra=PEERS, tls=(tmp_path / "sip.crt", tmp_path / "sip.key"))
    app.start()
    pages = demo_pages(3, STANDARD, seed=30)
    write_fax_tiff(pages, tmp_path / "doc.tif", STANDARD)
    sender = send_fax(app.uri("5551000", "tls"), tmp_path / "doc.tif", "--t38", "reinvite",
                      "--ca", str(tmp_path / "ca.pem"))
    # once the call is up, a flood of OPTIONS from the same address: rate-limited, the call undisturbed
    app.wait_log("switched to T.38", timeout=30)
    answered = flood_options(app.sip_port, count=3000, seconds=3.0)
    rc, out = finish(sender)
    assert rc == 0, out
    assert 0 < answered < 3000 * 0.2, answered  # the burst allowance is answered, the rest dropped
    (msg,) = smtp.wait_for(1, timeout=60)
    assert_pages_equal(tiff_attachment(msg), pages)
    db = sqlite3.connect(app.workdir / "spool" / "spool.db")
    ((line, extra),) = db.execute("SELECT line, extra FROM faxes").fetchall()
    assert json.loads(extra)["mode"] == "T.38"
    # a sender that does not trust the certificate never gets a call through
    rc, out = finish(send_fax(app.uri("5551000", "tls"), tmp_path / "doc.tif", "--timeout", "20"))
    assert rc != 0, out
