"""SIPp replays the recorded Grandstream HT801 T.38 call into the running appliance.

Debian's SIPp (package ``sip-tester``) is the caller: INVITE with PCMU audio, a T.38 re-INVITE
with the HT801's own T.38 attributes, then ``play_pcap_image`` sends the HT801's UDPTL stream
(shared/fixtures/pcaps, 5004 -> 4545 only) on its original timing to the appliance's m=image
port.  The replay does not react to the appliance, so the page must come out exactly as the
offline decode of the same recording (tests/media/test_udptl_ht801.py) gives it: ECM makes the
data exact whatever the timing of our answers.

How SIPp 3.6.1 plays a pcap (src/send_packets.c, src/call.cpp): a raw IPv4 UDP socket (root or
CAP_NET_RAW) bound to the media IP (-mi); every UDP packet of the pcap is sent with its UDP
payload unchanged, to the address of the *peer's* SDP (c= and the m=image port of the 200 OK
to our re-INVITE), from the port our own SDP gave on its m=image line ([media_port+2] below);
ports are shifted by (packet's dport - lowest dport in the pcap), hence a pcap with one stream.

The recording lasts 86.2 s (its DCN at 86.07 s); we BYE 2.5 s after its last packet, before the
appliance's own BYE (post_phase_e_timeout = 5 s), which the scenario also accepts: the whole
test takes about 91 s.
"""

from __future__ import annotations

import io
import json
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from appliance.fax.pages import read_pages
from tests.conftest import free_port
from tests.provided import require

from .conftest import tiff_attachment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
from udptl_helpers import UdpDatagram, ht801_udptl, play_into_terminal  # noqa: E402

pytestmark = pytest.mark.slow

SIPP = Path("/usr/bin/sipp")
CALLER, CALLED, RECIPIENT = "5550199", "5551000", "sales@example.test"

PEERS = """
[[sip.peers]]
name = "sipp"
match = "127.0.0.1"
t38 = "accept"
"""


def write_udp_pcap(datagrams: list[UdpDatagram], path: Path) -> None:
    """A classic pcap (Ethernet, IPv4, UDP) of ``datagrams`` with their addresses and capture times."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for n, d in enumerate(datagrams):
        udp = struct.pack("!HHHH", d.src[1], d.dst[1], 8 + len(d.payload), 0) + d.payload
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                                   bytes(map(int, d.src[0].split("."))), bytes(map(int, d.dst[0].split(".")))))
        words = struct.unpack("!10H", ip)
        s = sum(words)
        s = (s & 0xFFFF) + (s >> 16)
        ip[10:12] = struct.pack("!H", ~((s & 0xFFFF) + (s >> 16)) & 0xFFFF)
        frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + bytes(ip) + udp
        usec_total = round(d.time * 1_000_000)  # the capture's microseconds, as read
        out += struct.pack("<IIII", usec_total // 1_000_000, usec_total % 1_000_000, len(frame), len(frame))
        out += frame
    path.write_bytes(bytes(out))


def offline_decode(stream: list[UdpDatagram], rx_file: Path) -> Image.Image:
    """The recording into an answering T38FaxTerminal on the capture's clock (no network)."""
    term = play_into_terminal(stream, rx_file)
    finished = term.finished
    term.close()
    assert finished is not None and finished.ok, finished
    [page] = read_pages(rx_file)
    return page


