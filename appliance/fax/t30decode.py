"""T.30 in words: a call's frames as the fax page and the diagnostics file show them.

Sans-I/O: frame bytes and trace lines in, plain data and text out.  The tables are ITU-T T.30's:
the facsimile control field (FCF) names of 5.3.6, the DIS/DTC/DCS bits of Table 2.  Frames are in
spandsp's order: address 0xff, control 0x03 (0x13 on the final frame), FCF, then the information
field (FIF) with T.30's bit 1 as the least significant bit of its first octet.

A terminal's trace (``appliance/spandsp/t30.py``) holds three kinds of line:

    ``< DCS ff 13 83 00 62 f8 44``       a frame received (<) or sent (>), in hex
    ``< image data: 53 FCD frames (#0-#52, 13780 bytes), 3 RCP``
                                          ECM image frames, counted as they arrive (``record_frame``):
                                          hex of the page itself would fill the trace and say nothing
    ``FLOW fb2 Starting answer mode``     a line of spandsp's own log (severity, session tag, text)

Anything else (a Class 2 modem's AT dialogue) is kept as a line of text.  Older traces hold every
FCD frame in hex; ``parse_trace`` counts those the same way.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

# -- facsimile control fields ---------------------------------------------------------------------
#: FCF -> (name, what it says).  First the frames whose FCF is exact (the initial identification
#: and a few others); then those whose last bit is T.30's "X" bit (which end sent it), matched with
#: that bit cleared.
_EXACT: dict[int, tuple[str, str]] = {
    0x80: ("DIS", "Digital identification signal: what the receiving fax can do"),
    0x40: ("CSI", "Called subscriber identification: the receiving fax's number"),
    0x20: ("NSF", "Non-standard facilities: the receiving fax's maker-specific features"),
    0x81: ("DTC", "Digital transmit command: the caller asks to receive (polling)"),
    0x41: ("CIG", "Calling subscriber identification: the polling fax's number"),
    0x21: ("NSC", "Non-standard facilities command"),
    0xC1: ("PWD", "Password"),
    0xA1: ("SEP", "Selective polling address"),
    0x61: ("PSA", "Polled sub-address"),
    0xE1: ("CIA", "Calling subscriber internet address"),
    0x11: ("ISP", "Internet selective polling address"),
    0x4B: ("TK", "Transmitter keys (secure fax)"),
    0x4A: ("RK", "Receiver keys (secure fax)"),
    0xA0: ("DES", "Digital extended signal"),
    0x93: ("DEC", "Digital extended command"),
    0x53: ("DER", "Digital extended request"),
    0x06: ("FCD", "Facsimile coded data: part of a page (ECM)"),
    0x86: ("RCP", "Return to control for partial page: end of an ECM block"),
    0x00: ("NULL", "Nothing further"),
}
_WITH_X_BIT: dict[int, tuple[str, str]] = {
    0x82: ("DCS", "Digital command signal: the settings the sending fax chose"),
    0x42: ("TSI", "Transmitting subscriber identification: the sending fax's number"),
    0x22: ("NSS", "Non-standard set-up: maker-specific settings"),
    0xC2: ("SUB", "Sub-address"),
    0xA2: ("SID", "Sender identification"),
    0x12: ("CTC", "Continue to correct: the sender goes on with ECM, at a new speed"),
    0x62: ("TSA", "Transmitting subscriber internet address"),
    0xE2: ("IRA", "Internet routing address"),
    0x84: ("CFR", "Confirmation to receive: training passed, send the page"),
    0x44: ("FTT", "Failure to train: the line failed the speed test, try slower"),
    0xC4: ("CTR", "Response to continue to correct"),
    0x24: ("CSA", "Called subscriber internet address"),
    0x8E: ("EOM", "End of message: page sent, new settings follow"),
    0x4E: ("MPS", "Multipage signal: page sent, another follows"),
    0x2E: ("EOP", "End of procedure: last page sent"),
    0x9E: ("PRI-EOM", "Procedure interrupt, end of message (operator wanted)"),
    0x5E: ("PRI-MPS", "Procedure interrupt, another page follows (operator wanted)"),
    0x3E: ("PRI-EOP", "Procedure interrupt, last page sent (operator wanted)"),
    0x1E: ("EOS", "End of selection"),
    0xBE: ("PPS", "Partial page signal: end of an ECM block"),
    0xCE: ("EOR", "End of retransmission: the sender gives up correcting a block"),
    0x6E: ("RR", "Receiver ready? (ECM flow control)"),
    0x8C: ("MCF", "Message confirmation: page received well"),
    0xCC: ("RTP", "Retrain positive: page received, train again before the next"),
    0x4C: ("RTN", "Retrain negative: page received badly, train again"),
    0xAC: ("PIP", "Procedure interrupt positive"),
    0x2C: ("PIN", "Procedure interrupt negative"),
    0xBC: ("PPR", "Partial page request: frames of the block to send again"),
    0xEC: ("RNR", "Receiver not ready (ECM flow control)"),
    0x1C: ("ERR", "Response to end of retransmission"),
    0xFC: ("FDM", "File diagnostics message"),
    0xFA: ("DCN", "Disconnect: the fax session ends"),
    0x1A: ("CRP", "Command repeat: the last frame was not understood"),
    0xCA: ("FNV", "Field not valid"),
    0xEA: ("TNR", "Transmitter not ready"),
    0x6A: ("TR", "Transmitter ready"),
    0x9A: ("DNK", "Digital not acknowledge"),
    0x6C: ("PID", "Procedure interrupt disconnect"),
}


def frame_name(fcf: int) -> tuple[str, str]:
    """(name, meaning) of a facsimile control field; ("FCF 0x..", "unknown frame") for others."""
    if fcf in _EXACT:
        return _EXACT[fcf]
    return _WITH_X_BIT.get(fcf & 0xFE, (f"FCF 0x{fcf:02x}", "Unknown frame"))


#: the frames that carry a number or name as 20 characters, last character first
_IDENT_FRAMES = {"CSI", "TSI", "CIG", "SUB", "SID", "PWD", "SEP", "PSA"}
#: the post-message commands a PPS or EOR carries as its second FCF
_PPS_TYPES = {
    0x00: "more of this page follows",
    0x4E: "page done, another follows",
    0x2E: "last page done",
    0x8E: "page done, new settings follow",
    0x5E: "page done, another follows (operator wanted)",
    0x3E: "last page done (operator wanted)",
    0x9E: "page done (operator wanted)",
}

# -- DIS / DTC / DCS (Table 2) --------------------------------------------------------------------
#: bits 11-14 read as a number (bit 11 the least significant): what a DIS offers, what a DCS chose
_DIS_MODEMS = {
    0x0: "V.27 ter fall-back mode (2400 bit/s only)",
    0x2: "V.27 ter",
    0x1: "V.29",
    0x3: "V.27 ter and V.29",
    0xB: "V.27 ter, V.29 and V.17",
}
_DCS_MODEMS = {
    0x0: ("V.27 ter", 2400),
    0x2: ("V.27 ter", 4800),
    0x3: ("V.29", 7200),
    0x1: ("V.29", 9600),
    0xB: ("V.17", 7200),
    0x9: ("V.17", 9600),
    0xA: ("V.17", 12000),
    0x8: ("V.17", 14400),
}
#: bits 17-18: recording width; bits 19-20: recording length
_DIS_WIDTHS = {0: "215 mm (A4)", 1: "215 mm (A4) and 255 mm (B4)", 2: "215 mm (A4), 255 mm (B4) and 303 mm (A3)"}
_DCS_WIDTHS = {0: "215 mm (A4, 1728 dots)", 1: "255 mm (B4, 2048 dots)", 2: "303 mm (A3, 2432 dots)"}
_DIS_LENGTHS = {0: "A4 (297 mm)", 1: "A4 and B4 (364 mm)", 2: "unlimited"}
_DCS_LENGTHS = {0: "A4 (297 mm)", 1: "B4 (364 mm)", 2: "unlimited"}
#: bits 21-23: minimum scan line time
_DIS_SCAN = {
    0: "20 ms",
    1: "5 ms",
    2: "10 ms",
    3: "20 ms (half at fine)",
    4: "40 ms",
    5: "40 ms (half at fine)",
    6: "10 ms (half at fine)",
    7: "0 ms",
}
_DCS_SCAN = {0: "20 ms", 1: "5 ms", 2: "10 ms", 4: "40 ms", 7: "0 ms"}
#: resolutions beyond standard and fine, by bit: (metric name, inch name when bit 44 says inch)
_RESOLUTIONS = {
    41: "superfine 8x15.4 lines/mm (204x391 dpi)",
    42: "300x300 dpi",
    43: "16x15.4 lines/mm (408x391 dpi)",
    105: "600x600 dpi",
    106: "1200x1200 dpi",
    107: "300x600 dpi",
    108: "400x800 dpi",
    109: "600x1200 dpi",
}
STANDARD_RES = "standard 8x3.85 lines/mm (204x98 dpi)"
FINE_RES = "fine 8x7.7 lines/mm (204x196 dpi)"
#: other capabilities (DIS/DTC) or choices (DCS) worth naming when set
_FLAGS: dict[int, str] = {
    1: "Internet fax, store and forward (T.37)",
    3: "Internet fax, real time (T.38)",
    4: "3G mobile network",
    6: "V.8 / V.34 capable",
    7: "64-octet ECM frames preferred",
    9: "has a document to be polled",
    26: "uncompressed mode",
    33: "field not valid (FNV) understood",
    34: "multiple selective polling",
    35: "polled sub-address",
    37: "plane interleave",
    38: "G.726 voice",
    47: "selective polling",
    49: "sub-addressing",
    51: "has a data file to be polled",
    53: "binary file transfer (BFT)",
    54: "document transfer mode (DTM)",
    55: "EDI",
    57: "basic transfer mode (BTM)",
    59: "has a mixed-mode document to be polled",
    60: "character mode",
    62: "mixed mode",
    65: "processable mode 26",
    66: "digital network",
    67: "full duplex",
    69: "full colour",
    71: "12 bits per colour component",
    73: "no subsampling",
    74: "custom illuminant",
    75: "custom gamut",
    76: "North American Letter",
    77: "North American Legal",
    81: "HKM key management",
    82: "RSA key management",
    83: "security override",
    84: "HFX40 cipher",
    85: "alternative cipher 2",
    86: "alternative cipher 3",
    87: "HFX40-I hashing",
    97: "colour at 300/400 dpi",
    98: "colour at 100 dpi",
    99: "simple phase C BFT",
    100: "extended BFT",
    101: "internet selective polling address",
    102: "internet routing address",
    110: "colour at 600 dpi",
    111: "colour at 1200 dpi",
    113: "alternate double-sided",
    114: "continuous double-sided",
    115: "black and white MRC",
    116: "T.45 run-length colour",
    121: "T.38 flow control",
    122: "K factor above 4",
    123: "internet-aware fax (T.38)",
    127: "sYCC-JPEG colour",
}
#: bit 50 means one thing in a DIS and another in a DCS
_DIS_FLAGS = {**_FLAGS, 50: "password"}
_DCS_FLAGS = {**_FLAGS, 50: "sender identification (SID) follows"}
#: the codings, in the order a DIS lists them; a DCS names the first of them it sets, else MH
_CODINGS = (
    ("MR (2-D)", 16),
    ("MMR (T.6)", 31),
    ("JBIG (T.85)", 78),
    ("JBIG L0 (T.85)", 79),
    ("JPEG (T.81)", 68),
    ("T.43 colour", 36),
)
_DCS_CODING_ORDER = ("MMR (T.6)", "JBIG (T.85)", "JBIG L0 (T.85)", "JPEG (T.81)", "T.43 colour", "MR (2-D)")


def _octets(fif: bytes) -> bytes:
    """The FIF up to the last octet the extension bits (24, 32, 40, ...) say is there."""
    n = min(len(fif), 3)
    while n < len(fif) and fif[n - 1] & 0x80:
        n += 1
    return fif[:n]


def _bit(fif: bytes, n: int) -> bool:
    i = (n - 1) // 8
    return i < len(fif) and bool((fif[i] >> ((n - 1) % 8)) & 1)


def _field(fif: bytes, first: int, last: int) -> int | None:
    """Bits first..last (inside one octet) as a number, first the least significant; None if absent."""
    i = (first - 1) // 8
    if i >= len(fif):
        return None
    return (fif[i] >> ((first - 1) % 8)) & ((1 << (last - first + 1)) - 1)


@dataclass(frozen=True)
class Capabilities:
    """A DIS or DTC (what a fax can do) or a DCS (what the sender chose), in words."""

    command: bool  # a DCS: choices, not capabilities
    receive: bool  # DIS: can receive; DCS: the receiver is told to receive
    modem: str  # DIS: "V.27 ter, V.29 and V.17"; DCS: "V.17"
    bit_rate: int  # DCS only
    resolutions: tuple[str, ...]  # DCS: the one in use
    width: str
    length: str
    scan_time: str
    compression: tuple[str, ...]  # DCS: the one in use
    ecm: bool
    ecm_frame_size: int  # DCS with ECM: 64 or 256 octets
    flags: tuple[str, ...]

    @property
    def modem_and_rate(self) -> str:
        return f"{self.modem}, {self.bit_rate:,} bit/s" if self.bit_rate else self.modem

    def details(self) -> list[str]:
        """One line per field, for the trace."""
        if self.command:
            lines = [
                f"Modem: {self.modem_and_rate}",
                f"Resolution: {', '.join(self.resolutions)}",
                f"Compression: {', '.join(self.compression)}",
                "Error correction (ECM): " + (f"yes, {self.ecm_frame_size}-octet frames" if self.ecm else "no"),
                f"Page width: {self.width}",
                f"Page length: {self.length}",
                f"Minimum scan line time: {self.scan_time}",
            ]
        else:
            lines = [
                f"Can receive: {'yes' if self.receive else 'no'}",
                f"Modems: {self.modem}",
                f"Resolutions: {', '.join(self.resolutions)}",
                f"Compression: {', '.join(self.compression)}",
                f"Error correction (ECM): {'yes' if self.ecm else 'no'}",
                f"Page widths: {self.width}",
                f"Page lengths: {self.length}",
                f"Minimum scan line time: {self.scan_time}",
            ]
        if self.flags:
            lines.append(("Also: " if self.command else "Other features: ") + ", ".join(self.flags))
        return lines


def capabilities(fcf_name: str, fif: bytes) -> Capabilities:
    """Decode the FIF of a DIS, DTC or DCS (Table 2 of T.30)."""
    fif = _octets(fif)
    dcs = fcf_name == "DCS"
    inch = _bit(fif, 44)
    rate_bits = _field(fif, 11, 14)
    if rate_bits is None:
        modem, rate = "not stated", 0
    elif dcs:
        modem, rate = _DCS_MODEMS.get(rate_bits, (f"reserved modem code {rate_bits}", 0))
        if _bit(fif, 123):
            modem, rate = "set by T.38 (internet-aware fax)", 0
    else:
        modem, rate = _DIS_MODEMS.get(rate_bits, f"reserved modem code {rate_bits}"), 0
        if _bit(fif, 6):
            modem += "; V.34 by V.8"
    high = [name for bit, name in _RESOLUTIONS.items() if _bit(fif, bit)]
    r43 = _RESOLUTIONS[43]  # a DCS says which of the two it is (bit 44: inch); a DIS offers either
    alt = ("400x400 dpi" if inch else r43) if dcs else f"{r43} or 400x400 dpi"
    high = [alt if r == r43 else r for r in high]
    if dcs:
        fine = "200x200 dpi" if inch else FINE_RES
        resolutions: tuple[str, ...] = (
            high[-1] if high else fine if _bit(fif, 15) else ("200x100 dpi" if inch else STANDARD_RES),
        )
    else:
        resolutions = (STANDARD_RES, *([FINE_RES] if _bit(fif, 15) else []), *high)
    used = [name for name, bit in _CODINGS if _bit(fif, bit)]
    if dcs:
        compression: tuple[str, ...] = (next((c for c in _DCS_CODING_ORDER if c in used), "MH (1-D)"),)
    else:
        compression = ("MH (1-D)", *used)
    width_code, length_code = _field(fif, 17, 18), _field(fif, 19, 20)
    widths, lengths = (_DCS_WIDTHS, _DCS_LENGTHS) if dcs else (_DIS_WIDTHS, _DIS_LENGTHS)
    scan = _field(fif, 21, 23)
    # a DCS names its page size under length
    flags = tuple(
        name
        for bit, name in sorted((_DCS_FLAGS if dcs else _DIS_FLAGS).items())
        if _bit(fif, bit) and not (dcs and bit in (76, 77))
    )
    length = lengths.get(length_code, "invalid") if length_code is not None else "not stated"
    if dcs and _bit(fif, 76):
        length = "North American Letter (279 mm)"
    elif dcs and _bit(fif, 77):
        length = "North American Legal (356 mm)"
    return Capabilities(
        command=dcs,
        receive=_bit(fif, 10),
        modem=modem,
        bit_rate=rate,
        resolutions=resolutions,
        width=widths.get(width_code, "invalid") if width_code is not None else "not stated",
        length=length,
        scan_time=(_DCS_SCAN if dcs else _DIS_SCAN).get(scan, "reserved") if scan is not None else "not stated",
        compression=compression,
        ecm=_bit(fif, 27),
        ecm_frame_size=64 if _bit(fif, 28) else 256,
        flags=flags,
    )


# -- frames ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """One HDLC frame of the call, decoded."""

    received: bool
    name: str
    meaning: str
    details: tuple[str, ...]
    raw: bytes
    caps: Capabilities | None = None  # DIS, DTC, DCS
    ident: str | None = None  # CSI, TSI, CIG, ...


@dataclass(frozen=True)
class ImageData:
    """ECM image frames in a row: counted, never listed."""

    received: bool
    frames: int
    rcp: int
    octets: int
    first: int | None
    last: int | None

    def text(self) -> str:
        parts = []
        if self.frames:
            span = f"#{self.first}-#{self.last}, " if self.first is not None else ""
            parts.append(f"{self.frames} FCD frame{'s' if self.frames != 1 else ''} ({span}{self.octets} bytes)")
        if self.rcp:
            parts.append(f"{self.rcp} RCP")
        return "image data: " + ", ".join(parts)


@dataclass(frozen=True)
class Note:
    """A line of spandsp's own log."""

    severity: str
    text: str

    @property
    def problem(self) -> bool:
        """Worth showing beside the frames: spandsp's errors and protocol warnings (its FLOW and
        DEBUG lines, and plain warnings such as "ECM carrier not found" while it listens, are
        for the diagnostics file)."""
        return self.severity in ("ERROR", "PROTOCOL_ERROR", "PROTOCOL_WARNING")


