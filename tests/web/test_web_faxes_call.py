"""The fax page of a real received fax read as a person reads it, and its call diagnostics file.

The fax is received as the daemon receives one, with the daemon's own parts and no sockets
between them: spandsp sends it as G.711 through our RTP packetiser and playout buffer into an
answering spandsp terminal (ReceiveSession, as inbound.py drives it); the call's facts are put
together by InboundSipCall.media_facts over a real MediaChannel, its SIP messages kept by the
transport's MessageLog, its packets by MediaCapture; the spool stores it and the router routes
it.  The page must show the call in words: no Python value (no "{", "[]", "None") and nothing
from the call unescaped; the download must hold what a support engineer needs, the pcap parsed
with dpkt.
"""

from __future__ import annotations

import html
import io
import json
import random
import re
import socket
import zipfile
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from markupsafe import escape
from webfax import T0, XSS

from appliance.calls.facts import CallFacts, CaptureFacts
from appliance.config import Config, FaxConfig, RoutingConfig
from appliance.fax.pages import FINE, write_fax_tiff
from appliance.fax.session import ReceiveSession
from appliance.fax.testpages import demo_pages
from appliance.calls.sip_call import InboundSipCall
from appliance.media.capture import MediaCapture
from appliance.media.channel import MediaChannel
from appliance.media.rtp import PT_PCMU, RtpPacket, RtpStream
from appliance.routing.router import route
from appliance.sip.events import Local
from appliance.sip.message import SipRequest, SipResponse
from appliance.sip.messagelog import MessageLog, messages_text
from appliance.spandsp.audio import AudioFaxTerminal
from appliance.spool.store import FaxRecord, Spool
from tests.provided import require_import

#: a TSI is 20 printable characters: enough for markup
HOSTILE_TSI = "<b onclick='x'>7</b>"
PEER = ("192.0.2.10", 5004)
LOCAL = ("127.0.0.1", 40000)
CALL_ID = "a84b4c76e66710@192.0.2.10"


def sip_messages() -> bytes:
    """The INVITE, our 200 and the caller's BYE, through the transport's own message log."""
    log = MessageLog()
    local = Local("udp", "127.0.0.1", 5060)
    head = [("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds"), ("Max-Forwards", "70"),
            ("From", f'"{XSS}" <sip:+49301234@192.0.2.10>;tag=1928301774'), ("To", "<sip:5551000@127.0.0.1>"),
            ("Call-ID", CALL_ID), ("CSeq", "1 INVITE"), ("Contact", "<sip:gw@192.0.2.10>")]
    log.follow(CALL_ID)
    log.received(CALL_ID, bytes(SipRequest("INVITE", "sip:5551000@127.0.0.1", head)), ("192.0.2.10", 5060), local, T0)
    log.sent(bytes(SipResponse(200, "OK", head[:2] + head[2:4] + [("Call-ID", CALL_ID), ("CSeq", "1 INVITE")])),
             ("192.0.2.10", 5060), local, T0 + 0.1)
    log.received(CALL_ID, bytes(SipRequest("BYE", "sip:5551000@127.0.0.1", head[:5] + [("CSeq", "2 BYE")])),
                 ("192.0.2.10", 5060), local, T0 + 60)
    record = log.take(CALL_ID)
    assert record is not None
    return messages_text(record).encode()


