"""What a Class 2 / 2.0 modem reports, as data: the two spellings of the command set, the T.32
hang-up codes, the session parameters of +FCS/+FDCS, and the page-quality rules (sans-I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from appliance.modem.fparams import parse_fparams
from appliance.spandsp.t4 import T4_1D, T4_2D, T6, X_RES_R8, Y_RES_FINE, Y_RES_STANDARD, Y_RES_SUPERFINE, PageStats
from appliance.strictnum import parse_uint

_HEX_DIGITS = frozenset("0123456789ABCDEFabcdef")

DC2 = b"\x12"  # the DTE is ready for page data (sent after +FDR's CONNECT)
CAN = b"\x18"  # abort a receive in progress

ALL_RESULTS = ("OK", "ERROR", "CONNECT", "NO CARRIER", "BUSY", "NO DIALTONE", "NO ANSWER", "+FCERROR")


@dataclass(frozen=True)
class Spelling:
    """Command and report names of one Class 2 dialect."""

    fclass: str
    connect: str  # call connected (fax handshake seen)
    tsi: str  # the sender's ident
    dcs: str  # negotiated session parameters
    page: str  # page transfer status (and the DTE's copy-quality answer)
    eop: str  # post-page message
    hangup: str  # hang-up status
    local_id: str  # our ident
    caps: str  # our capabilities (ec field: ECM)
    bit_order: str
    hex_reports: bool  # Class 2.0 reports codes in hex


CLASS2 = Spelling("2", "+FCON", "+FTSI", "+FDCS", "+FPTS", "+FET", "+FHNG", "+FLID", "+FDCC", "+FBOR", False)
CLASS20 = Spelling("2.0", "+FCO", "+FTI", "+FCS", "+FPS", "+FET", "+FHS", "+FLI", "+FCC", "+FBO", True)
SPELLINGS = {"2": CLASS2, "2.0": CLASS20}

#: T.32 table 23 (Class 2.0, hex) / SP-2388 (Class 2, decimal; 100-103 there are A0-A3 here)
HANGUP_TEXT = {
    "00": "normal end of call",
    "01": "ring detected without a successful handshake",
    "02": "call aborted from +FK or <CAN>",
    "03": "no loop current",
    "04": "ringback detected, no answer (timeout)",
    "05": "ringback detected, answer without CED",
    "10": "unspecified phase A error",
    "11": "no answer (T.30 T1 timeout)",
    "20": "unspecified transmit phase B error",
    "21": "remote cannot receive or send",
    "22": "COMREC error in transmit phase B",
    "23": "COMREC invalid command received",
    "24": "RSPREC error",
    "25": "DCS sent three times without response",
    "26": "DIS/DTC received 3 times; DCS not recognized",
    "27": "failure to train",
    "28": "RSPREC invalid response received",
    "40": "unspecified transmit phase C error",
    "41": "unspecified image format error",
    "42": "image conversion error",
    "43": "DTE to DCE data underflow",
    "44": "unrecognized transparent data command",
    "45": "image error, line length wrong",
    "46": "image error, page length wrong",
    "47": "image error, wrong compression code",
    "50": "unspecified transmit phase D error",
    "51": "RSPREC error",
    "52": "no response to MPS repeated 3 times",
    "53": "invalid response to MPS",
    "54": "no response to EOP repeated 3 times",
    "55": "invalid response to EOP",
    "56": "no response to EOM repeated 3 times",
    "57": "invalid response to EOM",
    "58": "unable to continue after PIN or PIP",
    "70": "unspecified receive phase B error",
    "71": "RSPREC error",
    "72": "COMREC error",
    "73": "T.30 T2 timeout, expected page not received",
    "74": "T.30 T1 timeout after EOM received",
    "90": "unspecified receive phase C error",
    "91": "missing EOL after 5 seconds",
    "92": "bad CRC or frame (ECM mode)",
    "93": "DCE to DTE buffer overflow",
    "94": "bad CRC or frame (ECM or BFT modes)",
    "A0": "unspecified receive phase D error",
    "A1": "RSPREC invalid response received",
    "A2": "COMREC invalid response received",
    "A3": "unable to continue after PIN or PIP",
}
_GROUP_TEXT = {
    "0": "call placement or termination",
    "1": "phase A (call set-up)",
    "2": "transmit phase B",
    "4": "transmit phase C",
    "5": "transmit phase D",
    "7": "receive phase B",
    "9": "receive phase C",
    "A": "receive phase D",
}


def hangup_key(text: str, hex_reports: bool) -> str:
    """The T.32 key ("00", "73", "A0") of a reported hang-up code; ValueError if it is none."""
    text = text.strip().strip('"')
    if hex_reports:  # int(text, 16) also took "-8A", "0x8A" and "8_A"
        if not 0 < len(text) <= 2 or not set(text) <= _HEX_DIGITS:
            raise ValueError(f"hang-up code {text[:20]!r} is not two hex digits")
        return f"{int(text, 16):02X}"
    n = parse_uint(text, 255, name="hang-up code")
    if n >= 100:  # SP-2388 numbers receive phase D errors 100-103
        return f"A{n - 100:X}"
    return f"{n:02d}"


def hangup_text(key: str) -> str:
    if key in HANGUP_TEXT:
        return HANGUP_TEXT[key]
    group = _GROUP_TEXT.get(key[:1])
    return f"hang-up code {key} ({group} error)" if group else f"unknown hang-up code {key}"


#: +FCS/+FDCS fields: vr, br, wd, ln, df, ec, bf, st
_VR = {
    0: (X_RES_R8, Y_RES_STANDARD, "204x98"),
    1: (X_RES_R8, Y_RES_FINE, "204x196"),
    2: (X_RES_R8, Y_RES_SUPERFINE, "204x391"),
    8: (7874, 3937, "200x100"),
    0x10: (7874, 7874, "200x200"),
}
_WD = {0: 1728, 1: 2048, 2: 2432, 3: 1216, 4: 864}
_DF = {0: T4_1D, 1: T4_2D, 3: T6}


@dataclass(frozen=True)
class SessionParams:
    """What the modem negotiated (+FCS:/+FDCS:)."""

    vr: int = 0
    br: int = 5
    wd: int = 0
    df: int = 0
    ec: int = 0

    @property
    def bit_rate(self) -> int:
        return 2400 * (self.br + 1)

    @property
    def encoding(self) -> int:
        return _DF[self.df]

    @property
    def width(self) -> int:
        return _WD.get(self.wd, 1728)

    @property
    def resolution(self) -> tuple[int, int, str]:
        return _VR.get(self.vr, _VR[1])


def parse_dcs(line: str, hex_reports: bool) -> SessionParams:
    """ "+FCS:1,5,0,2,0,0,0,0" -> SessionParams; ValueError for anything unusable."""
    try:
        values = parse_fparams(line, 16 if hex_reports else 10)
    except ValueError:
        values = parse_fparams(line, 10)
    nums = [v if isinstance(v, int) else 0 for v in values]
    if len(nums) < 5 or any(isinstance(v, str) and v for v in values[:6]):
        raise ValueError(f"not a session parameter report: {line!r}")
    nums += [0] * (8 - len(nums))
    p = SessionParams(vr=nums[0], br=nums[1], wd=nums[2], df=nums[4], ec=nums[5])
    if p.df not in _DF:
        raise ValueError(f"page coding {p.df} is not one we decode (0 MH, 1 MR, 3 MMR): {line!r}")
    if not 0 <= p.br <= 15:
        raise ValueError(f"bit rate code {p.br} out of range: {line!r}")
    return p


class State(Enum):
    SETUP = "setup"
    ANSWERING = "answering"
    BETWEEN_PAGES = "between pages"
    IN_PAGE = "in page"
    AFTER_PAGE = "after page"
    DONE = "done"


@dataclass(frozen=True)
class Command:
    text: str
    timeout: float
    optional: bool = False  # an ERROR is noted and ignored (a modem without the feature)
    kind: str = "setup"  # setup | answer | fdr | quality | hangup


@dataclass
class PageRecord:
    stats: PageStats
    partial: bool = False
    post_page: int | None = None  # +FET value
    modem_status: list[int | str] = field(default_factory=list)  # +FPS: fields
    quality: int = 1  # our answer: 1 MCF, 2 RTN

    def as_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "bad_rows": s.bad_rows,
            "longest_bad_row_run": s.longest_bad_row_run,
            "width": s.width,
            "length": s.length,
            "resolution": s.resolution,
            "partial": self.partial,
            "post_page": self.post_page,
            "copy_quality": "MCF" if self.quality == 1 else "RTN",
        }


#: a page whose bad rows exceed this share, or a run this long, is answered RTN
BAD_ROW_SHARE = 0.05
BAD_ROW_RUN = 20


#: bytes of the first page looked at to tell the modem's bit order
SNIFF_BYTES = 2048
_EOL = "000000000001"


def eol_count(data: bytes, reversed_order: bool) -> int:
    """How many T.4 EOL codes (eleven 0 bits, then a 1) the data holds read in one bit order."""
    bits = "".join(f"{b:08b}" if reversed_order else f"{b:08b}"[::-1] for b in data)
    return bits.count(_EOL)


def looks_reversed(data: bytes) -> bool | None:
    """True if MH/MR data reads as T.4 only MSB first; None when it cannot tell (too few EOLs)."""
    direct, swapped = eol_count(data, False), eol_count(data, True)
    if max(direct, swapped) < 8:
        return None
    return swapped > 1.6 * direct  # measured: the right order shows 2x (MR) to 5x (MH) more


def copy_quality(stats: PageStats, saw_rtc: bool) -> int:
    """1 (MCF) for a good page, 2 (RTN) for one with too many bad rows or no end-of-page mark."""
    if not saw_rtc or stats.length == 0:
        return 2
    if stats.bad_rows > BAD_ROW_SHARE * stats.length or stats.longest_bad_row_run >= BAD_ROW_RUN:
        return 2
    return 1