@dataclass(frozen=True)
class Line:
    """A trace line that is neither a frame nor spandsp's log (a Class 2 modem's dialogue)."""

    text: str


TraceItem = Frame | ImageData | Note | Line


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F else "?" for b in data)


def decode_frame(frame: bytes, received: bool) -> Frame:
    """Name and explain one frame (address, control, FCF, FIF); never raises on short or odd frames."""
    if len(frame) < 3:
        return Frame(received, "short frame", f"{len(frame)} bytes, too short for a T.30 frame", (), frame)
    fcf, fif = frame[2], frame[3:]
    name, meaning = frame_name(fcf)
    details: list[str] = []
    caps: Capabilities | None = None
    ident: str | None = None
    if name in ("DIS", "DTC", "DCS"):
        caps = capabilities(name, fif)
        details = caps.details()
    elif name in _IDENT_FRAMES:
        ident = _printable(fif[::-1]).strip()
        details = [f"{'Number' if name in ('CSI', 'TSI', 'CIG') else 'Text'}: {ident or '(blank)'}"]
    elif name in ("NSF", "NSS", "NSC"):
        details = [f"{len(fif)} bytes of maker-specific data"]
    elif name in ("PPS", "EOR") and fif:
        kind = _PPS_TYPES.get(fif[0] & 0xFE, f"type 0x{fif[0]:02x}")
        details = [kind.capitalize()]
        if name == "PPS" and len(fif) >= 4:
            details.append(f"Page {fif[1] + 1}, block {fif[2] + 1}, {fif[3] + 1} frames")
    elif name == "PPR" and fif:
        missing = sum(bin(b).count("1") for b in fif[:32])
        details = [f"{missing} frame{'s' if missing != 1 else ''} to send again"]
    elif name == "CTC" and len(fif) >= 2:
        modem, rate = _DCS_MODEMS.get(_field(fif, 11, 14) or 0, ("reserved", 0))
        details = [f"Continue at {modem}, {rate:,} bit/s" if rate else f"Continue at {modem}"]
    elif name in ("FCD", "RCP"):
        details = []
    elif fif:
        details = [f"{len(fif)} more bytes"]
    return Frame(received, name, meaning, tuple(details), frame, caps, ident)