def receive_over_rtp(spool: Spool, tmp_path: Path, *, ecm: bool = True, capture: bool = True) -> FaxRecord:
    """A two-page fax over G.711, stored, routed and queued as the daemon does it."""
    write_fax_tiff(demo_pages(2, FINE), tmp_path / "tx.tif", FINE)
    fax = spool.begin_fax(T0, line="sip:gw1", call_id=CALL_ID, caller_number="+49 30 1234", caller_name=XSS,
                          called_number="5551000",
                          extra={"remote": "192.0.2.10:5060", "diversion": [], "peer": "gw1"})
    tx = AudioFaxTerminal(calling=True, tx_file=tmp_path / "tx.tif", ident=HOSTILE_TSI, ecm=ecm)
    rx = AudioFaxTerminal(calling=False, rx_file=spool.incoming_path(fax), ident="5551000", ecm=ecm)
    session = ReceiveSession(rx, 0.0, FaxConfig())
    inbound, outbound = RtpStream(PT_PCMU, random.Random(1)), RtpStream(PT_PCMU, random.Random(2))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    channel = MediaChannel(sock, None, payload_type=PT_PCMU, remote=PEER)
    pcap = MediaCapture(LOCAL) if capture else None
    now, ticks = 0.0, 0
    while (tx.finished is None or rx.finished is None) and ticks < 50 * 300:
        data = inbound.packet(tx.transmit_g711(160))
        if pcap:
            pcap.received(data, PEER, T0 + now)
        channel.playout.put(RtpPacket.parse(data), now)
        for item in channel.playout.pull(now):
            rx.receive_fillin(item) if isinstance(item, int) else rx.receive_g711(item)
        out = rx.transmit_g711(160)
        if pcap:
            pcap.sent(outbound.packet(out), PEER, T0 + now + 0.001)
        channel.stats["sent"] += 1
        tx.receive_g711(out)
        now += 0.02
        ticks += 1
    session.poll(now)
    rx.close(), tx.close()
    call = InboundSipCall(CALL_ID, Config(), None, channel, None, spool.incoming_path(fax), "127.0.0.1")  # type: ignore[arg-type]
    call.switcher.codec = "PCMU"  # what answering its offer would have agreed
    outcome = session.facts(now)
    outcome.end_reason, outcome.media = "remote BYE", call.media_facts()
    files: dict[str, bytes] = {"sip.txt": sip_messages()}
    if pcap:
        outcome.capture = CaptureFacts(packets=pcap.packets, bytes=pcap.size, left_out=pcap.dropped)
        files["pcap"] = pcap.pcap()
    channel.close()
    spool.save_diagnostics(fax, files)
    facts = CallFacts.answered(fax).ended_with(outcome)
    done = spool.finish_fax(fax.id, T0 + 70, complete=session.complete, **facts.columns())
    decision = route(RoutingConfig(default="faxes@example.com"), called_number=done.called_number,
                     caller_number=done.caller_number, remote_ident=done.remote_ident, line=done.line)
    spool.update_facts(done.id, extra={"route": decision.as_extra()})
    spool.add_jobs(done.id, decision.recipients, T0 + 71)
    got = spool.get_fax(done.id)
    assert got is not None and got.state == "routed" and got.pages == 2
    return got


def page_text(body: str) -> str:
    """The page as a person reads it: tags out, entities decoded."""
    main = body[body.index("<main"):] if "<main" in body else body
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main)))


@pytest.fixture
def received(spool: Spool, tmp_path: Path) -> FaxRecord:
    return receive_over_rtp(spool, tmp_path)


def test_the_page_reads_as_a_call_not_as_python(admin_client: FlaskClient, received: FaxRecord) -> None:
    r = admin_client.get(f"/faxes/{received.id}")
    assert r.status_code == 200
    body = r.get_data(as_text=True)
    text = page_text(body)
    for internal in ("{", "}", "[]", "None", "DNSName(", "'mode'", "route ", "udptl", "diversion"):
        assert internal not in text, internal
    # who, when, how, how it ended, where it went
    for words in ("Caller +49 30 1234", f"Sending fax's ID (TSI) {HOSTILE_TSI}", "Called number 5551000",
                  "Line SIP, peer gw1 (from 192.0.2.10:5060)", "Started ", "Call duration ",
                  "Media G.711 audio, \u00b5-law (PCMU)", "Modem and speed V.17, 14,400 bit/s",
                  "Error correction (ECM) yes", "Resolution fine (204x196 dpi)", "Compression MMR (T.6)",
                  "Pages 2", "Result The fax was received completely.", "Call ended the caller hung up (BYE)",
                  "Sent to faxes@example.com (queued)", "Chosen by the default mailbox",
                  f"SIP Call-ID {CALL_ID}"):
        assert words in text, words
    assert "UID" not in text  # one name for a fax, its number (decision 14); the uid only in Message-IDs
    # the caller's values are escaped wherever they appear
    assert XSS not in body and HOSTILE_TSI not in body
    assert str(escape(XSS)) in body and str(escape(HOSTILE_TSI)) in body


