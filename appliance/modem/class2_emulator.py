"""A Class 2.0 (and Class 2) fax modem emulated in software: spandsp does the modem's T.30.

The virtual line's ports are Class 1 modems (spandsp T.31) by default; a DTE that sends
``AT+FCLASS=2.0`` (or ``=2``) gets this interpreter instead, and ``AT+FCLASS=0/1/1.0``, ``ATZ``
or ``AT&F`` hand the port back to T.31 (see ``VirtualPort.feed``).  ``LineOptions(class2="B")``
makes a port Class 2 only.

It speaks the *receive* subset: ``+FCLASS``, ``+FLI``/``+FLID``, ``+FCR``, ``+FCC``/``+FDCC``,
``+FBO``/``+FBOR``, ``+FAA``, ``+FNR``, ``+FIE``, ``+FCQ``, ``+FPS``/``+FPTS``, ``+FMI?`` and
friends, ``ATA``, ``AT+FDR``, ``ATH``, ``ATZ``, ``ATE``/``ATV``/``ATQ``, ``ATI``.  ``ATD`` is
ERROR: this modem never sends.  ``ATA`` with no call ringing waits for the next ring and
answers it (efax ``-r`` answers at once, expecting a getty to have seen RING).

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

from appliance.modem.dle import dle_stuff
from appliance.sip.errors import LocalProtocolError
from appliance.spandsp._spandsp import ffi, lib
from appliance.spandsp.audio import AudioFaxTerminal
from appliance.spandsp.t4 import T4_1D, T4_2D, T6, T4Error, T4Transmitter, reverse_bits
from appliance.spandsp.t30 import PageDone, PhaseB, PhaseE
from appliance.spandsp.t31 import CallEvent, Control, ModemControl, T31Modem

VERSION = "Faxbridge virtual Class 2.0 modem (spandsp 0.0.6)"

#: report/command names per class: Class 2 (SP-2388) and Class 2.0 (T.32)
_NAMES = {
    "2": {"FCO": "+FCON", "FTI": "+FTSI", "FCS": "+FDCS", "FPS": "+FPTS", "FHS": "+FHNG", "FET": "+FET"},
    "2.0": {"FCO": "+FCO", "FTI": "+FTI", "FCS": "+FCS", "FPS": "+FPS", "FHS": "+FHS", "FET": "+FET"},
}
_DF_TO_ENCODING = {0: T4_1D, 1: T4_2D, 3: T6}
_NUMERIC = {"OK": "0", "CONNECT": "1", "RING": "2", "NO CARRIER": "3", "ERROR": "4"}
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
            if self.term is not None and self.term.alive:
                self.term.terminate()  # spandsp closes the file and reports phase E
            self._service()
            if self.phase in (Phase.ANSWERING, Phase.CONNECTED):
                self._end_call(self.hangup_code or ("73" if self.pages_sent or self.pages_ready else "70"))
                self._service()

    # -- the DTE -------------------------------------------------------------------------------
    def at_rx(self, data: bytes) -> None:
        """Bytes from the DTE; stops at a line that leaves Class 2 (see :attr:`handoff`)."""
        for b in data:
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
        elif cmd == "D":
            return False  # receive only
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
        if name in ("FLI", "FLID"):
            if op == "?":
                self._info(f'"{self.local_id}"')
            elif sets:
                self.local_id = value.strip().strip('"')[:20]
            return True
        if name in ("FCC", "FDCC", "FDIS", "FIS"):
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
        if self.phase in (Phase.ANSWERING, Phase.CONNECTED):
            if self.term is not None and self.term.alive:
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