# -- the trace ------------------------------------------------------------------------------------
_HEX = re.compile(r"^[0-9a-f]{2}$")
_RUN = re.compile(
    r"^([<>]) image data: (?:(\d+) FCD frames? \((?:#(\d+)-#(\d+), )?(\d+) bytes\))?"
    r"(?:, )?(?:(\d+) RCP)?$"
)
_LOG = re.compile(r"^(ERROR|WARNING|PROTOCOL_ERROR|PROTOCOL_WARNING|FLOW(?: \d)?|DEBUG \d) (fb\d+) ?(.*)$")


def _run_from(line: str) -> ImageData | None:
    m = _RUN.match(line)
    if m is None or (m.group(2) is None and m.group(6) is None):
        return None
    frames = int(m.group(2) or 0)
    return ImageData(
        m.group(1) == "<",
        frames,
        int(m.group(6) or 0),
        int(m.group(5) or 0),
        int(m.group(3)) if m.group(3) else None,
        int(m.group(4)) if m.group(4) else None,
    )


def _add_image(run: ImageData | None, received: bool, frame: bytes) -> ImageData | None:
    """``run`` with one more image frame, or None when the frame starts a new run."""
    if run is None:
        return _start_image(received, frame)
    if run.received != received:
        return None
    if run.rcp and frame[2] != 0x86:  # an FCD after RCPs: the next block
        return None
    return _with_frame(run, frame)


