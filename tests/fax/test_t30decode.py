"""The T.30 decoder on its own: frames from our own spandsp calls and from the recorded real calls
(../shared/fixtures/pcaps), checked against what spandsp itself logs and what the captures' README
says they are; image frames counted, never listed; odd input never raises."""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.fax.pages import FINE, STANDARD, write_fax_tiff
from appliance.fax.session import bounded_trace
from appliance.fax.t30decode import (Frame, ImageData, Line, Note, capabilities, chosen_settings, decode_frame,
                                     frame_name, frames_only, parse_trace, record_frame, result_in_words,
                                     trace_text)
from appliance.fax.testpages import demo_pages
from appliance.spandsp.audio import AudioFaxTerminal
from appliance.spandsp.t30 import result_text

sys.path.insert(0, str(Path(__file__).parents[1] / "media"))
from udptl_helpers import FIXTURES, play_into_terminal, read_pcap_udp  # noqa: E402

from tests.provided import require  # noqa: E402


def call(tmp_path: Path, *, ecm: bool, pages: int = 2, dpi: tuple[int, int] = FINE) -> list[str]:
    """The receiving terminal's trace of a real spandsp call, back to back in memory."""
    write_fax_tiff(demo_pages(pages, dpi), tmp_path / "tx.tif", dpi)
    tx = AudioFaxTerminal(calling=True, tx_file=tmp_path / "tx.tif", ident="+49 30 1234", ecm=ecm)
    rx = AudioFaxTerminal(calling=False, rx_file=tmp_path / "rx.tif", ident="5551000", ecm=ecm)
    blocks = 0
    while (tx.finished is None or rx.finished is None) and blocks < 200 * 50:
        a, b = tx.transmit_g711(160), rx.transmit_g711(160)
        rx.receive_g711(a)
        tx.receive_g711(b)
        blocks += 1
    assert rx.finished is not None and rx.finished.ok, rx.finished
    trace = list(rx.trace)
    rx.close(), tx.close()
    return trace


def replay(tmp_path: Path, capture: str, sender_port: int) -> list[str]:
    """The trace of our T.38 terminal fed a recorded sender's UDPTL on the capture's own clock."""
    path = FIXTURES / "pcaps" / capture
    require(path.exists(), f"recorded call not available: {path} (../shared beside the checkout)")
    stream = [d for d in read_pcap_udp(path) if d.src[1] == sender_port]
    term = play_into_terminal(stream, tmp_path / "rx.tif")
    assert term.finished is not None and term.finished.ok, term.finished
    trace = list(term.trace)
    term.close()
    return trace


def spandsp_breakdown(trace: list[str], name: str) -> dict[str, str]:
    """spandsp's own field-by-field log of the first DIS/DCS it logged: {field: value}."""
    fields: dict[str, str] = {}
    inside = False
    for line in trace:
        if re.match(rf"FLOW fb\d+ {name}:$", line):
            inside = True
        elif inside and (m := re.match(r"FLOW fb\d+ +[.01 ]+= (.+): (.+)$", line)):
            fields[m.group(1)] = m.group(2)
        elif inside:
            return fields
    return fields


def frames(items: list, name: str) -> list[Frame]:
    return [i for i in items if isinstance(i, Frame) and i.name == name]


