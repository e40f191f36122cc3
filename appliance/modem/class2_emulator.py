"""A Class 2.0 (and Class 2) fax modem emulated in software: spandsp does the modem's T.30.

The virtual line's ports are Class 1 modems (spandsp T.31) by default; a DTE that sends
``AT+FCLASS=2.0`` (or ``=2``) gets this interpreter instead, and ``AT+FCLASS=0/1/1.0``, ``ATZ``
or ``AT&F`` hand the port back to T.31 (see ``VirtualPort.feed``).  ``LineOptions(class2="B")``
makes a port Class 2 only.

It speaks ``+FCLASS``, ``+FLI``/``+FLID``, ``+FCR``, ``+FCC``/``+FDCC``/``+FIS``/``+FDIS``,
``+FBO``/``+FBOR``, ``+FAA``, ``+FNR``, ``+FIE``, ``+FCQ``, ``+FPS``/``+FPTS``, ``+FMI?`` and
friends, ``ATA``, ``AT+FDR``, ``ATD``, ``AT+FDT``, ``AT+FET``, ``AT+FKS``/``+FK``, ``ATH``,
``ATZ``, ``ATE``/``ATV``/``ATQ``, ``ATI``.  ``ATA`` with no call ringing waits for the next ring
and answers it (efax ``-r`` answers at once, expecting a getty to have seen RING).

How a call goes: ``ATA`` puts a spandsp ``fax_state_t`` (answering, receiving into a TIFF in a
private temporary directory) on the line in place of the T.31 modem (``fb_line_set_fax_end``).
When its T.30 has the sender's DCS, ATA is answered ``+FCO``, ``+FTI:``, ``+FCS:`` and OK.  Each
``AT+FDR`` is answered with the next received page: ``CONNECT``, the page coded again with
spandsp's T.4 coder in the negotiated compression, DLE-stuffed and ended by <DLE><ETX>, then
``+FPS:``, ``+FET:`` and OK; after the last page, ``+FHS:`` and OK (ERROR for a failed call).

What is *not* real Class 2.0 timing: spandsp 0.0.6 writes received pages to a TIFF and offers no
hook for the raw page data, so a page reaches the DTE only once the sender's post-page message
has arrived, and spandsp's T.30 has already answered it (MCF/RTN by its own copy-quality check):
the DTE's ``+FPS=`` verdict is accepted and ignored, ``DC2`` is not waited for, and a DTE that
is slow to ask for a page does not slow the sender down.  Codes in ``+FHS:`` for failed calls
are approximations (70 before any page, 73 after one).

Sending (``ATD``).  ``ATD<number>`` dials on the line; BUSY, NO ANSWER or NO CARRIER (the far
end hung up before answering) end it as on a real modem.  Once the far end answers, ATD is
answered ``+FCO`` and OK.  Each ``AT+FDT`` is answered ``+FCS:`` (the DTE's ``+FIS``/``+FCC``
values) and CONNECT (Class 2 adds XON, the SP-2388 "send data now"); the DTE's page data up to
``<DLE><ETX>`` (then ``AT+FET=n``), or ``<DLE><,>``/``<DLE><;>``/``<DLE><.>`` (Class 2.0: MPS,
EOM, EOP), is decoded with spandsp's T.4 decoder into a TIFF.  The same limitation as receiving,
mirrored: spandsp's T.30 takes a whole TIFF, so the pages are stored and forwarded.  A page
followed by MPS/EOM is answered ``+FPS:1``/OK at once; after the last page (EOP) a calling
spandsp ``fax_state_t`` is put on the line with the stored pages, and the last page's answer
waits for its T.30 outcome: ``+FPS:1`` and OK when every page was confirmed (then ``+FKS`` or
``ATH`` hangs up), else ``+FHS:<code>`` and ERROR.  So the far end's DIS is only heard after
the last page was handed over (the DIS is repeated for 35 s, T.30's T1: every DTE so far hands
its pages over in well under a second), and a far end that is no fax machine shows at the end
as ``+FHS:11``, not as an ATD failure.  A stored page is answered ``+FPS:1`` 1.2 s after its end,
before it went out: a DTE counts it as confirmed though the far end may never get it (the drop
tests see that).  ``<CAN>`` while a page's answer is pending aborts the session (``+FHS:02``).

Sans-I/O like ``T31Modem``, and duck-typed like it for ``VirtualLine``: bytes from the DTE go in
with :meth:`at_rx`, output collects for :meth:`take_output`, line requests queue as
:class:`ModemControl` for :meth:`next_event`, and the line reports with :meth:`call_event`.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import tempfile
from collections import deque

from appliance.modem.class2_codes import CAN, looks_reversed
from appliance.modem.dle import DLE, ETX, dle_stuff
from appliance.sip.errors import LocalProtocolError
from appliance.spandsp._spandsp import ffi, lib
from appliance.spandsp.audio import AudioFaxTerminal
from appliance.spandsp.t4 import (
    T4_1D,
    T4_2D,
    T6,
    Y_RES_FINE,
    Y_RES_STANDARD,
    T4Error,
    T4Receiver,
    T4Transmitter,
    reverse_bits,
)
from appliance.spandsp.t30 import PageDone, PhaseB, PhaseE
from appliance.spandsp.t31 import CallEvent, Control, ModemControl, T31Modem

VERSION = "Faxbridge virtual Class 2.0 modem (spandsp 0.0.6)"

#: report/command names per class: Class 2 (SP-2388) and Class 2.0 (T.32)
_NAMES = {
    "2": {
        "FCO": "+FCON",
        "FTI": "+FTSI",
        "FCI": "+FCSI",
        "FCS": "+FDCS",
        "FPS": "+FPTS",
        "FHS": "+FHNG",
        "FET": "+FET",
    },
    "2.0": {"FCO": "+FCO", "FTI": "+FTI", "FCI": "+FCI", "FCS": "+FCS", "FPS": "+FPS", "FHS": "+FHS", "FET": "+FET"},
}
_DF_TO_ENCODING = {0: T4_1D, 1: T4_2D, 3: T6}
_NUMERIC = {
    "OK": "0",
    "CONNECT": "1",
    "RING": "2",
    "NO CARRIER": "3",
    "ERROR": "4",
    "NO DIALTONE": "6",
    "BUSY": "7",
    "NO ANSWER": "8",
}
#: the DTE's page data is bounded: a page bigger than this is refused (+FHS:43)
MAX_TX_PAGE_BYTES = 4 << 20
#: T.32 <DLE><char> after page data: the post-page message it stands for
_DLE_PPM = {ord(","): "MPS", ord(";"): "EOM", ord("."): "EOP"}
_FET_PPM = {0: "MPS", 1: "EOM", 2: "EOP"}
#: spandsp T30_ERR_* (t30.h, 0.0.6) -> T.32 hang-up code, for the sender's +FHS
_T30_TO_FHS = {2: "11", 3: "11", 6: "27", 8: "21", 9: "21", 14: "25", 17: "23", 19: "23", 20: "25", 21: "54"}
XON = b"\x11"
#: seconds before a stored page's end is answered (see Class2Modem._hold)
HOLD_PAGE_ANSWER = 1.2
_LEAVES_CLASS2 = re.compile(r"^AT.*(Z|&F|\+FCLASS=(0|1|1\.0)\s*$)", re.IGNORECASE)


def dcs_coding(frame: bytes) -> int:
    """The page coding a DCS frame (address, control, FCF, FIF) selects: 0 MH, 1 MR, 3 MMR."""
    fif = frame[3:]
    if len(fif) >= 4 and fif[2] & 0x80 and fif[3] & 0x40:
        return 3  # bit 31: T.6
    if len(fif) >= 2 and fif[1] & 0x80:
        return 1  # bit 16: two-dimensional coding
    return 0


class Phase(enum.Enum):
    """Where the emulated modem is in a call."""

    IDLE = "idle"
    WAITING = "waiting"  # ATA before RING: answers when it rings
    ANSWERING = "answering"
    CONNECTED = "connected"
    DIALLING = "dialling"  # ATD: the far end rings
    SENDING = "sending"  # the far end answered; pages go out
    ENDED = "ended"


#: (from, to) moves of :class:`Phase`; anything else is our bug
PHASE_MOVES: frozenset[tuple[Phase, Phase]] = frozenset(
    {
        (Phase.IDLE, Phase.WAITING),
        (Phase.IDLE, Phase.ANSWERING),
        (Phase.WAITING, Phase.IDLE),
        (Phase.ANSWERING, Phase.CONNECTED),
        (Phase.ANSWERING, Phase.ENDED),
        (Phase.CONNECTED, Phase.ENDED),
        (Phase.ENDED, Phase.WAITING),
        (Phase.ENDED, Phase.ANSWERING),
        (Phase.IDLE, Phase.DIALLING),
        (Phase.ENDED, Phase.DIALLING),
        (Phase.DIALLING, Phase.IDLE),
        (Phase.DIALLING, Phase.SENDING),
        (Phase.SENDING, Phase.ENDED),
    }
)


class Class2Modem:
    """One emulated Class 2/2.0 modem behind a virtual port."""

    def __init__(self, *, name: str = "class2", t31: T31Modem | None = None, forced: bool = False) -> None:
        self.name = name
        self.forced = forced
        self._t31 = t31 or T31Modem(name=f"{name}-t31")
        self._own_t31 = t31 is None
        self.to_dte: deque[bytes] = deque()
        self.events: deque[ModemControl] = deque()
        self.cts = True
        #: a command line that leaves Class 2 for the T.31 modem to execute (set by at_rx)
        self.handoff: str | None = None
        self._dir = tempfile.mkdtemp(prefix="faxbridge-class2-")
        self._calls = 0
        self._line = bytearray()
        self._reset()
        self.term: AudioFaxTerminal | None = None
        self._old_terms: list[AudioFaxTerminal] = []

    # -- state ---------------------------------------------------------------------------------
    def _reset(self) -> None:
        if getattr(self, "tx_store", None) is not None:
            self._drop_store()
        self.echo = True
        self.verbose = True
        self.quiet = False
        self.fclass = "2.0"
        self.local_id = ""
        self.caps = [1, 5, 0, 2, 0, 0, 0, 0]  # vr br wd ln df ec bf st
        self.bit_order = 0
        self.vcid = False
        self.ringing = False
        self.call_info: dict[str, str] = {}
        self.phase = Phase.IDLE
        self.pages_ready: deque[tuple[int, str, int]] = deque()  # (index in file, frame, rows)
        self.pages_sent = 0
        self.fdr_waiting = False
        self.hangup_code: str | None = None
        self.encoding = T4_1D
        self.rx_file = ""
        # sending: the pages the DTE handed over, stored for spandsp's T.30
        self.tx_file = ""
        self.tx_store: T4Receiver | None = None
        self.tx_data: bytearray | None = None  # page data being received (None: command mode)
        self.tx_dle = False
        self.tx_await_fet = False  # <DLE><ETX> came: the post-page message follows as +FET=n
        self.tx_final_pending = False  # the last page's answer waits for T.30's outcome
        self.tx_reversed: bool | None = None
        self.tx_pages = 0  # pages stored for sending
        #: every page sent was confirmed: the terminal still sends DCN, nothing may stop it
        self.tx_confirmed = False
        #: an answer to the DTE held back for the time the page would take on the line
        self.tx_held: tuple[float, list[str]] | None = None

    @property
    def names(self) -> dict[str, str]:
        return _NAMES[self.fclass]

    @property
    def state(self) -> ffi.CData:
        """The T.31 state the line is built with (unused once :attr:`fax_state` is set)."""
        return self._t31.state

    @property
    def fax_state(self) -> ffi.CData | None:
        """The fax terminal the line must carry instead of the T.31 modem, during a call."""
        return self.term._fax if self.term is not None and self.term.alive else None

    def take_output(self) -> bytes:
        self._service()
        out = b"".join(self.to_dte)
        self.to_dte.clear()
        return out

    def next_event(self) -> ModemControl | None:
        return self.events.popleft() if self.events else None

    def set_call_info(self, name: str, value: str | None) -> bool:
        if value is None:
            self.call_info.pop(name, None)
        else:
            self.call_info[name] = value
        return True

    def reset_call_info(self) -> None:
        self.call_info.clear()

    def close(self) -> None:
        self._drop_store()
        for term in [*self._old_terms, *([self.term] if self.term else [])]:
            term.close()
        self._old_terms.clear()
        self.term = None
        if self._own_t31:
            self._t31.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def power_on(self) -> None:
        """Back to the power-on state (the DTE went away): any call is hung up."""
        self.call_event(CallEvent.HANGUP)
        self._hangup()
        self._line.clear()
        self.handoff = None
        self._reset()
        self.to_dte.clear()
        self.events.clear()

    # -- output helpers ------------------------------------------------------------------------
    def _info(self, text: str) -> None:
        self.to_dte.append(b"\r\n" + text.encode("ascii", "replace") + b"\r\n")

    def _result(self, code: str) -> None:
        if self.quiet:
            return
        if self.verbose:
            self._info(code)
        else:
            self.to_dte.append(_NUMERIC.get(code, "4").encode() + b"\r")

    # -- the line ------------------------------------------------------------------------------
    def call_event(self, event: CallEvent | int) -> None:
        event = CallEvent(event)
        if self.phase is Phase.DIALLING:
            self._dial_event(event)
            return
        if self.phase is Phase.SENDING and event is CallEvent.HANGUP:
            self._line_lost()
            return
        if event is CallEvent.ALERTING:
            self.ringing = True
            if self.phase is Phase.WAITING:  # ATA came first (efax -r does that): answer now
                self._move(Phase.IDLE)
                self._answer()
                return
            if self.vcid:
                for key in ("DATE", "TIME", "NMBR", "NAME", "NDID"):
                    if key in self.call_info:
                        self._info(f"{key}={self.call_info[key]}")
            self._info("RING")
        elif event is CallEvent.HANGUP:
            self.ringing = False
            if self.term is not None and self.term.alive and not self.tx_confirmed:
                self.term.terminate()  # spandsp closes the file and reports phase E
            self._service()
            if self.phase in (Phase.ANSWERING, Phase.CONNECTED):
                self._end_call(self.hangup_code or ("73" if self.pages_sent or self.pages_ready else "70"))
                self._service()

    # -- the DTE -------------------------------------------------------------------------------
    def at_rx(self, data: bytes) -> None:
        """Bytes from the DTE; stops at a line that leaves Class 2 (see :attr:`handoff`)."""
        for b in data:
            if self.tx_data is not None:
                self._page_byte(b)
                continue
            if b == CAN[0] and (self.tx_final_pending or self.tx_held is not None):
                self._fail_call("02")  # the DTE aborts while the pages go out: DCN, +FHS:02
                continue
            if b == 0x0D:
                raw = bytes(self._line)
                self._line.clear()
                text = raw.decode("ascii", "replace").strip()
                if not text.upper().startswith("AT"):
                    continue
                if self.echo:
                    self.to_dte.append(raw + b"\r")
                if not self.forced and _LEAVES_CLASS2.match(text):
                    self.handoff = text
                    return
                self._command(text)
            elif b == 0x0A or (b < 0x20 and b != 0x09):
                continue  # LF, DC2, CAN and other controls between commands
            elif len(self._line) < 256:
                self._line.append(b)
                start = self._line.upper().find(b"AT")
                if start > 0:
                    del self._line[:start]

    def _command(self, text: str) -> None:
        body = text[2:]
        i = 0
        while i < len(body):
            if body[i] in " ;":
                i += 1
                continue
            if body[i] in "dD":  # the rest of the line is the dial string
                if self._dial(body[i + 1 :]) is False:
                    self._result("ERROR")
                return  # answered when the line says what happened
            if body[i] == "+":
                end = body.find(";", i)
                end = len(body) if end < 0 else end
                ok = self._extended(body[i:end].strip())
                i = end
            else:
                m = re.match(r"(&?[A-Za-z])(\d*)", body[i:])
                if not m:
                    ok = False
                else:
                    ok = self._basic(m.group(1).upper(), m.group(2))
                    i += m.end()
            if ok is None:
                return  # the command answers later (ATA, +FDR)
            if not ok:
                self._result("ERROR")
                return
        self._result("OK")

    def _basic(self, cmd: str, arg: str) -> bool | None:
        n = int(arg) if arg else 0
        if cmd == "E":
            self.echo = n == 1
        elif cmd == "V":
            self.verbose = n == 1
        elif cmd == "Q":
            self.quiet = n == 1
        elif cmd in ("Z", "&F"):
            self._hangup()
            self._reset()
        elif cmd == "I":
            self._info(VERSION)
        elif cmd == "H":
            self._hangup()
        elif cmd == "A":
            return self._answer()
        elif cmd == "D":  # reached only as "ATD" with nothing after it
            return False
        return True  # S registers, &C, &D, &K, X, M, L: accepted, no effect

    def _extended(self, cmd: str) -> bool | None:
        upper = cmd.upper()
        m = re.match(r"^\+([A-Z]+)(=\?|\?|=(.*))?$", upper)
        if not m:
            return False
        name, op, value = m.group(1), m.group(2) or "", (cmd[len(m.group(1)) + 2 :] if m.group(3) is not None else "")
        sets = op.startswith("=") and op != "=?"
        if name == "FCLASS":
            if op == "=?":
                self._info("2,2.0" if self.forced else "0,1,1.0,2,2.0")
            elif op == "?":
                self._info(self.fclass)
            elif value.strip() in ("2", "2.0"):
                self.fclass = value.strip()
            else:
                return False
            return True
        if name == "FDR" and not op:
            return self._fdr()
        if name == "FDT" and not op.startswith("?"):
            return self._fdt()
        if name == "FET" and sets and self.phase in (Phase.SENDING, Phase.ENDED):
            return self._fet(value)
        if name in ("FLI", "FLID"):
            if op == "?":
                self._info(f'"{self.local_id}"')
            elif sets:
                self.local_id = value.strip().strip('"')[:20]
            return True
        if name in ("FCC", "FDCC", "FDIS", "FIS", "FCS"):
            if op == "=?":
                self._info("(0,1),(0-5),(0-4),(0-2),(0,1,3),(0-1),(0),(0)")
            elif op == "?":
                self._info(",".join(map(str, self.caps)))
            elif sets:
                try:
                    for k, item in enumerate(value.split(",")[:8]):
                        if item.strip():
                            self.caps[k] = int(item, 16 if self.fclass == "2.0" else 10)
                except ValueError:
                    return False
            return True
        if name in ("FBO", "FBOR"):
            if op == "?":
                self._info(str(self.bit_order))
            elif sets:
                if value.strip() not in ("0", "1", "2", "3"):
                    return False
                self.bit_order = int(value)
            return True
        if name in ("FMI", "FMFR"):
            self._info("spandsp")
            return True
        if name in ("FMM", "FMDL"):
            self._info("Faxbridge virtual Class 2.0")
            return True
        if name in ("FMR", "FREV"):
            self._info("0.0.6")
            return True
        if name == "VCID":
            self.vcid = value.strip() == "1"
            return True
        if name == "FIP" and not op.startswith("?"):
            self.local_id, self.caps, self.bit_order = "", [1, 5, 0, 2, 0, 0, 0, 0], 0
            return True
        if name in (
            "FCR",
            "FAA",
            "FNR",
            "FIE",
            "FCQ",
            "FPS",
            "FPTS",
            "FLO",
            "FPP",
            "FCT",
            "FHS",
            "FET",
            "FKS",
            "FK",
            "FRY",
            "FMS",
            "FBU",
            "FAP",
            "FNS",
            "FPI",
            "FSP",
            "FCIG",
            "FTBC",
            "FPHCTO",
            "FAR",
            "FCRC",
            "FECM",
            "FMINSP",
            "FRBC",
            "FWDFC",
            "FLPL",
            "FPHCTO",
        ):
            if name in ("FKS", "FK"):
                self._hangup()
            return True
        return False

    # -- a call --------------------------------------------------------------------------------
    def _move(self, to: Phase) -> None:
        if (self.phase, to) not in PHASE_MOVES:
            raise LocalProtocolError(f"class 2 emulator: {self.phase.value} -> {to.value}")
        self.phase = to

    def _answer(self) -> bool | None:
        if self.phase in (Phase.ANSWERING, Phase.CONNECTED, Phase.WAITING):
            return False
        if not self.ringing:  # off hook before the call: answer it when it rings (no timeout)
            self._move(Phase.WAITING)
            return None
        if self.term is not None:  # the last call's terminal: the line no longer carries it
            self._old_terms.append(self.term)
            self.term = None
        self._calls += 1
        self.rx_file = os.path.join(self._dir, f"rx-{self._calls}.tif")
        self.pages_ready.clear()
        self.pages_sent = 0
        self.hangup_code = None
        self.fdr_waiting = False
        term = AudioFaxTerminal(calling=False, ident=self.local_id, ecm=self.caps[5] != 0, rx_file=self.rx_file)
        df = self.caps[4]
        lib.t30_set_supported_compressions(
            term._t30,
            lib.T30_SUPPORT_T4_1D_COMPRESSION
            | (lib.T30_SUPPORT_T4_2D_COMPRESSION if df >= 1 else 0)
            | (lib.T30_SUPPORT_T6_COMPRESSION if df >= 3 and self.caps[5] else 0),
        )
        self.term = term
        self._move(Phase.ANSWERING)
        self.ringing = False
        self.events.append(ModemControl(Control.ANSWER))
        return None

    def _hangup(self) -> None:
        if self.phase is Phase.WAITING:
            self._move(Phase.IDLE)
        if self.phase is Phase.DIALLING:
            self.events.append(ModemControl(Control.HANGUP))
            self._move(Phase.IDLE)
        if self.phase is Phase.SENDING:
            self.tx_final_pending = False
            self.tx_data = None
        if self.phase in (Phase.ANSWERING, Phase.CONNECTED, Phase.SENDING):
            # a sender whose last page was confirmed is still sending DCN: the line carries it
            # while it lingers; anything else stops now
            if self.term is not None and self.term.alive and not self.tx_confirmed:
                self.term.terminate()
            self.events.append(ModemControl(Control.HANGUP))
            self._move(Phase.ENDED)
            self.hangup_code = self.hangup_code or "02"
        self.fdr_waiting = False

    def _fdr(self) -> bool | None:
        if self.phase not in (Phase.CONNECTED, Phase.ENDED) or self.fdr_waiting:
            return False
        self.fdr_waiting = True
        self._deliver()
        return None

    def _deliver(self) -> None:
        """Answer a waiting +FDR with the next page, or with the hang-up once no page is left."""
        if not self.fdr_waiting:
            return
        if self.pages_ready:
            index, frame, rows = self.pages_ready.popleft()
            self.fdr_waiting = False
            try:
                with T4Transmitter(self.rx_file, index, index) as tx:
                    data = tx.encode_page(self.encoding)
            except (OSError, T4Error):
                self._info(f"{self.names['FHS']}:90")
                self._result("ERROR")
                return
            if self.bit_order in (1, 3):
                data = reverse_bits(data)
            self.pages_sent += 1
            self._result("CONNECT")
            self.to_dte.append(dle_stuff(data) + b"\x10\x03")
            fet = 2 if "EOP" in frame else 1 if "EOM" in frame else 0
            self._info(
                f"{self.names['FPS']}:1,{rows:X},0,0,0"
                if self.fclass == "2.0"
                else f"{self.names['FPS']}:1,{rows},0,0,0"
            )
            self._info(f"{self.names['FET']}:{fet}")
            self._result("OK")
        elif self.phase is Phase.ENDED:
            self.fdr_waiting = False
            code = self.hangup_code or "00"
            shown = code if self.fclass == "2.0" else str(int(code, 16) - 60 if code[0] == "A" else int(code))
            self._info(f"{self.names['FHS']}:{shown}")
            self._result("OK" if code == "00" else "ERROR")

    def _end_call(self, code: str) -> None:
        if self.phase is Phase.ENDED:
            return
        answering = self.phase is Phase.ANSWERING
        self._move(Phase.ENDED)
        self.hangup_code = self.hangup_code or code
        self.events.append(ModemControl(Control.HANGUP))  # a Class 2 modem goes on hook by itself
        if answering:  # ATA is still waiting: the call failed before any page
            self._info(f"{self.names['FHS']}:{self.hangup_code}")
            self._result("ERROR")

    def _service(self) -> None:
        """Turn the fax terminal's T.30 events into Class 2 reports."""
        term = self.term
        if term is None:
            return
        while (ev := term.next_event()) is not None:
            if term.calling:
                self._service_tx(ev)
                continue
            if isinstance(ev, PhaseB) and self.phase is Phase.ANSWERING:
                st = term.stats()
                dcs = next((line for line in reversed(term.trace) if line.startswith("< DCS ")), "")
                try:
                    df = dcs_coding(bytes.fromhex(dcs[6:])) if dcs else 0
                except ValueError:
                    df = 0
                self.encoding = _DF_TO_ENCODING[df]
                vr = {98: 0, 196: 1, 391: 2}.get(st.y_dpi, 1)
                br = max(0, st.bit_rate // 2400 - 1)
                self._move(Phase.CONNECTED)
                self._info(self.names["FCO"])
                if st.remote_ident:
                    self._info(f'{self.names["FTI"]}:"{st.remote_ident}"')
                self._info(f"{self.names['FCS']}:{vr},{br},0,2,{df},{1 if st.ecm else 0},0,0")
                self._result("OK")
            elif isinstance(ev, PageDone):
                self.pages_ready.append((ev.stats.pages_rx - 1, ev.frame, ev.stats.length))
                self._deliver()
            elif isinstance(ev, PhaseE):
                code = "00" if ev.ok else ("73" if ev.stats.pages_rx else "70")
                self._end_call(code)
                self._deliver()

    # -- sending -------------------------------------------------------------------------------
    def _dial(self, dial: str) -> bool | None:
        """ATD: ring the far end; the result comes from the line (:meth:`_dial_event`)."""
        number = "".join(c for c in dial if c.isdigit() or c in "*#+")[:40]
        if self.phase not in (Phase.IDLE, Phase.ENDED) or self.ringing or not number:
            return False
        if self.term is not None:
            self._old_terms.append(self.term)
            self.term = None
        self._drop_store()
        self._calls += 1
        self.tx_file = os.path.join(self._dir, f"tx-{self._calls}.tif")
        self.pages_sent = 0
        self.tx_pages = 0
        self.tx_confirmed = False
        self.hangup_code = None
        self.tx_reversed = {0: False, 1: True, 2: False, 3: True}.get(self.bit_order)
        self._move(Phase.DIALLING)
        self.events.append(ModemControl(Control.CALL, number))
        return None

    def _dial_event(self, event: CallEvent) -> None:
        if event is CallEvent.CONNECTED:
            self._move(Phase.SENDING)
            self._info(self.names["FCO"])
            self._result("OK")
            return
        words = {
            CallEvent.BUSY: "BUSY",
            CallEvent.NO_ANSWER: "NO ANSWER",
            CallEvent.NO_DIALTONE: "NO DIALTONE",
            CallEvent.HANGUP: "NO CARRIER",
        }.get(event)
        if words is None:  # ALERTING (our own ringback) and the like: nothing to say
            return
        self._move(Phase.IDLE)
        self.events.append(ModemControl(Control.HANGUP))
        self._result(words)

    def _fdt(self) -> bool | None:
        """+FDT: ready for a page (CONNECT), or the call's end as +FHS and ERROR."""
        if self.phase is Phase.ENDED:
            self._info(f"{self.names['FHS']}:{self.hangup_code or '02'}")
            return False
        if self.phase is not Phase.SENDING or self.tx_final_pending or self.tx_await_fet or self.tx_held:
            return False
        # store and forward: no DCS yet, so the rate is T.30's guaranteed minimum (2400 bit/s,
        # br 0); the real session follows the last page.  efax 0.9a times its wait for the
        # last page's answer from this rate, and the stored pages go out only then
        vr, _, wd, ln, df, ec = self.caps[:6]
        self._info(f"{self.names['FCS']}:{vr},0,{wd},{ln},{df},{ec},0,0")
        self._result("CONNECT")
        if self.fclass == "2":
            self.to_dte.append(XON)
        self.tx_data = bytearray()
        self.tx_dle = False
        return None

    def _page_byte(self, b: int) -> None:
        assert self.tx_data is not None
        if self.tx_dle:
            self.tx_dle = False
            if b == DLE:
                self.tx_data.append(DLE)
            elif b == 0x1A:  # <DLE><SUB>: two DLEs (T.32 8.3.3)
                self.tx_data += bytes((DLE, DLE))
            elif b == ETX:
                self._page_end(None)
            elif b in _DLE_PPM:
                self._page_end(_DLE_PPM[b])
            return  # any other <DLE><x> is a command this modem ignores
        if b == DLE:
            self.tx_dle = True
        elif len(self.tx_data) < MAX_TX_PAGE_BYTES:
            self.tx_data.append(b)

    def _page_end(self, ppm: str | None) -> None:
        assert self.tx_data is not None
        data, self.tx_data = bytes(self.tx_data), None
        if len(data) >= MAX_TX_PAGE_BYTES or not self._store_page(data):
            self._fail_call("43" if len(data) >= MAX_TX_PAGE_BYTES else "41", waiting=True)
            return
        if ppm is None:
            self.tx_await_fet = True
            self._hold(["OK"])
        else:
            self._post_page(ppm)

    def _fet(self, value: str) -> bool | None:
        """Class 2's post-page message after <DLE><ETX>: +FET=0 (MPS), 1 (EOM), 2 (EOP)."""
        if not self.tx_await_fet:
            return False
        try:
            ppm = _FET_PPM[int(value.strip())]
        except (ValueError, KeyError):
            return False
        self.tx_await_fet = False
        self._post_page(ppm)
        return None

    def _post_page(self, ppm: str) -> None:
        if ppm != "EOP":  # stored: the page is accepted, T.30 sends it with the rest
            self._hold([f"{self.names['FPS']}:1", "OK"])
            return
        store, self.tx_store = self.tx_store, None
        if store is not None:
            store.close()
        term = AudioFaxTerminal(calling=True, ident=self.local_id, ecm=self.caps[5] != 0, tx_file=self.tx_file)
        self.term = term
        self.tx_final_pending = True

    def _hold(self, lines: list[str]) -> None:
        """Answer a stored page's end 1.2 s later: efax 0.9a divides by the whole seconds a page
        took and dies of SIGFPE when the answer comes within the same second."""
        self.tx_held = (HOLD_PAGE_ANSWER, lines)

    def advance(self, seconds: float) -> None:
        """Line time passed (the virtual line calls this every tick of a call)."""
        if self.tx_held is None:
            return
        left, lines = self.tx_held
        left -= seconds
        if left > 0:
            self.tx_held = (left, lines)
            return
        self.tx_held = None
        if self.phase is not Phase.SENDING:
            return
        for line in lines:
            if line in ("OK", "ERROR"):
                self._result(line)
            else:
                self._info(line)

    def _store_page(self, data: bytes) -> bool:
        """Decode one page from the DTE into the TIFF T.30 will send; False if nothing decodes."""
        df = self.caps[4]
        encoding = _DF_TO_ENCODING.get(df, T4_1D)
        if self.tx_reversed is None and encoding != T6:
            self.tx_reversed = bool(looks_reversed(data[:8192]))
        if self.tx_reversed:
            data = reverse_bits(data)
        try:
            if self.tx_store is None:
                self.tx_store = T4Receiver(self.tx_file, far_ident=self.local_id)
            self.tx_store.start_page(encoding, y_res=Y_RES_FINE if self.caps[0] else Y_RES_STANDARD)
            self.tx_store.put(data)
            stats = self.tx_store.end_page()
        except (OSError, T4Error):
            return False
        self.tx_pages += 1
        return stats.length > 0

    def _service_tx(self, ev: object) -> None:
        """The calling terminal's T.30 events: pages confirmed, then the last page's answer."""
        if isinstance(ev, PageDone):
            self.pages_sent = ev.stats.pages_tx
            # spandsp reports phase E only once the call is torn down: the last page's MCF is
            # the moment a real modem answers the DTE (which then sends +FKS or ATH)
            if self.tx_final_pending and ev.frame in ("MCF", "RTP", "PIP") and self.pages_sent >= self.tx_pages:
                self.tx_final_pending = False
                self.tx_confirmed = True
                self.hangup_code = "00"
                st = ev.stats
                vr = {98: 0, 196: 1, 391: 2}.get(st.y_dpi, 1)
                _, _, wd, ln, df, _ = self.caps[:6]
                br = max(0, st.bit_rate // 2400 - 1)
                self._info(f"{self.names['FCS']}:{vr},{br},{wd},{ln},{df},{1 if st.ecm else 0},0,0")
                if st.remote_ident:
                    self._info(f'{self.names["FCI"]}:"{st.remote_ident}"')
                self._info(f"{self.names['FPS']}:1")
                self._result("OK")
        elif isinstance(ev, PhaseE) and self.phase is Phase.SENDING:
            self.pages_sent = ev.stats.pages_tx
            if ev.ok or self.hangup_code == "00":
                self.hangup_code = "00"
                if self.tx_final_pending:
                    self.tx_final_pending = False
                    self._info(f"{self.names['FPS']}:1")
                    self._result("OK")
                self._move(Phase.ENDED)
                self.events.append(ModemControl(Control.HANGUP))
            else:
                self._fail_call(_T30_TO_FHS.get(ev.code, "50" if ev.stats.pages_tx else "20"))

    def _fail_call(self, code: str, waiting: bool = False) -> None:
        """The send failed: the DTE's waiting command gets +FHS and ERROR; the modem hangs up."""
        self.hangup_code = self.hangup_code or code
        if self.term is not None and self.term.alive:
            self.term.terminate()
        waiting = waiting or self.tx_final_pending or self.tx_data is not None or self.tx_held is not None
        self.tx_held = None
        self.tx_final_pending, self.tx_data, self.tx_await_fet = False, None, False
        self._drop_store()
        if self.phase is Phase.SENDING:
            self._move(Phase.ENDED)
            self.events.append(ModemControl(Control.HANGUP))
        self._info(f"{self.names['FHS']}:{self.hangup_code}")
        if waiting:
            self._result("ERROR")

    def _line_lost(self) -> None:
        """The far end hung up (or the line dropped) while sending."""
        if self.term is not None and self.term.alive:
            self.term.terminate()  # spandsp reports phase E: _service_tx answers the DTE
            self._service()
        if self.phase is Phase.SENDING:
            self._fail_call("50" if self.pages_sent else "20")

    def _drop_store(self) -> None:
        store, self.tx_store = self.tx_store, None
        if store is not None:
            store.close()