def _start_image(received: bool, frame: bytes) -> ImageData:
    """The run an image frame starts."""
    return _with_frame(ImageData(received, 0, 0, 0, None, None), frame)


def _with_frame(run: ImageData, frame: bytes) -> ImageData:
    if frame[2] == 0x86:  # RCP
        return ImageData(run.received, run.frames, run.rcp + 1, run.octets, run.first, run.last)
    seq = frame[3] if len(frame) > 3 else None
    first = run.first if run.first is not None else seq
    last = seq if run.last is None or seq is None else max(run.last, seq)
    first = seq if first is None or seq is None else min(first, seq)
    return ImageData(run.received, run.frames + 1, 0, run.octets + max(len(frame) - 4, 0), first, last)


def _image_line(run: ImageData) -> str:
    return f"{'<' if run.received else '>'} {run.text()}"


def record_frame(trace: deque[str], received: bool, frame: bytes) -> None:
    """Append one frame to a terminal's trace: control frames in hex, image frames counted into
    the line before (one line per ECM block and direction)."""
    if len(frame) >= 3 and frame[2] in (0x06, 0x86):
        # the run this frame continues: the last line that is not spandsp's FLOW log (a few back)
        at = next((i for i in range(len(trace) - 1, max(len(trace) - 9, -1), -1) if not is_log_line(trace[i])), None)
        last = _run_from(trace[at]) if at is not None else None
        run = _add_image(last, received, frame)
        if run is not None and last is not None and at is not None:
            trace[at] = _image_line(run)
        else:
            trace.append(_image_line(_start_image(received, frame)))
        return
    # one word for the name ("FCF-0x3b"): parse_trace reads the line as "<dir> <name> <hex>..."
    name = frame_name(frame[2])[0].replace(" ", "-") if len(frame) >= 3 else "short"
    trace.append(f"{'<' if received else '>'} {name} {frame.hex(' ')}")