def test_the_t30_frames_are_decoded_and_image_data_counted(admin_client: FlaskClient, received: FaxRecord) -> None:
    body = admin_client.get(f"/faxes/{received.id}").get_data(as_text=True)
    section = page_text(body[body.index('id="trace"'):body.index("</section>", body.index('id="trace"'))])
    for words in ("appliance DIS Digital identification signal: what the receiving fax can do",
                  "Modems: V.27 ter, V.29 and V.17", "Compression: MH (1-D), MR (2-D), MMR (T.6)",
                  f"caller TSI Transmitting subscriber identification: the sending fax's number Number: {HOSTILE_TSI}",
                  "caller DCS Digital command signal", "Modem: V.17, 14,400 bit/s",
                  "Error correction (ECM): yes, 256-octet frames", "appliance CFR Confirmation to receive",
                  "caller ECM data ", " FCD frames (#0-#", "caller PPS", "Page 2, block 1,",
                  "appliance MCF Message confirmation: page received well", "caller DCN Disconnect"):
        assert words in section, words
    assert "ff 03 06" not in section and "FLOW" not in section  # no page data, no engine log
    assert section.count("ECM data") == 2  # one line per block, not one per frame


def test_the_media_counters_are_a_small_table(admin_client: FlaskClient, received: FaxRecord) -> None:
    body = admin_client.get(f"/faxes/{received.id}").get_data(as_text=True)
    media = body[body.index('id="media"'):body.index("</section>", body.index('id="media"'))]
    text = page_text(media)
    packets = received.extra["rtp"]["received"]
    assert packets > 1000
    assert f"Audio received (RTP) Packets received {packets:,}" in text
    assert "Sent by the appliance Datagrams sent" in text and "UDPTL" not in text  # no T.38, no table for it
    assert media.count("<table") == 2


def test_a_call_without_fax_says_so_without_empty_fields(admin_client: FlaskClient, spool: Spool) -> None:
    fax = spool.begin_fax(T0, line="sip:gw1", call_id="x@y", caller_number="", called_number="5551000",
                          extra={"remote": "192.0.2.10:5060", "diversion": [], "peer": "gw1"})
    done = spool.finish_fax(fax.id, T0 + 20, complete=False, result_code=-1, duration=20.0,
                            result_text="no fax signal (call ended before the fax completed)",
                            extra={"mode": "G.711 PCMU", "switches": [], "rtp": {}, "udptl": {},
                                   "hangup_reason": "no fax signal", "end_reason": "local hangup", "trace": []})
    text = page_text(admin_client.get(f"/faxes/{done.id}").get_data(as_text=True))
    for internal in ("{", "[]", "None", "0 bit/s"):
        assert internal not in text, internal
    for words in ("Caller not given", "Sending fax's ID (TSI) not sent", "Pages 0",
                  "Result no fax signal (call ended before the fax completed)",
                  "Appliance hung up because no fax signal", "Call ended the appliance hung up (BYE)",
                  "No trace was recorded for this call."):
        assert words in text, words
    assert "Error correction" not in text and "Media G.711" in text and 'id="media"' not in text


def test_unknown_facts_are_words_too(admin_client: FlaskClient, spool: Spool) -> None:
    fax = spool.begin_fax(T0, line="modem0", caller_number="+1", extra={
        "device": "/dev/ttyUSB0", "rings": 2, "modem_class": "1", "class1": {"frames_rx": 12, "crc_errors": 0},
        "future_fact": {"a_b": [1, 2], "empty": [], "none": None}, "flag": True, "nothing": None, XSS: XSS})
    done = spool.finish_fax(fax.id, T0 + 20, complete=False, result_code=49,
                            result_text="The call dropped prematurely")
    body = admin_client.get(f"/faxes/{done.id}").get_data(as_text=True)
    text = page_text(body)
    for internal in ("{", "[]", "None", "'a_b'"):
        assert internal not in text, internal
    for words in ("Line modem line modem0 (/dev/ttyUSB0), answered after 2 rings", "Media analog modem, Class 1",
                  "Future fact A b: 1, 2", "Flag yes", f"{XSS} {XSS}",
                  "Result The call ended before the fax was finished",
                  "T.30: The call dropped prematurely (code 49)", "Modem (Class 1) Frames rx 12 Crc errors 0"):
        assert words in text, words
    assert "Nothing" not in text and XSS not in body


