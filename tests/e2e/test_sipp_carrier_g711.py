"""SIPp replays the recorded carrier G.711 A-law fax into the running appliance, in real time.

The capture (shared/fixtures/pcaps/README.md; read from ../shared, never copied here) is the
sending side only: SIPp calls with PCMA, and ``play_pcap_audio`` sends its 2016 RTP packets on
their recorded timing, the timestamp jump without marker and the 160 ms late burst inside the
TCF included, to the port of the appliance's 200 OK.  The appliance runs with the shipped
playout delay (60 ms), under which it used to answer FTT every time.

A blind replay cannot hear our DIS: its DCS comes 2 s after its first packet whatever we do, so
an answer 2.6-4.1 s before that first packet makes our own DIS cover it (the offline feed of the
same packets fails there too: tests/media/test_carrier_g711.py).  So the four calls start the
replay at answer timings outside that window, all at once into one appliance (about 50 s in
all), and most of them must bring the page, pixel-equal to the offline decode.
"""

from __future__ import annotations

import io
import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from appliance.fax.pages import read_pages
from appliance.media.rtp import RtpPacket
from tests.conftest import free_port
from tests.provided import missing

from .conftest import tiff_attachment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
from rtp_helpers import CARRIER_PCAP, carrier_rtp, replay_offline  # noqa: E402

pytestmark = pytest.mark.slow

SIPP = Path("/usr/bin/sipp")
CALLER = "5550188"
#: seconds from the 200 OK to the replay's start, and the number each call dials (its mailbox)
OFFSETS = {0.5: ("5551000", "sales@example.test"), 1.5: ("5551001", "support@example.test"),
           5.0: ("5551002", "billing@example.test"), 6.0: ("5551003", "legal@example.test")}
#: at least this many of them must bring the page
REQUIRED = 3

PEERS = """
[[sip.peers]]
name = "sipp"
match = "127.0.0.1"
t38 = "off"
"""