#: spandsp's log lines the trace does without: its hex dump of each frame (the frame handler has
#: recorded the frame already, image frames only counted), the three lines it logs for every ECM
#: image frame (hundreds a page) and its bit-by-bit reading of each DIS/DTC/DCS (sixty lines
#: each, which the decoder here spells out from the frame itself)
_LOG_DROPPED = re.compile(
    r"^\S+ fb\d+ (?:[RT]x: +[0-9a-f]{2}(?: [0-9a-f]{2})*"
    r"|[RT]x: +(?:FCD|RCP) |Storing ECM frame |Stop none \(0 remaining\)$"
    r"|(?:DIS|DTC|DCS):$| +[.01]{4} [.01]{4}= )"
)


def log_line_kept(line: str) -> bool:
    """Whether a line of spandsp's log goes into a terminal's trace."""
    return _LOG_DROPPED.match(line) is None


def is_log_line(line: str) -> bool:
    """A line of spandsp's log at FLOW or DEBUG level: the first a bounded trace leaves out."""
    return line.startswith(("FLOW", "DEBUG"))


def parse_trace(lines: Iterable[str]) -> list[TraceItem]:
    """A stored trace as items: frames decoded, image frames counted, log lines kept as notes."""
    items: list[TraceItem] = []
    for raw in lines:
        line = str(raw).rstrip()
        if not line:
            continue
        run = _run_from(line)
        if run is not None:
            items.append(run)
            continue
        parts = line.split(" ")
        if len(parts) >= 5 and parts[0] in ("<", ">") and all(_HEX.match(p) for p in parts[2:]):
            frame = bytes.fromhex("".join(parts[2:]))
            received = parts[0] == "<"
            if frame[2] in (0x06, 0x86):  # an older trace: every FCD frame in hex
                prev = items[-1] if items and isinstance(items[-1], ImageData) else None
                merged = _add_image(prev, received, frame)
                if merged is not None and prev is not None:
                    items[-1] = merged
                else:
                    items.append(_start_image(received, frame))
                continue
            items.append(decode_frame(frame, received))
            continue
        m = _LOG.match(line)
        if m is not None:
            items.append(Note(m.group(1), m.group(3)))
            continue
        items.append(Line(line))
    return items