def test_our_dis_reads_as_spandsp_logs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """spandsp logs its own DIS bit by bit when it sends it (a log the trace leaves out, the frame
    says it all): our reading must agree with it."""
    monkeypatch.setattr("appliance.spandsp.t30.log_line_kept", lambda line: True)
    trace = call(tmp_path, ecm=True)
    (dis,) = frames(parse_trace(trace), "DIS")
    said = spandsp_breakdown(trace, "DIS")
    caps = dis.caps
    assert caps is not None and not dis.received and not caps.command
    assert said["Supported data signalling rates"] == "V.27 ter, V.29, and V.17"
    assert caps.modem == "V.27 ter, V.29 and V.17"
    assert (said["Can receive fax"] == "Set") == caps.receive is True
    assert (said["Error correction mode (ECM)"] == "ECM") == caps.ecm is True
    assert (said["T.6 coding"] == "Set") == ("MMR (T.6)" in caps.compression)
    assert (said["2-D coding"] == "Set") == ("MR (2-D)" in caps.compression)
    assert said["Recording width"] == "215mm +- 1%, 255mm +- 1% and 303mm +- 1%"
    assert caps.width == "215 mm (A4), 255 mm (B4) and 303 mm (A3)"
    assert said["Recording length"] == "Unlimited" and caps.length == "unlimited"
    assert said["Receiver's minimum scan line time"].startswith("0ms") and caps.scan_time == "0 ms"
    for spandsp_name, ours in (("R8x7.7lines/mm and/or 200x200pels/25.4mm", "fine"),
                               ("R8x15.4lines/mm", "superfine"), ("300x300pels/25.4mm", "300x300")):
        assert (said[spandsp_name] == "Set") == any(r.startswith(ours) for r in caps.resolutions), spandsp_name
    for spandsp_name, ours in (("North American Letter (215.9mm x 279.4mm)", "North American Letter"),
                               ("Real-time Internet fax (T.38)", "Internet fax, real time (T.38)"),
                               ("Binary file transfer (BFT)", "binary file transfer (BFT)")):
        assert (said[spandsp_name] == "Set") == (ours in caps.flags), spandsp_name
    assert "Modems: V.27 ter, V.29 and V.17" in dis.details


def test_an_ecm_call_is_a_handshake_and_counted_image_data(tmp_path: Path) -> None:
    trace = call(tmp_path, ecm=True, pages=2)
    # the terminal keeps no page data: one line per ECM block, so the handshake survives the bound;
    # spandsp's log stays, less its hex dumps, its lines per image frame and its bit-by-bit DIS/DCS
    assert not any(line.startswith(("< FCD", "> FCD")) for line in trace)
    assert not any(re.search(r"[RT]x: +ff|ECM frame|= .*: (Not )?[Ss]et$", line) for line in trace)
    assert "Starting answer mode" in "\n".join(trace) and sum(len(x) + 1 for x in trace) < 12_000
    assert bounded_trace(trace) == trace
    items = parse_trace(trace)
    names = [i.name if isinstance(i, Frame) else "data" for i in frames_only(items)]
    assert names == ["CSI", "DIS", "TSI", "DCS", "CFR", "data", "PPS", "MCF", "data", "PPS", "MCF", "DCN"]
    (tsi,) = frames(items, "TSI")
    assert tsi.received and tsi.ident == "+49 30 1234" and "Number: +49 30 1234" in tsi.details
    (csi,) = frames(items, "CSI")
    assert not csi.received and csi.ident == "5551000"
    data = [i for i in items if isinstance(i, ImageData)]
    assert all(d.received and d.frames > 10 and d.rcp == 3 and d.first == 0 and d.last == d.frames - 1
               for d in data)
    pps = frames(items, "PPS")
    assert pps[0].details == ("Page done, another follows", f"Page 1, block 1, {data[0].frames} frames")
    assert pps[1].details == ("Last page done", f"Page 2, block 1, {data[1].frames} frames")
    dcs = chosen_settings(items)
    assert dcs is not None and dcs.ecm and dcs.modem_and_rate == "V.17, 14,400 bit/s"
    assert dcs.resolutions == ("fine 8x7.7 lines/mm (204x196 dpi)",) and dcs.compression == ("MMR (T.6)",)
    text = trace_text(items)
    assert "<- ECM     received: image data: " in text and " FCD frames (#0-#" in text
    assert "-> DIS     sent: Digital identification signal" in text and "hex: ff 13 80" in text


def test_a_non_ecm_call_at_standard_resolution(tmp_path: Path) -> None:
    items = parse_trace(call(tmp_path, ecm=False, pages=1, dpi=STANDARD))
    dcs = chosen_settings(items)
    assert dcs is not None and not dcs.ecm and dcs.compression == ("MR (2-D)",)
    assert dcs.resolutions == ("standard 8x3.85 lines/mm (204x98 dpi)",)
    assert "Error correction (ECM): no" in frames(items, "DCS")[0].details
    assert not [i for i in items if isinstance(i, ImageData)]
    assert [f.name for f in items if isinstance(f, Frame)][-3:] == ["EOP", "MCF", "DCN"]