SCENARIO = r"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="Faxbridge: carrier G.711 A-law replay">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "carrier replay" <sip:@CALLER@@[local_ip]:[local_port]>;tag=[pid]fbc[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:@CALLER@@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      User-Agent: SIPp carrier G.711 replay
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=replay 8000 8000 IN IP[local_ip_type] [local_ip]
      s=SIP Call
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
      a=ptime:20
      a=sendrecv
    ]]>
  </send>

  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <!-- wherever the scenario is from here on, a BYE from the appliance (post_phase_e_timeout
       after the DCN, or crossing ours) jumps to answer_bye -->
  <recv request="BYE" optional="global" next="answer_bye"/>
  <recv response="200" rtd="true" rrs="true"/>

  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "carrier replay" <sip:@CALLER@@[local_ip]:[local_port]>;tag=[pid]fbc[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:@CALLER@@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>

  <pause milliseconds="@LEAD_MS@"/>
  <nop>
    <action>
      <exec play_pcap_audio="@PCAP@"/>
    </action>
  </nop>
  <pause milliseconds="@PAUSE_MS@"/>

  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "carrier replay" <sip:@CALLER@@[local_ip]:[local_port]>;tag=[pid]fbc[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
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
</scenario>
"""


@pytest.mark.xdist_group("sipp-carrier")
def test_sipp_replays_the_carrier_g711_fax_and_most_answer_timings_bring_the_page(tmp_path, smtp,
                                                                                   appliance_factory):
    if not SIPP.exists():
        missing(f"SIPp not installed ({SIPP}; Debian package sip-tester)")
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP).close()
    except PermissionError:
        pytest.skip("SIPp's play_pcap_audio sends through a raw socket: needs root or CAP_NET_RAW")
    packets = carrier_rtp()  # skips when ../shared is not beside the checkout
    duration = packets[-1][0]  # 40.6 s: the DCN at 40.3 s
    expected_page = offline_page(packets, tmp_path / "offline.tif")

    # the shipped playout delay; the DCS comes 8 s after the answer at the longest lead
    app = appliance_factory(smtp.port, extra=PEERS, playout_delay_ms=60, no_signal_timeout=20)
    app.start()
    runs = []
    for lead, (called, _) in OFFSETS.items():
        scenario = tmp_path / f"carrier_{called}.xml"
        scenario.write_text(SCENARIO.replace("@CALLER@", CALLER).replace("@PCAP@", str(CARRIER_PCAP))
                            .replace("@LEAD_MS@", str(round(lead * 1000)))
                            .replace("@PAUSE_MS@", str(round((duration + 2.5) * 1000))))
        logs = tmp_path / called
        logs.mkdir()
        cmd = [str(SIPP), f"127.0.0.1:{app.sip_port}", "-sf", str(scenario), "-s", called,
               "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_port("udp")), "-mp", str(free_port("udp")),
               "-t", "u1", "-m", "1", "-timeout", f"{round(duration + lead) + 30}s", "-timeout_error", "-nostdin",
               "-trace_err", "-error_file", str(logs / "sipp_errors.log"),
               "-trace_screen", "-screen_file", str(logs / "sipp_screen.log")]
        runs.append((lead, called, subprocess.Popen(cmd, cwd=logs, stdin=subprocess.DEVNULL,
                                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    outcomes: dict[float, str] = {}
    failures = []
    for lead, called, proc in runs:
        try:
            _, err = proc.communicate(timeout=duration + lead + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0 or "npkts 2016" not in err:
            failures.append(f"--- sipp {called} (answer lead {lead} s) exit {proc.returncode}\n{err[-2000:]}")
    assert not failures, "\n".join(failures) + f"\n--- appliance log\n{app.log_text()[-6000:]}"

    db = sqlite3.connect(app.workdir / "spool" / "spool.db")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every call recorded (the spool commits after the BYE)
        rows = db.execute("SELECT called_number, pages, complete, result_text, extra FROM faxes"
                          " WHERE caller_number = ? AND state != 'receiving'", (CALLER,)).fetchall()
        if len(rows) == len(OFFSETS):
            break
        time.sleep(0.5)
    db.close()
    by_called = {r[0]: r for r in rows}
    for lead, (called, _) in OFFSETS.items():
        row = by_called.get(called)
        rtp = json.loads(row[4]).get("rtp", {}) if row else {}
        outcomes[lead] = (f"{row[1]} page(s), {row[3]}; rtp late {rtp.get('late')}, slips {rtp.get('slips')},"
                          f" fill-in {rtp.get('fillin')}" if row else "not recorded")
    complete = [lead for lead, (called, _) in OFFSETS.items()
                if by_called.get(called) and by_called[called][1] == 1 and by_called[called][2]]
    mails = {m["To"]: m for m in smtp.wait_for(len(complete), timeout=30)} if complete else {}
    got = []  # the replays that brought the page, pixel-equal to the offline decode
    for lead in complete:
        [page] = read_pages(io.BytesIO(tiff_attachment(mails[OFFSETS[lead][1]])))
        diff = ImageChops.difference(page, expected_page).getbbox()
        if diff is None:
            got.append(lead)
        else:
            outcomes[lead] += f"; the page differs from the offline decode in {diff}"
    report = "\n".join(f"  answer lead {lead} s: {text}" for lead, text in outcomes.items())
    print(report)  # pytest -rP shows it: the outcome per answer timing
    assert len(got) >= REQUIRED, f"the page from {len(got)} of {len(OFFSETS)} replays:\n{report}"


def offline_page(packets: list[tuple[float, RtpPacket]], rx_file: Path) -> Image.Image:
    """The page the appliance's terminal gets from the capture fed in arrival order."""
    terminal = replay_offline(packets, rx_file, answer_lead=1.0)
    finished = terminal.finished
    terminal.close()
    assert finished is not None and finished.ok, finished
    [page] = read_pages(rx_file)
    assert page.size == (1728, 1143)
    return page
