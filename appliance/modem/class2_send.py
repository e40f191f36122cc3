"""Sending a fax through a Class 2 (SP-2388) or Class 2.0 (T.32) modem: the modem does T.30.

Theory of operation.  After the line's init (``AT+FCLASS=2``/``2.0``) the sender sets our ident
(``+FLI``/``+FLID``), the page format and ECM (``+FIS``/``+FDIS``: resolution from the TIFF,
width A4, MH coding), the bit order (``+FBO=0``/``+FBOR=0``: the first bit on the line is the
byte's LSB, what spandsp's T.4 coder writes) and dials.  ``ATD`` ends in OK once the far end's
fax answered (``+FCO``); BUSY, NO ANSWER, NO CARRIER and NO DIALTONE are the modem's words for
the rest.  Each page is ``AT+FDT`` -> (``+FCS:`` the negotiated session) CONNECT, the page coded
by spandsp and DLE-stuffed, then the page end: Class 2.0 says the post-page message in one
``<DLE><,>`` (MPS) or ``<DLE><.>`` (EOP); Class 2 sends ``<DLE><ETX>``, waits for OK and says
``AT+FET=0``/``=2``.  The modem answers with the far end's verdict (``+FPS:``/``+FPTS:``: 1 MCF,
2 RTN, 3 RTP...) and OK, or ``+FHS:``/``+FHNG:`` and ERROR when the call failed.  After the
last page ``AT+FKS``/``AT+FK`` ends the session (the modem sends DCN) and ``ATH`` puts the line
on hook.  An RTN page is sent again once (T.30 allows the retry; more would hold the line for
a page the far end keeps refusing).

Cancel: between commands ``AT+FKS`` (an orderly DCN); inside a page the data stops, the phase
is closed with ``<DLE><ETX>`` and ``AT+FKS`` follows; while the modem sends a page (its answer
pending) ``<CAN>`` aborts it, then ``AT+FKS``.  The modem's hang-up code says how it
ended (``hangup_code``); ``appliance.outbound.modem_send`` words it.

Nothing here raises for what the modem or the far end does (the SendDriver contract): a timeout,
a lost device or an unexpected answer ends the call with what was confirmed so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import NoReturn

from appliance.modem.at import DataResult, DeviceGone, Unsolicited
from appliance.modem.class1 import dial_string
from appliance.modem.class2_codes import ALL_RESULTS, CAN, SPELLINGS, hangup_key, parse_dcs
from appliance.modem.dle import DLE, ETX, dle_stuff
from appliance.modem.driver import ModemSendJob, ModemSendResult
from appliance.modem.serial_port import ModemError, ModemPort
from appliance.spandsp.t4 import T4_1D, Y_RES_FINE, T4Error, T4Transmitter

log = logging.getLogger("faxbridge.modem.class2")

#: page data is written in chunks this big; the serial flow control paces the rest
CHUNK = 4096
#: +FDT covers DCS, training and CFR (efax allows 45 s); a store-and-forward modem answers at once
FDT_TIMEOUT = 60.0
#: a page's answer: its data at the slowest rate (2400 bit/s) plus the post-page exchange
PAGE_ANSWER_MIN = 60.0
COMMAND_TIMEOUT = 5.0
#: <DLE><,> another page follows (MPS), <DLE><.> the last one (EOP)
_PPM_20 = {False: bytes((DLE, ord(","))), True: bytes((DLE, ord(".")))}


class SendFailed(Exception):
    """The call cannot go on; the result already says why."""


class Class2Transmitter:
    """The SendDriver for Class 2 and Class 2.0 modems."""

    def __init__(self, variant: str = "2.0") -> None:
        if variant not in SPELLINGS:
            raise ValueError(f"Class 2 variant must be '2' or '2.0', not {variant!r}")
        self.variant = variant
        self.sp = SPELLINGS[variant]

    async def send(self, port: ModemPort, job: ModemSendJob) -> ModemSendResult:
        r = ModemSendResult(modem_class=self.variant, ecm=job.ecm)
        t0 = time.monotonic()
        deadline = t0 + job.max_call_duration
        off_hook = False
        try:
            with T4Transmitter(job.tiff_path) as tx:
                r.pages_total = tx.pages_in_file
                fine = tx.y_resolution >= Y_RES_FINE - 100
            await self._setup(port, job, fine)
            off_hook = True
            await self._dial(port, job, r)
            for page in range(r.pages_total):
                await self._page(port, job, r, page, page == r.pages_total - 1, deadline)
            r.complete = r.pages_sent == r.pages_total
            await self._finish(port, r)
        except SendFailed:
            pass
        except (OSError, T4Error) as e:  # our own document: nothing was dialled for it
            r.reason = f"cannot read the document: {e}"
            off_hook = False
        except ModemError as e:
            r.device_lost = not port.is_open or "device gone" in e.result or "port closed" in e.result
            r.reason = r.reason or f"modem error: {e}"
        except Exception as e:  # a bug of ours must still hang up and report
            log.exception("class %s send failed", self.variant)
            r.reason = f"internal error in the class {self.variant} driver: {e!r}"
        if off_hook and port.is_open:
            port.channel.end_data_phase(asyncio.get_running_loop().time())
            with contextlib.suppress(ModemError):
                await port.command("ATH0", COMMAND_TIMEOUT, expect=ALL_RESULTS)
        if not r.complete:
            r.modem_history = port.history()
        r.reason = r.reason or ("all pages confirmed" if r.complete else "the call ended")
        log.info(
            "class %s send: %s, %d of %d page(s) confirmed, %.0f s",
            self.variant,
            r.reason,
            r.pages_sent,
            r.pages_total,
            time.monotonic() - t0,
        )
        return r

    # -- the steps ----------------------------------------------------------------------------
    async def _setup(self, port: ModemPort, job: ModemSendJob, fine: bool) -> None:
        sp = self.sp
        ident = "".join(c for c in job.ident if c.isdigit() or c in " +")[:20]
        await port.command(f'AT{sp.local_id}="{ident}"', COMMAND_TIMEOUT)
        fis = "+FIS" if self.variant == "2.0" else "+FDIS"
        # vr, br (14400: the modem falls back), wd A4 width, ln unlimited, df MH, ec, bf, st
        await port.command(f"AT{fis}={1 if fine else 0},5,0,2,0,{1 if job.ecm else 0},0,0", COMMAND_TIMEOUT)
        with contextlib.suppress(ModemError):  # +FBO=0 is every modem's default anyway
            await port.command(f"AT{sp.bit_order}=0", COMMAND_TIMEOUT)

    async def _dial(self, port: ModemPort, job: ModemSendJob, r: ModemSendResult) -> None:
        if self._cancelled(job, r):
            r.reason = "cancelled before dialling"
            raise SendFailed
        try:
            done = await port.command(dial_string(job.dial_command, job.dial), job.answer_timeout, expect=ALL_RESULTS)
        except ModemError as e:
            r.dial_result = "timeout" if "timeout" in e.result else e.result
            r.reason = f"dialling: {e.result}"
            raise SendFailed from None
        self._read_lines(done.lines, r)
        r.dial_result = done.result
        if done.result != "OK":
            r.reason = f"dialling: {done.result}"
            raise SendFailed
        r.fax_answered = True
        job.on_connected()

    async def _page(
        self, port: ModemPort, job: ModemSendJob, r: ModemSendResult, page: int, last: bool, deadline: float
    ) -> None:
        tries = 0
        while True:
            tries += 1
            if self._cancelled(job, r):
                await self._abort(port, r, "cancelled")
            data = self._encode(job, page)
            done = await port.command("AT+FDT", FDT_TIMEOUT, expect=ALL_RESULTS)
            self._read_lines(done.lines, r)
            if done.result != "CONNECT":
                self._failed(r, f"+FDT for page {page + 1}: {done.result}")
            verdict = await self._send_page(port, job, r, data, last, deadline)
            if verdict in (1, 3, 5):  # MCF, RTP, PIP: confirmed
                r.pages_sent = page + 1
                job.on_page(r.pages_sent)
                return
            if tries >= 2:
                self._failed(r, f"the far end refused page {page + 1} twice (+FPS:{verdict})")

    async def _send_page(
        self, port: ModemPort, job: ModemSendJob, r: ModemSendResult, data: bytes, last: bool, deadline: float
    ) -> int:
        """The page's data and end; the far end's verdict (1 MCF, 2 RTN, ...)."""
        for at in range(0, len(data), CHUNK):
            if self._cancelled(job, r):
                await port.write_data(bytes((DLE, ETX)))
                await self._data_result(port, r, COMMAND_TIMEOUT * 2, may_fail=True)
                r.cancelled = True
                await self._abort(port, r, "cancelled during a page")
            await port.write_data(data[at : at + CHUNK])
        answer = max(PAGE_ANSWER_MIN, len(data) * 8 / 2400 * 2 + 30)
        answer = min(answer * (r.pages_total if last else 1), max(5.0, deadline - time.monotonic()))
        if self.variant == "2.0":
            await port.write_data(_PPM_20[last])
            lines = await self._data_result(port, r, answer, job.cancel)
        else:
            await port.write_data(bytes((DLE, ETX)))
            await self._data_result(port, r, answer, job.cancel)
            done = await port.command(f"AT+FET={2 if last else 0}", answer, expect=ALL_RESULTS)
            self._read_lines(done.lines, r)
            if done.result != "OK":
                self._failed(r, f"+FET: {done.result}")
            lines = list(done.lines)
        return self._verdict(lines)

    async def _data_result(
        self,
        port: ModemPort,
        r: ModemSendResult,
        timeout: float,
        cancel: asyncio.Event | None = None,
        may_fail: bool = False,
    ) -> list[str]:
        """Wait for the page data phase's final result; its lines (+FPS:, +FHS:).

        Cancel while waiting sends <CAN> (the modem aborts the session: +FHS:02 and ERROR), then
        waits a short while for that answer and ends the call with +FKS."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        lines: list[str] = []
        while True:
            if cancel is not None and cancel.is_set() and not r.cancelled:
                r.cancelled = True
                await port.write_data(CAN)
                end = min(end, loop.time() + COMMAND_TIMEOUT * 2)
                may_fail = True
            try:
                wait = max(0.0, end - loop.time())
                ev = await asyncio.wait_for(port.events.get(), min(wait, 0.25) if cancel is not None else wait)
            except TimeoutError:
                if loop.time() < end:
                    continue
                port.channel.end_data_phase(loop.time())
                if r.cancelled:
                    await self._abort(port, r, "cancelled while the modem sent a page")
                if may_fail:
                    return lines
                self._failed(r, f"no answer from the modem {timeout:.0f} s after the page")
            if isinstance(ev, DeviceGone):
                r.device_lost = True
                self._failed(r, f"modem gone ({ev.reason})")
            if isinstance(ev, Unsolicited):
                lines.append(ev.line)
                self._read_lines([ev.line], r)
            elif isinstance(ev, DataResult):
                lines += ev.lines
                self._read_lines(ev.lines, r)
                if r.cancelled:
                    await self._abort(port, r, "cancelled while the modem sent a page")
                if ev.result == "OK" or may_fail:
                    return lines
                self._failed(r, f"page end: {ev.result}")

    async def _finish(self, port: ModemPort, r: ModemSendResult) -> None:
        """End the session in order (DCN) once every page was confirmed."""
        if r.hangup_code:
            return
        kill = "AT+FKS" if self.variant == "2.0" else "AT+FK"
        with contextlib.suppress(ModemError):
            done = await port.command(kill, COMMAND_TIMEOUT * 3, expect=ALL_RESULTS)
            self._read_lines(done.lines, r)
        if not r.hangup_code and r.complete:
            r.hangup_code = "00"

    async def _abort(self, port: ModemPort, r: ModemSendResult, why: str) -> NoReturn:
        r.cancelled = True
        r.reason = why
        kill = "AT+FKS" if self.variant == "2.0" else "AT+FK"
        with contextlib.suppress(ModemError):
            done = await port.command(kill, COMMAND_TIMEOUT * 3, expect=ALL_RESULTS)
            self._read_lines(done.lines, r)
        raise SendFailed

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _cancelled(job: ModemSendJob, r: ModemSendResult) -> bool:
        return job.cancel is not None and job.cancel.is_set()

    @staticmethod
    def _encode(job: ModemSendJob, page: int) -> bytes:
        with T4Transmitter(job.tiff_path, page, page) as tx:
            return dle_stuff(tx.encode_page(T4_1D))

    def _failed(self, r: ModemSendResult, why: str) -> NoReturn:
        r.reason = why + (f" (+FHS:{r.hangup_code})" if r.hangup_code else "")
        raise SendFailed

    def _read_lines(self, lines: list[str], r: ModemSendResult) -> None:
        """The reports in a command's lines: session, far-end ident, hang-up code."""
        sp = self.sp
        for raw in lines:
            line = raw.strip()
            head, _, value = line.partition(":")
            head = head.upper()
            try:
                if head in (sp.hangup, "+FHS", "+FHNG"):
                    r.hangup_code = hangup_key(value, self.variant == "2.0")
                elif head in (sp.dcs, "+FCS", "+FDCS"):
                    params = parse_dcs(value, self.variant == "2.0")
                    r.bit_rate, r.ecm = params.bit_rate, bool(params.ec)
                elif head in ("+FCI", "+FCSI"):
                    r.remote_ident = "".join(c for c in value.strip().strip('"') if 0x20 <= ord(c) < 0x7F)[:20].strip()
            except ValueError as e:
                r.trace.append(f"! {line[:80]}: {e}")
            r.trace.append(line[:120])

    def _verdict(self, lines: list[str]) -> int:
        for line in lines:
            head, _, value = line.strip().partition(":")
            if head.upper() in ("+FPS", "+FPTS"):
                first = value.split(",")[0].strip()
                if first.isdigit():
                    return int(first)
        return 1  # a modem that checks quality itself says OK and nothing else: confirmed