def test_the_recorded_ht801_call(tmp_path: Path) -> None:
    """README: T.38, a one-page ECM fax at V.29 9600, 204x196."""
    items = parse_trace(replay(tmp_path, "grandstream-ht801-t38-ecm.pcap", 5004))
    dcs = chosen_settings(items)
    assert dcs is not None and dcs.modem_and_rate == "V.29, 9,600 bit/s" and dcs.ecm
    assert dcs.resolutions == ("fine 8x7.7 lines/mm (204x196 dpi)",) and dcs.ecm_frame_size == 256
    assert dcs.width == "215 mm (A4, 1728 dots)"
    data = [i for i in items if isinstance(i, ImageData)]
    assert data and sum(d.frames for d in data) >= 256 and all(d.received for d in data)
    assert frames(items, "PPS")[-1].details[0] == "Last page done"
    assert frames(items, "DCN")[0].received


def test_the_recorded_sonus_call(tmp_path: Path) -> None:
    """README: a carrier SBC, non-ECM, V.17 14400, MR; TSI, DCS ... EOP, MCF, DCN."""
    items = parse_trace(replay(tmp_path, "sonus-asterisk-t38-nonecm.pcap", 51328))
    dcs = chosen_settings(items)
    assert dcs is not None and dcs.modem_and_rate == "V.17, 14,400 bit/s" and not dcs.ecm
    assert dcs.compression == ("MR (2-D)",)
    assert [f.name for f in items if isinstance(f, Frame) and f.received] == ["TSI", "DCS", "EOP", "DCN"]
    assert frames(items, "TSI")[0].ident == "Fax"


@pytest.mark.parametrize("rate_bits, expected", [
    (0x0, "V.27 ter, 2,400 bit/s"), (0x2, "V.27 ter, 4,800 bit/s"), (0x3, "V.29, 7,200 bit/s"),
    (0x1, "V.29, 9,600 bit/s"), (0xB, "V.17, 7,200 bit/s"), (0x9, "V.17, 9,600 bit/s"),
    (0xA, "V.17, 12,000 bit/s"), (0x8, "V.17, 14,400 bit/s")])
def test_dcs_rates_table_2(rate_bits: int, expected: str) -> None:
    """Bits 11-14 of a DCS (T.30 Table 2), bit 11 first."""
    octet2 = 0x02 | (rate_bits << 2)  # bit 10: receive
    assert capabilities("DCS", bytes([0x00, octet2, 0x00])).modem_and_rate == expected