def frames_only(items: Iterable[TraceItem]) -> list[TraceItem]:
    """What the fax page lists: frames, image data counts, and the log lines that are problems."""
    return [i for i in items if isinstance(i, (Frame, ImageData, Line)) or (isinstance(i, Note) and i.problem)]


def chosen_settings(items: Iterable[TraceItem]) -> Capabilities | None:
    """The last DCS the sender sent (the settings its last page came with), if the trace has one."""
    found = None
    for item in items:
        if isinstance(item, Frame) and item.name == "DCS" and item.received and item.caps is not None:
            found = item.caps
    return found


def trace_text(items: Iterable[TraceItem]) -> str:
    """The decoded trace as plain text (the diagnostics file's t30-trace.txt)."""
    out: list[str] = []
    for item in items:
        if isinstance(item, Frame):
            arrow = "<-" if item.received else "->"
            who = "received" if item.received else "sent"
            out.append(f"{arrow} {item.name:<7} {who}: {item.meaning}")
            out += [f"           {d}" for d in item.details]
            out.append(f"           hex: {item.raw.hex(' ')}")
        elif isinstance(item, ImageData):
            out.append(
                f"{'<-' if item.received else '->'} {'ECM':<7} {'received' if item.received else 'sent'}: {item.text()}"
            )
        elif isinstance(item, Note):
            out.append(f"   [{item.severity.lower()}] {item.text}")
        else:
            out.append(f"   {item.text}")
    return "\n".join(out) + ("\n" if out else "")


