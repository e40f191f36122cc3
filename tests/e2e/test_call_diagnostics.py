"""Real calls into the running appliance, then their fax pages and "Download call diagnostics".

Three calls at once over loopback: G.711 A-law and T.38 from a peer the owner switched capture
on for, G.711 from a peer without it.  The fax page of each reads as a call (no Python values),
the diagnostics file holds the call's SIP messages as the daemon kept them, the decoded trace and,
for the captured peer, a pcap that dpkt reads as that call's RTP/UDPTL: the payload types the SDP
agreed, consecutive sequence numbers, the addresses and ports of the SDP offer and answer.
"""

from __future__ import annotations

import html
import io
import re
import socket
import sqlite3
import zipfile

import pytest

from appliance.config import Config
from appliance.fax.pages import STANDARD, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.media.udptl import decode as udptl_decode
from appliance.web.app import create_app
from tests.provided import require_import
from tests.web.webauth import login

from .conftest import finish, send_fax

pytestmark = pytest.mark.slow

PEERS = """
[[sip.peers]]
name = "captured"
match = "127.0.0.1"
t38 = "accept"
capture = true

[[sip.peers]]
name = "plain"
match = "127.0.0.2"
t38 = "accept"
"""


def page_text(body: str) -> str:
    main = body[body.index("<main"):]
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main)))


def sdp_ports(sip: str) -> dict[str, set[int]]:
    """Media ports of the SDP in the messages we received ("offer") and sent ("answer")."""
    ports: dict[str, set[int]] = {"received": set(), "sent": set()}
    for block in re.split(r"\n(?==== )", sip):
        kind = "sent" if " sent over " in block.split("\n", 1)[0] else "received"
        ports[kind] |= {int(p) for p in re.findall(r"^m=(?:audio|image) (\d+) ", block, re.M)}
    return ports


@pytest.mark.xdist_group("calls-diag")
def test_fax_pages_and_call_diagnostics_of_real_calls(tmp_path, smtp, appliance_factory) -> None:
    dpkt = require_import("dpkt", "dpkt, of the test extra")
    app = appliance_factory(smtp.port, extra=PEERS)
    app.start()
    write_fax_tiff(demo_pages(1, STANDARD), tmp_path / "doc.tif", STANDARD)
    calls = {  # caller number -> (send-test-fax options, captured)
        "5550301": (["--codec", "PCMA", "--bind", "127.0.0.1"], True),
        "5550302": (["--codec", "PCMU", "--t38", "reinvite", "--bind", "127.0.0.1"], True),
        "5550303": (["--codec", "PCMU", "--bind", "127.0.0.2"], False),
    }
    procs = [send_fax(app.uri("5551000"), tmp_path / "doc.tif", "--caller", caller, *opts)
             for caller, (opts, _) in calls.items()]
    for p in procs:
        rc, out = finish(p)
        assert rc == 0, out
    smtp.wait_for(3, timeout=60)
    app.wait_settled()
    db = sqlite3.connect(app.workdir / "spool" / "spool.db")
    ids = dict(db.execute("SELECT caller_number, id FROM faxes"))
    assert sorted(ids) == sorted(calls)

    client = create_app(Config.load(app.config)).test_client()
    login(client)
    for caller, (opts, captured) in calls.items():
        fax_id = ids[caller]
        body = client.get(f"/faxes/{fax_id}").get_data(as_text=True)
        text = page_text(body)
        for internal in ("{", "[]", "None", "DNSName("):
            assert internal not in text, (caller, internal)
        t38 = "reinvite" in opts
        media = "T.38 fax packets over UDPTL" if t38 else (
            "G.711 audio, A-law (PCMA)" if "PCMA" in opts else "G.711 audio, \u00b5-law (PCMU)")
        for words in (f"Caller {caller}", "Called number 5551000", f"Media {media}",
                      "Result The fax was received completely.", "Sent to sales@example.test (delivered)",
                      "caller DCS Digital command signal", "appliance MCF Message confirmation"):
            assert words in text, (caller, words)
        assert ("Fax packets received (UDPTL)" in text) == t38
        assert re.search(rf'href="/faxes/{fax_id}/diagnostics.zip" download>Download call diagnostics<', body)

        r = client.get(f"/faxes/{fax_id}/diagnostics.zip")
        assert r.status_code == 200 and r.mimetype == "application/zip"
        z = zipfile.ZipFile(io.BytesIO(r.data))
        files = {n.split("/", 1)[1]: n for n in z.namelist()}
        sip = z.read(files["sip-messages.txt"]).decode()
        source = "127.0.0.2" if not captured else "127.0.0.1"
        assert re.search(rf"=== .* UTC  received over UDP from {source}:\d+ at 127\.0\.0\.1:{app.sip_port} ", sip)
        assert "\nINVITE sip:5551000@" in sip and "\nSIP/2.0 200 OK\n" in sip and "\nBYE sip:" in sip
        assert ("m=image" in sip) == t38
        assert "<- DCS     received" in z.read(files["t30-trace.txt"]).decode()
        assert ("media.pcap" in files) == captured
        if not captured:
            assert "capture was off for this call" in z.read(files["README.txt"]).decode()
            continue

        ports = sdp_ports(sip)
        pcap = dpkt.pcap.Reader(io.BytesIO(z.read(files["media.pcap"])))
        assert pcap.datalink() == dpkt.pcap.DLT_EN10MB
        flows: dict[tuple[int, int], list[bytes]] = {}
        for _, buf in pcap:
            ip = dpkt.ethernet.Ethernet(buf).data
            assert isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP)
            assert socket.inet_ntoa(ip.src) == socket.inet_ntoa(ip.dst) == "127.0.0.1"
            flows.setdefault((ip.data.sport, ip.data.dport), []).append(ip.data.data)
        ours = {p for p in ports["sent"]}
        theirs = {p for p in ports["received"]}
        assert len(ours) == 1, ports  # one media port for the call, in every answer we sent
        (our_port,) = ours
        assert {f for f in flows} <= {(o, t) for o in ours for t in theirs} | {(t, o) for o in ours for t in theirs}
        sent = [d for (s, _), ds in flows.items() if s == our_port for d in ds]
        received = [d for (_, d_), ds in flows.items() if d_ == our_port for d in ds]
        assert len(sent) > 100 and len(received) > 100
        rtp_pt = 8 if "PCMA" in opts else 0

        def is_rtp(d: bytes) -> bool:  # the call's G.711: 12-byte header, 20 ms of audio
            return len(d) == 172 and d[0] == 0x80 and d[1] & 0x7F == rtp_pt

        for direction in (sent, received):
            rtp = [dpkt.rtp.RTP(d) for d in direction if is_rtp(d)]
            assert rtp and {p.pt for p in rtp} == {rtp_pt} and {len(p.data) for p in rtp} == {160}
            steps = [(b.seq - a.seq) % 65536 for a, b in zip(rtp, rtp[1:])]
            assert all(1 <= s < 50 for s in steps) and steps.count(1) >= 0.99 * len(steps)
            assert len(rtp) == len(direction) or t38  # G.711 calls carry nothing else
            if t38:
                udptl = [udptl_decode(d) for d in direction if not is_rtp(d)]
                assert len(udptl) > 20
                seqs = [u.seq for u in udptl]
                assert all(0 <= (b - a) % 65536 < 50 for a, b in zip(seqs, seqs[1:]))  # repeats, no reorder
        assert len(set(flows)) == 2  # one flow each way (the sender used one port for RTP and UDPTL)
        assert f"-d udp.port=={our_port},rtp" in z.read(files["README.txt"]).decode()