def test_dcs_fields() -> None:
    # bits 15 (fine), 44 (inch): 200x200; width 255 mm, length B4, scan 40 ms; 64-octet ECM frames
    fif = bytearray(6)
    for bit in (10, 15, 17, 19, 23, 24, 27, 28, 32, 40, 44):
        fif[(bit - 1) // 8] |= 1 << ((bit - 1) % 8)
    caps = capabilities("DCS", bytes(fif))
    assert caps.resolutions == ("200x200 dpi",) and caps.width == "255 mm (B4, 2048 dots)"
    assert caps.length == "B4 (364 mm)" and caps.scan_time == "40 ms"
    assert caps.ecm and caps.ecm_frame_size == 64 and caps.compression == ("MH (1-D)",)
    # superfine, JBIG; an extension bit left clear hides the octets after it
    fif = bytearray(10)
    for bit in (24, 32, 40, 41, 48, 56, 64, 72, 78):
        fif[(bit - 1) // 8] |= 1 << ((bit - 1) % 8)
    caps = capabilities("DCS", bytes(fif))
    assert caps.resolutions == ("superfine 8x15.4 lines/mm (204x391 dpi)",) and caps.compression == ("JBIG (T.85)",)
    fif[3] &= 0x7F  # bit 32 cleared: octets 5 on are not there
    caps = capabilities("DCS", bytes(fif))
    assert caps.resolutions == ("standard 8x3.85 lines/mm (204x98 dpi)",) and caps.compression == ("MH (1-D)",)
    # a short DCS (two octets) reads as what it says, the rest "not stated"
    short = capabilities("DCS", b"\x00\x46")
    assert short.modem_and_rate == "V.29, 9,600 bit/s" and short.width == "not stated"
    assert capabilities("DCS", b"\x00").modem_and_rate == "not stated"


def test_other_frames_in_words() -> None:
    assert frame_name(0x83) == frame_name(0x82) and frame_name(0x83)[0] == "DCS"
    assert frame_name(0x81)[0] == "DTC" and frame_name(0x80)[0] == "DIS"  # DIS/DTC: no X bit
    assert frame_name(0x77)[0] == "FCF 0x77"
    ppr = decode_frame(bytes([0xFF, 0x13, 0xBD]) + bytes([0x05, 0x80]) + bytes(30), True)
    assert ppr.name == "PPR" and ppr.details == ("3 frames to send again",)
    ctc = decode_frame(bytes([0xFF, 0x13, 0x12, 0x00, 0x02 | (0x3 << 2)]), False)
    assert ctc.name == "CTC" and ctc.details == ("Continue at V.29, 7,200 bit/s",)
    nsf = decode_frame(bytes([0xFF, 0x03, 0x20, 0xAD, 0x00, 0x31, 0x32]), False)
    assert nsf.name == "NSF" and nsf.details == ("4 bytes of maker-specific data",)
    eor = decode_frame(bytes([0xFF, 0x13, 0xCF, 0x2F]), True)
    assert eor.name == "EOR" and eor.details == ("Last page done",)
    odd_tsi = decode_frame(bytes([0xFF, 0x03, 0x43]) + b"\x01<b>" + b" " * 16, True)
    assert odd_tsi.ident == ">b<?"  # unprintable replaced; markup is escaped by the page, not here
    assert decode_frame(b"\xff", True).name == "short frame"
    assert result_in_words(0) == "The fax was received completely." and result_in_words(-1) is None


def test_result_words_follow_spandsps_codes() -> None:
    """The table is in t30.h's order: each code's words say what spandsp's own text says."""
    pairs = {"T2 expired": "went quiet", "Unexpected DCN": "hung up the fax session", "TIFF": "file",
             "Carrier lost": "signal was lost", "dropped prematurely": "ended before", "OK": "completely",
             "Timed out waiting for the first message": "never started", "Failed to train": "speed"}
    seen = set()
    for code in range(50):
        theirs, ours = result_text(code), result_in_words(code)
        assert theirs != "???" and ours, code
        for key, words in pairs.items():
            if key in theirs:
                assert words in ours, (code, theirs, ours)
                seen.add(key)
    assert seen == set(pairs)
    assert result_text(50) != "???" and result_in_words(50) is None  # beyond: spandsp's text is shown


def test_record_frame_counts_image_frames_per_block_and_direction() -> None:
    trace: collections.deque[str] = collections.deque(maxlen=50)
    fcd = lambda n: bytes([0xFF, 0x03, 0x06, n]) + bytes(256)  # noqa: E731
    rcp = bytes([0xFF, 0x03, 0x86])
    for n in range(4):
        record_frame(trace, True, fcd(n))
    for _ in range(3):
        record_frame(trace, True, rcp)
    record_frame(trace, True, bytes([0xFF, 0x13, 0xBF, 0x00, 0x00, 0x00, 0x03]))
    record_frame(trace, False, bytes([0xFF, 0x13, 0xBD]) + b"\x06" + bytes(31))  # PPR: 1 and 2 again
    for n in (2, 1):
        record_frame(trace, True, fcd(n))
    record_frame(trace, True, rcp)
    record_frame(trace, False, fcd(0))  # the other direction: its own line
    assert list(trace) == [
        "< image data: 4 FCD frames (#0-#3, 1024 bytes), 3 RCP",
        "< PPS ff 13 bf 00 00 00 03",
        "> PPR ff 13 bd 06" + " 00" * 31,
        "< image data: 2 FCD frames (#1-#2, 512 bytes), 1 RCP",
        "> image data: 1 FCD frame (#0-#0, 256 bytes)"]
    items = parse_trace(trace)
    assert [type(i).__name__ for i in items] == ["ImageData", "Frame", "Frame", "ImageData", "ImageData"]
    assert items[3] == ImageData(True, 2, 1, 512, 1, 2)
    assert items[2].details == ("2 frames to send again",)  # type: ignore[union-attr]
    # an FCD after RCPs is the next block: a new line
    record_frame(trace, False, rcp)
    record_frame(trace, False, fcd(5))
    assert trace[-1] == "> image data: 1 FCD frame (#5-#5, 256 bytes)"


def test_older_traces_with_every_fcd_in_hex_are_counted_too() -> None:
    lines = ["> DIS ff 13 80 00 ee fa", *(f"< FCD ff 03 06 {n:02x} " + " ".join(["aa"] * 8) for n in range(5)),
             "< RCP ff 03 86", "< PPS ff 13 bf 2f 00 00 04"]
    items = parse_trace(lines)
    assert [type(i).__name__ for i in items] == ["Frame", "ImageData", "Frame"]
    assert items[1] == ImageData(True, 5, 1, 40, 0, 4)


def test_log_lines_and_modem_dialogue() -> None:
    items = parse_trace(["FLOW fb3 Starting answer mode", "PROTOCOL_WARNING fb3 Unexpected DCN", "",
                         "> AT+FDR", "< +FCS:1,5,0,2,0,0,0,0", "! page 1 lost: short"])
    assert items[:2] == [Note("FLOW", "Starting answer mode"), Note("PROTOCOL_WARNING", "Unexpected DCN")]
    assert items[2:] == [Line("> AT+FDR"), Line("< +FCS:1,5,0,2,0,0,0,0"), Line("! page 1 lost: short")]
    assert frames_only(items) == items[1:]  # FLOW notes stay in the file, problems stay on the page
    assert "[protocol_warning] Unexpected DCN" in trace_text(items)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.booleans())
def test_any_frame_decodes_without_raising(frame: bytes, received: bool) -> None:
    item = decode_frame(frame, received)
    assert item.raw == frame and all(isinstance(d, str) for d in item.details)
    trace: collections.deque[str] = collections.deque()
    if len(frame) >= 3:
        record_frame(trace, received, frame)
        assert len(parse_trace(trace)) == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=8))