# -- how the call ended ---------------------------------------------------------------------------
#: spandsp's T.30 completion codes (t30.h, in order) in an owner's words, for a received fax
_RESULTS: dict[int, str] = {
    0: "The fax was received completely.",
    1: "The answer tone went on too long.",
    2: "No fax machine answered.",
    3: "The caller's fax machine never started the fax (perhaps a voice call, or the caller gave up).",
    4: "The fax machines did not agree after an operator interrupt.",
    5: "The sending fax machine's signal did not stop when it should have.",
    6: "The two fax machines found no speed the line carries cleanly (line quality).",
    7: "An operator interrupt failed.",
    8: "The sending fax machine asked for something this appliance cannot receive.",
    9: "The other fax machine cannot receive.",
    10: "The other fax machine has nothing to send.",
    11: "The other fax machine cannot take the page's resolution.",
    12: "The other fax machine cannot take the page's size.",
    13: "The sending fax machine sent a message out of order.",
    14: "Sending: the receiver refused the settings or the speed test.",
    15: "Sending: the receiver hung up after a page.",
    16: "Sending: the receiver's error-correction answers were not valid.",
    17: "Sending: the receiver hung up before saying what it can do.",
    18: "Sending: the receiver answered a page with something unexpected.",
    19: "Sending: the receiver did not say what it can do.",
    20: "Sending: the receiver did not answer the settings.",
    21: "Sending: the receiver did not answer after a page.",
    22: "Sending: the receiver stayed not ready too long (ECM).",
    23: "The sending fax machine's error-correction messages were not valid.",
    24: "The caller sent a fax where a poll was expected.",
    25: "The sending fax machine sent an unexpected command after a page.",
    26: "The sending fax machine's signal was lost during a page (line trouble).",
    27: "A page arrived without readable line ends (line trouble or an incompatible sender).",
    28: "The sending fax machine passed the speed test but sent no page.",
    29: "The sending fax machine went quiet instead of hanging up the fax session.",
    30: "The sending fax machine went quiet after a page.",
    31: "The sending fax machine went quiet before the page.",
    32: "The sending fax machine went quiet before the next page.",
    33: "The sending fax machine went quiet during error correction.",
    34: "The sending fax machine went quiet while settings or a page were expected.",
    35: "The sending fax machine hung up the fax session before sending settings.",
    36: "The sending fax machine hung up the fax session during a page.",
    37: "The sending fax machine hung up the fax session without ending the page.",
    38: "The sending fax machine hung up the fax session after announcing another page.",
    39: "The sending fax machine hung up the fax session during error correction.",
    40: "The sending fax machine hung up the fax session after being asked to resend.",
    41: "The fax file could not be written on the appliance.",
    42: "The fax file could not be written on the appliance.",
    43: "The fax file could not be written on the appliance.",
    44: "The fax file could not be written on the appliance.",
    45: "The fax file could not be written on the appliance.",
    46: "The fax file could not be written on the appliance.",
    47: "The appliance ran out of memory for the pages.",
    48: "The fax machines gave up after the permitted retries.",
    49: "The call ended before the fax was finished (the caller hung up or the line dropped).",
}


def result_in_words(code: int) -> str | None:
    """What a T.30 completion code means for the owner, or None for a code it does not know."""
    return _RESULTS.get(code)