def test_download_call_diagnostics(admin_client: FlaskClient, received: FaxRecord, spool: Spool) -> None:
    dpkt = require_import("dpkt", "dpkt, of the test extra")
    body = admin_client.get(f"/faxes/{received.id}").get_data(as_text=True)
    link = re.search(r'<a class="button" href="([^"]+)" download>Download call diagnostics</a>', body)
    assert link is not None and link.group(1) == f"/faxes/{received.id}/diagnostics.zip"
    r = admin_client.get(link.group(1))
    assert r.status_code == 200 and r.mimetype == "application/zip"
    name = re.fullmatch(r'attachment; filename=(fax-\d{8}-\d{6}-(\d+)-call-diagnostics)\.zip',
                        r.headers["Content-Disposition"])
    assert name is not None and name.group(2) == str(received.id)  # named by the fax's number
    z = zipfile.ZipFile(io.BytesIO(r.data))
    stem = name.group(1)
    assert sorted(z.namelist()) == sorted(f"{stem}/{n}" for n in (
        "README.txt", "summary.txt", "t30-trace.txt", "media-stats.txt", "sip-messages.txt", "media.pcap",
        "record.json"))
    read = lambda n: z.read(f"{stem}/{n}").decode()  # noqa: E731
    assert "Modem and speed: V.17, 14,400 bit/s" in read("summary.txt")
    assert f"Sending fax's ID (TSI): {HOSTILE_TSI}" in read("summary.txt")
    trace = read("t30-trace.txt")
    assert "<- DCS     received: Digital command signal" in trace and "hex: ff 13 83" in trace
    assert "--- the trace as recorded ---" in trace and "FLOW fb" in trace
    assert "Packets received" in read("media-stats.txt")
    assert f"tshark -r media.pcap -d udp.port=={LOCAL[1]},rtp" in read("README.txt")
    sip = read("sip-messages.txt")
    assert sip.startswith("=== ") and "received over UDP from 192.0.2.10:5060" in sip
    assert f"INVITE sip:5551000@127.0.0.1 SIP/2.0\nVia:" in sip and "SIP/2.0 200 OK" in sip and "BYE sip:" in sip
    record = json.loads(read("record.json"))
    assert record["fax"]["uid"] == received.uid and record["jobs"][0]["recipient"] == "faxes@example.com"
    # the pcap: real RTP of this call, both ways, in order, on the call's addresses and ports
    pcap = dpkt.pcap.Reader(io.BytesIO(z.read(f"{stem}/media.pcap")))
    assert pcap.datalink() == dpkt.pcap.DLT_EN10MB
    flows: dict[tuple[str, int, str, int], list[dpkt.rtp.RTP]] = {}
    for ts, buf in pcap:
        ip = dpkt.ethernet.Ethernet(buf).data
        assert isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP)
        assert ip.sum == dpkt.ip.IP(bytes(ip)).sum  # the header checksum is right
        key = (socket.inet_ntoa(ip.src), ip.data.sport, socket.inet_ntoa(ip.dst), ip.data.dport)
        flows.setdefault(key, []).append(dpkt.rtp.RTP(ip.data.data))
        assert abs(ts - T0) < 3600
    assert set(flows) == {(*PEER, *LOCAL), (*LOCAL, *PEER)}
    for packets in flows.values():
        assert {p.pt for p in packets} == {PT_PCMU} and {p.version for p in packets} == {2}
        seqs = [p.seq for p in packets]
        assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:]))
        assert {len(p.data) for p in packets} == {160}
    assert len(flows[(*PEER, *LOCAL)]) == received.extra["capture"]["packets"] // 2


def test_download_without_capture_says_how_to_get_one(admin_client: FlaskClient, spool: Spool, tmp_path: Path) -> None:
    fax = receive_over_rtp(spool, tmp_path, capture=False)
    body = admin_client.get(f"/faxes/{fax.id}").get_data(as_text=True)
    assert "Record call media" in page_text(body)
    z = zipfile.ZipFile(io.BytesIO(admin_client.get(f"/faxes/{fax.id}/diagnostics.zip").data))
    assert not [n for n in z.namelist() if n.endswith(".pcap")]
    readme = z.read(next(n for n in z.namelist() if n.endswith("README.txt"))).decode()
    assert "capture was off for this call" in readme


def test_diagnostics_of_unknown_fax_is_404_and_deleted_with_the_fax(admin_client: FlaskClient, received: FaxRecord,
                                                                   spool: Spool) -> None:
    assert admin_client.get("/faxes/999/diagnostics.zip").status_code == 404
    files = [spool.diagnostics_path(received, k) for k in ("sip.txt", "pcap")]
    assert all(p.is_file() for p in files)
    spool.delete_fax(received.id)
    assert not any(p.exists() for p in files)
    assert admin_client.get(f"/faxes/{received.id}/diagnostics.zip").status_code == 404


def test_diagnostics_need_a_login(anon_client: FlaskClient, received: FaxRecord) -> None:
    r = anon_client.get(f"/faxes/{received.id}/diagnostics.zip")
    assert r.status_code in (302, 401) and r.mimetype != "application/zip"