def test_any_trace_parses_without_raising(lines: list[str]) -> None:
    trace_text(parse_trace(lines))


def test_spandsps_log_reaches_its_terminal_for_the_whole_call(tmp_path: Path) -> None:
    """spandsp keeps the tag's pointer, not a copy: a tag freed after set-up made the log lines of
    the rest of the call go nowhere (seen in a fresh interpreter).  Both ends' logs, start to end."""
    script = f"""
import pathlib, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_t30decode import call
trace = call(pathlib.Path({str(tmp_path)!r}), ecm=True, pages=1)
print(sum('Remote gave TSI as' in x for x in trace), sum('Call completed' in x for x in trace))
"""
    import subprocess

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]


def test_bounded_trace_keeps_the_handshake_of_a_long_call() -> None:
    frames_ = ["> DIS ff 13 80 00 ee fa", "< DCS ff 13 83 00 62 f8 44", "> CFR ff 13 84"]
    blocks = [x for n in range(60) for x in (f"< image data: 53 FCD frames (#0-#52, 13568 bytes), 3 RCP",
                                           f"< PPS ff 13 bf 00 {n:02x} 00 34", "> MCF ff 13 8c")]
    log = [f"FLOW fb7 log line {n}" for n in range(3000)]
    lines = frames_ + log[:1500] + blocks + log[1500:] + ["< DCN ff 13 fb"]
    kept = bounded_trace(lines)
    assert len(kept) <= 400 and sum(len(x) + 1 for x in kept) <= 64 * 1024
    assert [x for x in kept if not x.startswith("FLOW")] == frames_ + blocks + ["< DCN ff 13 fb"]
    assert kept[3] == "FLOW fb7 log line 0" and "FLOW fb7 log line 2999" in kept
    (note,) = [x for x in kept if x.startswith("FLOW fb0")]
    left_out = int(note.split("(")[1].split()[0])
    assert left_out + sum(x.startswith("FLOW fb7") for x in kept) == 3000
    assert [type(i).__name__ for i in parse_trace([note])] == ["Note"]  # in the file, not on the page
    # even the frames do not fit: the newest of them
    many = [f"> MCF ff 13 8c {n % 256:02x}" for n in range(1000)]
    assert bounded_trace(many) == many[-400:]


@pytest.mark.parametrize("frame", [bytes.fromhex("f6133b"), bytes.fromhex("ff000162f800"), bytes.fromhex("ff13ff") + bytes(20)])
def test_a_frame_of_unknown_kind_reads_back_from_the_trace_as_a_frame(frame: bytes) -> None:
    """Found by fuzzing (t30_frames): an unknown FCF was written as "FCF 0x3b", two words, and the
    stored line no longer read back as a frame (the fax page showed it as text, undecoded)."""
    trace: collections.deque[str] = collections.deque(maxlen=4)
    record_frame(trace, True, frame)
    (back,) = parse_trace(trace)
    assert isinstance(back, Frame) and back.raw == frame and back.name == decode_frame(frame, True).name