# Our own UAC scenario.  A BYE from the appliance once the T.38 re-INVITE is out (it hangs up
# post_phase_e_timeout after phase E, or if it gives up) is answered by the global optional
# <recv> and ends the call cleanly; a BYE crossing ours is caught the same way.  @PAUSE_MS@ is replaced by the test.
SCENARIO = r"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="Faxbridge: HT801 T.38 replay">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "HT801 replay" <sip:@CALLER@@[local_ip]:[local_port]>;tag=[pid]fbr[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:@CALLER@@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      User-Agent: SIPp HT801 replay
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=replay 8000 8000 IN IP[local_ip_type] [local_ip]
      s=SIP Call
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=ptime:20
      a=sendrecv
    ]]>
  </send>

  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>

  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "HT801 replay" <sip:@CALLER@@[local_ip]:[local_port]>;tag=[pid]fbr[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:@CALLER@@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>

  <pause milliseconds="1000"/>

  <send retrans="500">
    <![CDATA[
      INVITE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "HT801 replay" <sip:@CALLER@@[local_ip]:[local_port]>;tag=[pid]fbr[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:@CALLER@@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=replay 8000 8001 IN IP[local_ip_type] [local_ip]
      s=SIP Call
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=image [media_port+2] udptl t38
      a=T38FaxVersion:0
      a=T38MaxBitRate:14400
      a=T38FaxRateManagement:transferredTCF
      a=T38FaxMaxBuffer:400
      a=T38FaxMaxDatagram:397
      a=T38FaxUdpEC:t38UDPRedundancy
    ]]>
  </send>

  <recv response="100" optional="true"/>
  <!-- from here on, wherever the scenario is, a BYE from the appliance jumps to answer_bye -->
  <recv request="BYE" optional="global" next="answer_bye"/>
  <recv response="200" rtd="true"/>

  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "HT801 replay" <sip:@CALLER@@[local_ip]:[local_port]>;tag=[pid]fbr[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Contact: <sip:@CALLER@@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>

  <!-- the HT801's UDPTL to the m=image address of the appliance's 200 OK, on the capture's timing -->
  <nop>
    <action>
      <exec play_pcap_image="@PCAP@"/>
    </action>
  </nop>
  <pause milliseconds="@PAUSE_MS@"/>

  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "HT801 replay" <sip:@CALLER@@[local_ip]:[local_port]>;tag=[pid]fbr[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Contact: <sip:@CALLER@@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true" next="done"/>

  <label id="answer_bye"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:@CALLER@@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>

  <label id="done"/>
  <ResponseTimeRepartition value="10, 20, 50, 100, 200, 500, 1000"/>
</scenario>
"""


@pytest.mark.xdist_group("sipp")
def test_sipp_replays_the_ht801_t38_call_and_the_page_is_mailed(tmp_path, smtp, appliance_factory):
    require(SIPP.exists(), f"SIPp not installed ({SIPP}; Debian package sip-tester, which make test installs)")
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP).close()
    except PermissionError:
        pytest.skip("SIPp's play_pcap_image sends through a raw socket: needs root or CAP_NET_RAW")
    stream = ht801_udptl()
    assert len(stream) == 1811
    pcap = tmp_path / "ht801-udptl-5004-4545.pcap"
    write_udp_pcap(stream, pcap)
    duration = stream[-1].time - stream[0].time  # 86.2 s: the last UDPTL packet after the DCN

    scenario = tmp_path / "ht801_t38_replay_uac.xml"
    scenario.write_text(SCENARIO.replace("@CALLER@", CALLER).replace("@PCAP@", str(pcap))
                        .replace("@PAUSE_MS@", str(round((duration + 2.5) * 1000))))

    app = appliance_factory(smtp.port, extra=PEERS)
    app.start()
    sipp_port = free_port("udp")
    cmd = [str(SIPP), f"127.0.0.1:{app.sip_port}", "-sf", str(scenario), "-s", CALLED,
           "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(sipp_port), "-t", "u1", "-m", "1",
           "-timeout", f"{round(duration) + 40}s", "-timeout_error", "-nostdin",
           "-trace_err", "-error_file", str(tmp_path / "sipp_errors.log"),
           "-trace_msg", "-message_file", str(tmp_path / "sipp_messages.log"),
           "-trace_screen", "-screen_file", str(tmp_path / "sipp_screen.log")]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=duration + 90)

    def sipp_logs() -> str:
        logs = [f"--- sipp exit {proc.returncode} after {time.monotonic() - started:.1f} s\n{proc.stderr[-3000:]}"]
        for name in ("sipp_errors.log", "sipp_screen.log", "sipp_messages.log"):
            f = tmp_path / name
            if f.exists():
                logs.append(f"--- {name}\n{f.read_text(errors='replace')[-6000:]}")
        logs.append(f"--- appliance log\n{app.log_text()[-6000:]}")
        return "\n".join(logs)

    assert proc.returncode == 0, sipp_logs()
    assert "npkts 1811" in proc.stderr, sipp_logs()  # SIPp read our pcap: one stream, every packet

    [msg] = smtp.wait_for(1, timeout=30)
    assert msg["To"] == RECIPIENT
    tiff = tiff_attachment(msg)
    with Image.open(io.BytesIO(tiff)) as im:
        assert getattr(im, "n_frames", 1) == 1
        assert im.size == (1728, 2118)
        assert tuple(round(float(v)) for v in im.info["dpi"]) == (204, 196)
    [got] = read_pages(io.BytesIO(tiff))

    expected = offline_decode(stream, tmp_path / "offline.tif")
    assert expected.size == (1728, 2118)
    diff = ImageChops.difference(got, expected).getbbox()
    assert diff is None, f"the mailed page differs from the offline decode of the recording in {diff}"

    db = sqlite3.connect(app.workdir / "spool" / "spool.db")
    rows = db.execute("SELECT called_number, pages, extra FROM faxes WHERE caller_number = ?", (CALLER,)).fetchall()
    assert len(rows) == 1, rows
    called, pages, extra = rows[0]
    facts = json.loads(extra)
    assert (called, pages, facts.get("mode")) == (CALLED, 1, "T.38"), facts
    # every datagram of the replay reached the call; the repeated indicators count as duplicates
    assert (facts["udptl"]["received"], facts["udptl"]["delivered"]) == (1811, 1801), facts["udptl"]
    db.close()
