"""The "Download call diagnostics" file: one zip with what a support engineer asks for.

    README.txt          what each file is
    summary.txt         the call in words, as the fax page says it
    t30-trace.txt       every T.30 frame decoded (with its hex), then the trace as recorded
    media-stats.txt     the RTP/UDPTL counters
    sip-messages.txt    the call's SIP messages, as sent and received (when the call came over SIP)
    media.pcap          the call's RTP or UDPTL, for Wireshark (when capture was on for its peer)
    record.json         the fax's stored record: facts, delivery jobs and attempts

Everything comes from the spool; nothing is written.  The zip's names are fixed (the folder is
named after the fax), so nothing from the call reaches a file name.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

from appliance.fax.t30decode import trace_text
from appliance.media.capture import OUR_MAC
from appliance.spool.store import FaxRecord, Job, Spool
from appliance.web.callview import call_view, facts_text, tables_text

README = """Call diagnostics of fax {id} (uid {uid}), made by the Faxbridge appliance.

summary.txt       the call in words, as the fax page shows it
t30-trace.txt     every T.30 frame of the call decoded, with its hex; then the trace as recorded,
                  with the fax engine's (spandsp's) log
media-stats.txt   the counters of the call's media (RTP audio or UDPTL fax packets)
{sip}{pcap}record.json       the stored record of the fax: call facts, delivery jobs and every attempt
"""
SIP_LINE = "sip-messages.txt  the call's SIP messages as the appliance sent and received them\n"
NO_SIP_LINE = "                  (no SIP messages: {why})\n"
PCAP_LINE = (
    "media.pcap        the call's media as a packet capture, for Wireshark: Decode As... the\n"
    "                  appliance's UDP port{port} as RTP (G.711 audio) or T.38 (UDPTL), e.g.\n"
    "                  tshark -r media.pcap -d udp.port=={example},rtp\n"
)
NO_PCAP_LINE = (
    '                  (no media.pcap: capture was off for this call; switch on "Record call\n'
    '                  media" for its peer under Settings, SIP, and send the fax again)\n'
)


def diagnostics_zip(
    spool: Spool,
    fax: FaxRecord,
    jobs: list[Job],
    attempts: dict[int, list[dict[str, Any]]],
    *,
    when: Callable[[Any], str],
    duration: Callable[[Any], str],
    stem: str,
) -> bytes:
    """The zip's bytes; ``when``/``duration`` format times as the page does."""
    view = call_view(fax, jobs)
    sip, pcap = _read(spool, fax, "sip.txt"), _read(spool, fax, "pcap")
    sip_call = fax.line.startswith("sip:") or "peer" in fax.extra
    why = "this call came in on a modem" if not sip_call else "none were kept for this call"
    trace = fax.extra.get("trace")
    if not isinstance(trace, list):
        trace = []
    recorded = "\n".join(str(x) for x in trace)
    decoded = trace_text(view.trace_items) or "No trace was recorded for this call.\n"
    files: list[tuple[str, bytes | str]] = [
        (
            "README.txt",
            README.format(
                id=fax.id,
                uid=fax.uid,
                sip=SIP_LINE if sip else NO_SIP_LINE.format(why=why),
                pcap=_pcap_line(pcap) if pcap is not None else NO_PCAP_LINE if sip_call else "",
            ),
        ),
        ("summary.txt", f"Fax {fax.id}\n\n" + facts_text(view, when, duration)),
        ("t30-trace.txt", decoded + ("\n--- the trace as recorded ---\n" + recorded + "\n" if recorded else "")),
        ("media-stats.txt", tables_text(view.media)),
    ]
    if sip is not None:
        files.append(("sip-messages.txt", sip))
    files.append(
        (
            "record.json",
            json.dumps(
                {
                    "fax": dataclasses.asdict(fax),
                    "jobs": [dataclasses.asdict(j) for j in jobs],
                    "attempts": {str(k): v for k, v in attempts.items()},
                },
                indent=2,
                default=str,
            ),
        )
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(f"{stem}/{name}", data)
        if pcap is not None:
            z.writestr(f"{stem}/media.pcap", pcap)
    return out.getvalue()


def _pcap_line(pcap: bytes) -> str:
    port = our_port(pcap)
    return PCAP_LINE.format(port=f" ({port})" if port else "", example=port or "PORT")


def our_port(pcap: bytes) -> int | None:
    """The appliance's UDP port in a capture of ours: the first frame's port on our side (our
    made-up Ethernet address, MediaCapture's), or None for a file that does not hold one."""
    frame = pcap[24 + 16 :]
    if len(frame) < 14 + 40 + 8:
        return None
    ip = 14 + (20 if frame[12:14] == b"\x08\x00" else 40)
    sport, dport = int.from_bytes(frame[ip : ip + 2], "big"), int.from_bytes(frame[ip + 2 : ip + 4], "big")
    return sport if frame[6:12] == OUR_MAC else dport


def _read(spool: Spool, fax: FaxRecord, kind: str) -> bytes | None:
    try:
        return spool.diagnostics_path(fax, kind).read_bytes()
    except FileNotFoundError:  # none kept, or the fax was deleted meanwhile
        return None
