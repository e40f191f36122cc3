"""Class 1 / 1.0: spandsp's T.30 (the same engine as the SIP path) over a modem that only modulates.

The T.30 engine (:class:`FrontEndTerminal`) asks for modem types and frames; this driver turns each
request into the Class 1 command that does it (T.31 section 8):

================================  =========================================================
T.30 asks                         the modem is told
================================  =========================================================
transmit CED (answering)          ``ATA`` (the modem plays CED, then V.21 HDLC: CONNECT)
transmit CNG (calling)            ``ATD<number>`` (the modem plays CNG; CONNECT = V.21 rx)
transmit V.21 HDLC                ``AT+FTH=3``, each frame DLE-stuffed ending <DLE><ETX>;
                                  CONNECT after a non-final frame, OK after the final one
transmit image data (non-ECM)     ``AT+FTM=<mod>``, TCF or page data, <DLE><ETX>, OK
transmit ECM frames               ``AT+FTH=<mod>``
receive V.21 HDLC                 ``AT+FRH=3``: frame + FCS, <DLE><ETX>, OK (FCS good) or ERROR
receive image data / ECM frames   ``AT+FRM=<mod>`` / ``AT+FRH=<mod>``
pause                             a local wait (the modem is silent when not transmitting)
================================  =========================================================

Carrier and training reports that spandsp's own modems would give T.30 come from the modem's
answers: CONNECT is "trained, carrier up", <DLE><ETX> plus NO CARRIER is "carrier down", and
the final frame of a V.21 burst is followed by "carrier down" (T.30 queues its phase changes
until then).  TCF is judged by T.30 itself from the bytes ``+FRM`` delivers (the longest run of
zeros; too short and it answers FTT).  ``+FCERROR`` on ``+FRM`` means the modem heard V.21
instead of the image carrier (the sender repeated its DCS): the frame is fetched with
``AT+FRH=3`` and handed to T.30 like any other, as HylaFAX does.

A receive command waits for carrier indefinitely, so when T.30's timers decide to transmit
(a repeated command, DCN) the waiting command is aborted by sending a byte, as T.31 allows.

Timing (T.30 wants a response to a command within 3 s, and the image carrier follows CFR after
75 ms) is met by issuing each receive command as soon as the previous step ends; the modem
buffers frames and trains on its own, so Python's latency on a Raspberry Pi (a few ms per step)
is far inside the limits.  T.30's timers advance on the event loop's clock every 20 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any, Callable

from ..config import FaxConfig
from ..fax.session import ReceiveSession
from ..spandsp.frontend import FrontEndTerminal, Modem, SendHdlc, SetRx, SetTx, Signal
from .at import CommandDone, DataReceived, DataResult, DeviceGone, Unsolicited
from .dle import DLE, ETX, dle_stuff
from .driver import ModemCall, ModemCallResult
from .hdlc import HdlcEncoder
from .serial_port import ModemError, ModemPort

log = logging.getLogger("faxbridge.modem")

TICK = 0.02
#: bytes of image data written per chunk (the serial flow control paces the rest)
CHUNK = 512
ABORT = b"\x18"  # any character aborts +FRH/+FRM (T.31 8.3.4); CAN is what nobody sends by accident
_RX_RESULTS = ("CONNECT", "OK", "NO CARRIER", "ERROR", "+FCERROR")

#: T.31 table 4: Class 1 modulation codes; V.17 has (long training, short training)
_CODES: dict[tuple[Modem, int], tuple[int, int]] = {
    (Modem.V21, 300): (3, 3),
    (Modem.V27TER, 2400): (24, 24), (Modem.V27TER, 4800): (48, 48),
    (Modem.V29, 7200): (72, 72), (Modem.V29, 9600): (96, 96),
    (Modem.V17, 7200): (73, 74), (Modem.V17, 9600): (97, 98),
    (Modem.V17, 12000): (121, 122), (Modem.V17, 14400): (145, 146),
}


def modulation_code(modem: Modem, bit_rate: int, short_train: bool = False) -> int:
    """The +FTM/+FRM/+FTH/+FRH code for a T.30 modem type and rate."""
    try:
        long_code, short_code = _CODES[(modem, bit_rate)]
    except KeyError:
        raise ValueError(f"no Class 1 modulation for {modem.name} at {bit_rate} bit/s") from None
    return short_code if short_train else long_code


class CallGone(Exception):
    """The modem went away or the line dropped in a way that ends the call at once."""


class Class1Call:
    """One fax call driven through a Class 1 modem, in either direction.

    ``connect`` is the command that starts the call: ``ATA`` (answering: afterwards the modem
    transmits V.21) or ``ATD<number>`` (calling: afterwards it receives V.21).
    """

    def __init__(self, port: ModemPort, term: FrontEndTerminal, connect: str, *,
                 max_duration: float = 900.0, connect_timeout: float = 60.0,
                 quirks: frozenset[str] = frozenset()) -> None:
        self.port = port
        #: from the quirks table: "no_frs" (wait locally, +FRS resets the modem: USR),
        #: "needs_ftm_delay" (let the modem train 400 ms after +FTM's CONNECT: Lucent)
        self.quirks = quirks
        self.term = term
        self.connect = connect
        self.max_duration = max_duration
        self.connect_timeout = connect_timeout
        self.rx = SetRx(Modem.NONE, 0, False, False)
        self.hdlc_tx_open = False
        self.tx_hdlc: tuple[Modem, int, bool] = (Modem.V21, 300, False)
        self._ecm_tx: HdlcEncoder | None = None  # set while an ECM burst (+FTM, our framing) is open
        self.end_reason = ""
        self.stats = {"frames_rx": 0, "frames_bad": 0, "frames_tx": 0, "aborts": 0, "fcerror": 0,
                      "data_rx": 0, "data_tx": 0}
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._v21_instead = False
        self._first_rx_connected = False  # ATD's CONNECT stands for the first +FRH=3's
        self._last_dir = "tx"

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> str:
        """Run the call to its end; returns why it ended (never raises for the modem's doings)."""
        ticker = asyncio.create_task(self._tick())
        try:
            await self._start()
            while True:
                if self.term.finished is not None:
                    self.end_reason = self.end_reason or "fax session ended"
                    break
                if self._loop.time() - self._started > self.max_duration:
                    self.end_reason = "call exceeded the maximum duration"
                    break
                request = self._next_request()
                if request is not None:
                    await self._transmit(request)
                elif self.rx.modem in (Modem.V21, Modem.V27TER, Modem.V29, Modem.V17):
                    await self._receive()
                else:
                    self._wakeup.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), 0.5)
        except CallGone as e:
            self.end_reason = str(e)
        except ModemError as e:
            self.end_reason = f"modem error: {e}"
            log.warning("class 1 call: %s\n%s", e, self.port.history())
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        return self.end_reason

    async def _start(self) -> None:
        done = await self.port.command(self.connect, timeout=self.connect_timeout,
                                       expect=_RX_RESULTS + ("BUSY", "NO ANSWER", "NO DIALTONE"))
        if done.result != "CONNECT":
            what = "dialling" if self.connect.upper().startswith("ATD") else "answering"
            raise CallGone(f"{what}: {done.result}")
        if not self.connect.upper().startswith("ATD"):
            self.hdlc_tx_open = True  # the modem went on from CED to V.21 transmission
        else:
            self._first_rx_connected = True

    def _next_request(self) -> SetTx | SendHdlc | None:
        """Apply receive-mode changes in order; return the first transmit request, if any."""
        while self.term.requests:
            req = self.term.requests.popleft()
            if isinstance(req, SetRx):
                if req.modem in (Modem.NONE, Modem.DONE, Modem.PAUSE, Modem.CED, Modem.CNG):
                    self.rx = SetRx(Modem.NONE, 0, False, False)
                else:
                    self.rx = req
                continue
            return req
        return None

    def _has_transmit_request(self) -> bool:
        return any(not isinstance(r, SetRx) for r in self.term.requests)

    async def _tick(self) -> None:
        last = self._loop.time()
        carry = 0.0
        while True:
            await asyncio.sleep(TICK)
            now = self._loop.time()
            carry += (now - last) * 8000
            last = now
            samples = int(carry)
            carry -= samples
            self.term.advance(samples)
            if self.term.requests or self.term.finished is not None:
                self._wakeup.set()

    # -- transmitting -----------------------------------------------------------------------
    async def _transmit(self, req: SetTx | SendHdlc) -> None:
        if isinstance(req, SendHdlc):
            await self._send_hdlc(req.frame)
            return
        if req.modem in (Modem.CED, Modem.CNG):
            self.term.send_step_complete()  # the modem played it as part of ATA / ATD
        elif req.modem == Modem.PAUSE:
            await self._close_hdlc()
            await asyncio.sleep(max(0, int(req.short_train)) / 1000.0)
            self.term.send_step_complete()
        elif req.modem in (Modem.NONE, Modem.DONE):
            await self._close_hdlc()
        elif req.hdlc:
            # opened when the first frame comes: T.30 sometimes names the modem and then has
            # nothing to send, and a carrier with no frames confuses the far end
            if self.hdlc_tx_open and (req.modem, req.bit_rate) != self.tx_hdlc[:2]:
                await self._close_hdlc()
            self.tx_hdlc = (req.modem, req.bit_rate, bool(req.short_train))
        else:
            await self._close_hdlc()
            code = modulation_code(req.modem, req.bit_rate, bool(req.short_train))
            await self._gap()
            await self._command_connect(f"AT+FTM={code}")
            await self._send_image_data()
            self.term.send_step_complete()
        self._last_dir = "tx"

    async def _gap(self) -> None:
        """T.30 5.3.2.2: 75 +-20 ms of silence between signals.  After receiving, wait until
        the line has been silent that long (+FRS); after transmitting, send that much (+FTS).
        Without it the far modem hears our next carrier as the tail of the last one (seen:
        the receiver's V.21 held DCS's OK through the whole TCF that followed it)."""
        if self._last_dir == "rx" and "no_frs" in self.quirks:
            await asyncio.sleep(0.075)
            return
        cmd = "AT+FRS=7" if self._last_dir == "rx" else "AT+FTS=7"
        try:
            await self.port.command(cmd, timeout=3.0, expect=("OK", "ERROR", "NO CARRIER"))
        except ModemError as e:
            if "device gone" in e.result or "port closed" in e.result:
                raise CallGone(f"modem gone ({e.result})") from None
            log.info("class 1: %s", e)

    async def _command_connect(self, cmd: str) -> None:
        done = await self.port.command(cmd, timeout=10.0, expect=_RX_RESULTS)
        if done.result != "CONNECT":
            raise ModemError(cmd, done.result, done.lines)
        if cmd.startswith("AT+FTM") and "needs_ftm_delay" in self.quirks:
            await asyncio.sleep(0.4)

    async def _send_hdlc(self, frame: bytes | None) -> None:
        if frame is None:
            await self._close_hdlc()
            self.term.send_step_complete()
            return
        if not self.hdlc_tx_open and self._ecm_tx is None:
            # T.30 queues its phase change until the far carrier drops, but hands over the first
            # frame at once: the modem type for this frame may still be waiting behind it
            for later in self.term.requests:
                if isinstance(later, SendHdlc):
                    break
                if isinstance(later, SetTx) and later.hdlc:
                    self.tx_hdlc = (later.modem, later.bit_rate, bool(later.short_train))
                    break
        if self.tx_hdlc[0] != Modem.V21:
            await self._send_ecm_frame(frame)
            return
        if not self.hdlc_tx_open:
            await self._gap()
            await self._command_connect("AT+FTH=3")
            self.hdlc_tx_open = True
            self._last_dir = "tx"
        await self.port.write_data(dle_stuff(frame) + bytes([DLE, ETX]))
        self.stats["frames_tx"] += 1
        result = await self._data_result(timeout=10.0)
        if result != "CONNECT":
            self.hdlc_tx_open = False  # OK after a final frame: the carrier is off
            if result != "OK":
                log.warning("class 1: frame %s answered %s", frame[:3].hex(), result)
        self.term.send_step_complete()

    async def _send_ecm_frame(self, frame: bytes) -> None:
        """An ECM frame at the image rate: framed here, sent as +FTM data (see hdlc.py)."""
        if self._ecm_tx is None:
            await self._gap()
            await self._command_connect(f"AT+FTM={modulation_code(*self.tx_hdlc)}")
            self._last_dir = "tx"
            self._ecm_tx = HdlcEncoder()
            self._ecm_tx.flags(max(1, self.tx_hdlc[1] // (8 * 5)))  # 200 ms of flags, as spandsp sends
        self._ecm_tx.frame(frame)
        data = self._ecm_tx.take()
        self.stats["frames_tx"] += 1
        self.stats["data_tx"] += len(data)
        await self.port.write_data(dle_stuff(data))
        self.term.send_step_complete()  # queued for the modem; flow control paces the rest

    async def _close_hdlc(self) -> None:
        """End a V.21 transmission left open after a non-final frame, or an ECM burst."""
        if self._ecm_tx is not None:
            encoder, self._ecm_tx = self._ecm_tx, None
            encoder.flags(3)
            await self.port.write_data(dle_stuff(encoder.take(flush=True)) + bytes([DLE, ETX]))
            await self._data_result(timeout=60.0)
        if self.hdlc_tx_open:
            self.hdlc_tx_open = False
            await self.port.write_data(bytes([DLE, ETX]))
            await self._data_result(timeout=10.0)

    async def _send_image_data(self) -> None:
        while True:
            chunk = self.term.data_to_send(CHUNK)
            self.stats["data_tx"] += len(chunk)
            last = len(chunk) < CHUNK
            await self.port.write_data(dle_stuff(chunk) + (bytes([DLE, ETX]) if last else b""))
            if last:
                break
        await self._data_result(timeout=30.0)

    async def _data_result(self, timeout: float) -> str:
        """The modem's answer that closes (or with CONNECT continues) a data phase."""
        deadline = self._loop.time() + timeout
        while True:
            ev = await self._event(deadline - self._loop.time())
            if ev is None:
                self.port.channel.end_data_phase(self._loop.time())
                return "TIMEOUT"
            if isinstance(ev, DataResult):
                return ev.result

    async def _event(self, timeout: float) -> Any:
        """The next event from the modem, or None after ``timeout``; raises CallGone if it vanished."""
        try:
            ev = await asyncio.wait_for(self.port.events.get(), max(0.0, timeout))
        except asyncio.TimeoutError:
            return None
        if isinstance(ev, DeviceGone):
            raise CallGone(f"modem gone ({ev.reason})")
        if isinstance(ev, Unsolicited) and ev.line.upper().startswith(("+FHNG", "+FHS")):
            raise CallGone(f"modem hung up ({ev.line})")
        return ev

    # -- receiving --------------------------------------------------------------------------
    async def _receive(self) -> None:
        self._last_dir = "rx"
        rx = self.rx
        if self._v21_instead:
            rx = SetRx(Modem.V21, 300, False, True)
            self._v21_instead = False
        code = modulation_code(rx.modem, rx.bit_rate, rx.short_train)
        first = True
        while True:
            if self._first_rx_connected:
                self._first_rx_connected = False
                result = "CONNECT"
            else:
                ecm = rx.hdlc and rx.modem != Modem.V21
                result = await self._receive_command(f"AT+FR{'H' if rx.hdlc and not ecm else 'M'}={code}")
            if result is None:
                return  # aborted: T.30 wants to transmit
            if result == "+FCERROR":
                self.stats["fcerror"] += 1
                if not rx.hdlc or rx.modem != Modem.V21:
                    if not first:
                        self.term.hdlc_status(Signal.CARRIER_DOWN)
                    self._v21_instead = True  # the sender is repeating a V.21 command
                return
            if result != "CONNECT":
                if not first:  # the carrier of this burst is gone
                    (self.term.hdlc_status if rx.hdlc else self.term.data_status)(Signal.CARRIER_DOWN)
                    return
                await asyncio.sleep(0.05)  # nothing heard; T.30's timers decide what comes next
                return
            if not rx.hdlc:
                await self._receive_data()
                return
            if rx.modem != Modem.V21:
                await self._receive_ecm()
                return
            if first:
                if rx.modem != Modem.V21:
                    self.term.hdlc_status(Signal.TRAINING_SUCCEEDED)
                self.term.hdlc_status(Signal.CARRIER_UP)
            first = False
            final = await self._receive_frame()
            if final and rx.modem == Modem.V21:
                self.term.hdlc_status(Signal.CARRIER_DOWN)
                return
            if self._has_transmit_request():
                self.term.hdlc_status(Signal.CARRIER_DOWN)
                return

    async def _receive_command(self, cmd: str) -> str | None:
        """Run a receive command; abort it if T.30 wants to transmit meanwhile (returns None)."""
        task = asyncio.ensure_future(self.port.command(cmd, timeout=60.0, expect=_RX_RESULTS))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved even when abandoned
        while not task.done():
            if self._has_transmit_request() or self.term.finished is not None:
                self.stats["aborts"] += 1
                with contextlib.suppress(ModemError):
                    await self.port.write_data(ABORT)
                try:
                    done = await asyncio.wait_for(asyncio.shield(task), 5.0)
                except (asyncio.TimeoutError, ModemError):
                    return None
                if done.result == "CONNECT":  # the carrier came just as we aborted: drain it
                    await self._data_result(timeout=5.0)
                return None
            self._wakeup.clear()
            waiter = asyncio.ensure_future(self._wakeup.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        try:
            done: CommandDone = task.result()
        except ModemError as e:
            if "device gone" in e.result or "port closed" in e.result:
                raise CallGone(f"modem gone ({e.result})") from None
            log.info("class 1: %s", e)
            return "TIMEOUT"
        return done.result

    async def _receive_frame(self) -> bool:
        """One HDLC frame of an open +FRH; True when it was a good final frame."""
        frame = bytearray()
        while True:
            ev = await self._event(10.0)
            if ev is None:
                self.port.channel.end_data_phase(self._loop.time())
                return False
            if isinstance(ev, DataReceived):
                frame += ev.data
            elif isinstance(ev, DataResult):
                ok = ev.result == "OK"
                break
        if len(frame) < 3 + 2:  # address, control, FCF and the two FCS bytes
            return False
        body = bytes(frame[:-2])
        self.stats["frames_rx"] += 1
        if not ok:
            self.stats["frames_bad"] += 1
        self.term.hdlc_received(body, ok)
        return ok and bool(body[1] & 0x10)

    async def _receive_ecm(self) -> None:
        """One ECM burst received as +FRM data and deframed by spandsp's HDLC receiver."""
        self.term.ecm_rx_start()
        self.term.hdlc_status(Signal.TRAINING_SUCCEEDED)
        self.term.hdlc_status(Signal.CARRIER_UP)
        await self._pump_data(self.term.ecm_rx_data)
        self.term.hdlc_status(Signal.CARRIER_DOWN)

    async def _receive_data(self) -> None:
        """TCF or a non-ECM page: the bytes go to T.30 as they come."""
        self.term.data_status(Signal.TRAINING_SUCCEEDED)
        await self._pump_data(self.term.data_received)
        self.term.data_status(Signal.CARRIER_DOWN)

    async def _pump_data(self, sink: Callable[[bytes], None]) -> None:
        """Received data into ``sink`` until the modem closes the data phase (or goes quiet)."""
        while True:
            ev = await self._event(30.0)
            if ev is None:
                self.port.channel.end_data_phase(self._loop.time())
                return
            if isinstance(ev, DataReceived):
                self.stats["data_rx"] += len(ev.data)
                sink(ev.data)
            elif isinstance(ev, DataResult):
                return

    async def hang_up(self) -> None:
        """Back on hook, whatever state the modem was left in."""
        if not self.port.is_open:
            return
        with contextlib.suppress(ModemError):
            if self.port.channel.busy:
                await self.port.write_data(ABORT)
                await asyncio.sleep(0.2)
                self.port.channel.end_data_phase(self._loop.time())
            await self.port.command("ATH0", timeout=5.0, expect=("OK", "ERROR", "NO CARRIER"))


def _fax_config(call: ModemCall) -> FaxConfig:
    cfg = FaxConfig()
    cfg.max_call_duration = int(call.max_call_duration)
    return cfg


class Class1Receiver:
    """Answer and receive one fax with spandsp's T.30 over a Class 1 modem (the ReceiveDriver)."""

    async def receive(self, port: ModemPort, call: ModemCall) -> ModemCallResult:
        loop = asyncio.get_running_loop()
        term = FrontEndTerminal(calling=False, ident=call.ident, ecm=call.ecm, rx_file=os.fspath(call.tiff_path))
        session = ReceiveSession(term, loop.time(), _fax_config(call))
        driver = Class1Call(port, term, call.answer, max_duration=call.max_call_duration, quirks=call.quirks)
        t0 = time.monotonic()
        try:
            reason = await driver.run()
        except Exception:  # a bug of ours must not lose the pages received so far
            log.exception("class 1 receive on %s failed", call.device)
            reason = "internal error in the class 1 driver"
        term.close()  # completes the TIFF; reports phase E if the call was cut short
        session.poll(loop.time())
        await driver.hang_up()
        facts = session.facts(loop.time())
        complete = session.complete
        extra = facts.setdefault("extra", {})
        extra.update({"end_reason": reason, "modem_class": "1", "class1": dict(driver.stats),
                      "call_seconds": round(time.monotonic() - t0, 1)})
        if not complete:
            extra["modem_history"] = port.history()
            log.info("class 1 receive on %s ended: %s\n%s", call.device, reason, port.history())
        return ModemCallResult(complete=complete, facts=facts)


class Class1Sender:
    """Dial and send a TIFF with spandsp's T.30 over a Class 1 modem (tests, and a test-fax tool)."""

    def __init__(self, number: str, tiff: str | os.PathLike[str], *, ident: str = "", ecm: bool = True,
                 max_duration: float = 900.0) -> None:
        self.number, self.tiff, self.ident, self.ecm, self.max_duration = number, tiff, ident, ecm, max_duration

    async def send(self, port: ModemPort) -> tuple[bool, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        term = FrontEndTerminal(calling=True, ident=self.ident, ecm=self.ecm, tx_file=os.fspath(self.tiff))
        dial = "ATDT" + "".join(c for c in self.number if c.isdigit() or c in "*#,")
        driver = Class1Call(port, term, dial, max_duration=self.max_duration)
        reason = await driver.run()
        term.close()
        await driver.hang_up()
        stats = term.stats()
        ok = term.finished is not None and term.finished.ok
        return ok, {"reason": reason, "result": term.finished.text if term.finished else "",
                    "pages": stats.pages_tx, "ecm": stats.ecm, "bit_rate": stats.bit_rate,
                    "trace": list(term.trace), "class1": dict(driver.stats), "started": loop.time()}
