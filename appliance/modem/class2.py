"""Receiving a fax through a Class 2 (SP-2388) or Class 2.0 (T.32) modem.

Theory of operation.  A Class 2 modem does T.30 itself: after ``ATA`` it reports the call
(``+FCO``, the sender's ``+FTI:``, the session parameters ``+FCS:``) and ends with OK; each
``AT+FDR`` then answers CONNECT, streams one page of DLE-stuffed T.4 data ended by <DLE><ETX>,
reports the page (``+FPS:``) and what the sender said after it (``+FET:`` 0 more pages, 1 new
document, 2 end), and ends with OK.  The ``AT+FDR`` after the last page collects the hang-up
(``+FHS:00``).  Class 2 spells the same reports ``+FCON``/``+FTSI:``/``+FDCS:``/``+FPTS:``/
``+FHNG:``; :class:`Spelling` holds both.

:class:`Class2Session` is the protocol, sans-I/O: it says which command comes next
(:meth:`~Class2Session.next_command`), is told what the modem answered (``command_done``,
``command_failed``, ``data``, ``data_end``, ``data_result``, ``unsolicited``, ``device_gone``) and
decodes the page data with spandsp's T.4 coder into the TIFF, page by page, so whatever was
received before a hang-up, a timeout or a vanished USB modem stays in the file.
:class:`Class2Receiver` is the thin asyncio driver over a :class:`ModemPort` (the contract in
``driver.py``).

Copy quality: the modem asks the DTE what to answer to each page (MCF or RTN): the session
judges the page from spandsp's bad-row count and sends ``AT+FPS=1``/``=2`` (Class 2:
``+FPTS=``) before the next ``AT+FDR``; a modem that refuses the command (or checks quality
itself, ``+FCQ``) keeps its own verdict.

Bit order: we ask for ``+FBO=0`` (direct: the first bit on the line is the byte's LSB, what
spandsp's T.4 decoder expects).  Modems that deliver MSB first anyway (Rockwell, flagged
``class2_bit_order_reversed`` in quirks.py) get every byte reversed; without the flag the first
2 KB of the first MH/MR page are held back and their EOL codes show which order the data is in
(T.6 has no EOLs: there +FBO=0 is trusted).

Bad input never raises out of the driver: a malformed report is noted in the trace and ignored,
a timeout or a lost device ends the call with the pages kept and ``complete`` false.
"""

from __future__ import annotations

import asyncio
import re
import time

from appliance.calls.facts import CallFacts, PageFacts
from appliance.modem.at import DataEnd, DataReceived, DataResult, DeviceGone, DleCommand, Event, Garbage, Unsolicited
from appliance.modem.class2_codes import (
    ALL_RESULTS,
    CAN,
    DC2,
    SNIFF_BYTES,
    SPELLINGS,
    Command,
    PageRecord,
    SessionParams,
    State,
    copy_quality,
    hangup_key,
    hangup_text,
    looks_reversed,
    parse_dcs,
)
from appliance.modem.driver import ModemCall, ModemCallResult
from appliance.modem.fparams import parse_fparams
from appliance.modem.serial_port import ModemError, ModemPort
from appliance.spandsp.t4 import T6, T4Error, T4Receiver, reverse_bits


class Class2Session:
    """One answered call on a Class 2/2.0 modem: commands out, modem output in, pages into a TIFF."""

    def __init__(self, call: ModemCall, variant: str = "2.0", now: float = 0.0) -> None:
        if variant not in SPELLINGS:
            raise ValueError(f"Class 2 variant must be '2' or '2.0', not {variant!r}")
        self.call = call
        self.variant = variant
        self.sp = SPELLINGS[variant]
        self.started = now
        self.state = State.SETUP
        self.reverse = "class2_bit_order_reversed" in call.quirks
        #: the first page's data is held until its bit order is clear (not with a quirk or T.6)
        self._sniff: bytearray | None = None if self.reverse else bytearray()
        self.params: SessionParams | None = None
        self.remote_ident = ""
        self.pages: list[PageRecord] = []
        self.trace: list[str] = []
        self.hangup: str | None = None  # T.32 key once the modem reported it
        self.hangup_reason = ""  # our own reason to end (timeout, device gone, ...)
        self.failed = False  # ended by something other than the modem's hang-up report
        self.eop_seen = False
        self.device_lost = False
        self.off_hook = False  # ATA went out and no hang-up was seen since
        self._queue: list[Command] = []
        self._rx: T4Receiver | None = None
        self._page_status: list[int | str] = []
        self._page_post: int | None = None

    # -- what to send --------------------------------------------------------------------------
    def start(self) -> None:
        """Open the TIFF (before answering: an unwritable spool must not cost the caller a call)."""
        try:
            self._rx = T4Receiver(self.call.tiff_path, T6, far_ident="")
        except OSError as e:
            self._finish(f"cannot write the received fax: {e}")
            return
        sp = self.sp
        ident = self.call.ident.replace('"', "'")[:20]
        self._queue = [
            Command(f'AT{sp.local_id}="{ident}"', 3.0, optional=True),
            Command("AT+FCR=1", 3.0),
            Command(f"AT{sp.bit_order}=0", 3.0, optional=True),
            Command(f"AT{sp.caps}?", 3.0, optional=True),  # answered with the ec field set (below)
        ]
        if self.variant == "2.0":
            self._queue += [Command("AT+FNR=1,1,1,0", 3.0, optional=True), Command("AT+FIE=0", 3.0, optional=True)]
        self._queue.append(Command(self.call.answer, 60.0, kind="answer"))

    def next_command(self) -> Command | None:
        return self._queue.pop(0) if self._queue and self.state is not State.DONE else None

    @property
    def done(self) -> bool:
        return self.state is State.DONE

    @property
    def in_data(self) -> bool:
        return self.state is State.IN_PAGE

    # -- what came back ------------------------------------------------------------------------
    def command_done(self, cmd: Command, result: str, lines: list[str]) -> None:
        self.trace.append(f"> {cmd.text}")
        self.trace += [f"< {line}" for line in lines]
        self.trace.append(f"< {result}")
        if cmd.kind == "answer":
            self.off_hook = True
        for line in lines:
            self._report(line)
        if self.state is State.DONE:
            return
        if cmd.kind == "setup":
            if result != "OK" and not cmd.optional:
                self._finish(f"{cmd.text} failed: {result}")
            elif result == "OK" and cmd.text.endswith("?"):
                self._set_ecm(cmd, lines)
            return
        if cmd.kind == "quality":
            return  # ERROR: the modem keeps its own verdict
        if cmd.kind == "answer":
            self.state = State.ANSWERING
            if result == "OK" and self.hangup is None:
                self.state = State.BETWEEN_PAGES
                self._queue.append(Command("AT+FDR", 60.0, kind="fdr"))
            else:
                self._ended_by_modem(result)
            return
        if cmd.kind == "fdr":
            if result == "CONNECT":
                self._start_page()
            elif self.hangup is not None or result != "OK":
                self._ended_by_modem(result)
            else:  # OK without a page or a hang-up: ask again (some modems report +FCS first)
                self._queue.append(Command("AT+FDR", 60.0, kind="fdr"))

    def unwanted_data_phase(self, result: str) -> bool:
        """True for a CONNECT that starts no page (an answer to a setup or quality command): the
        channel has opened a data phase for it, and the next command would wait for that phase's
        end for ever, so the driver abandons it (found by fuzzing: a stalled line)."""
        if result != "CONNECT" or self.in_data:
            return False
        self.trace.append("! CONNECT to a command that starts no page: data phase abandoned")
        return True

    def command_failed(self, cmd: Command, why: str) -> None:
        self.trace.append(f"> {cmd.text}")
        self.trace.append(f"! {why}")
        if cmd.optional or cmd.kind == "quality":
            return
        self.failed = True
        self._finish(f"{cmd.text}: {why}")

    def data(self, chunk: bytes) -> None:
        if self.state is not State.IN_PAGE or self._rx is None:
            self.trace.append(f"! {len(chunk)} data bytes outside a page ignored")
            return
        if self._sniff is not None:
            self._sniff += chunk
            if len(self._sniff) < SNIFF_BYTES:
                return
            self._decide_bit_order()
            return
        self._put(chunk)

    def _put(self, chunk: bytes) -> None:
        assert self._rx is not None
        try:
            self._rx.put(reverse_bits(chunk) if self.reverse else chunk)
        except T4Error as e:
            self.trace.append(f"! page data: {e}")

    def _decide_bit_order(self) -> None:
        """Modems differ in what +FBO=0 gives; EOL codes show which order the data is in."""
        held, self._sniff = bytes(self._sniff or b""), None
        if self.params is None or self.params.encoding != T6:
            verdict = looks_reversed(held)
            if verdict:
                self.reverse = True
                self.trace.append("! page data is MSB first despite +FBO=0: reversing every byte")
        self._put(held)

    def data_end(self) -> None:
        """<DLE><ETX>: the page data is complete."""
        if self.state is State.IN_PAGE:
            self._end_page(partial=False)
            self.state = State.AFTER_PAGE

    def dle_command(self, code: int) -> None:
        self.trace.append(f"< <DLE>{code:#04x} ignored")

    def data_result(self, result: str, lines: list[str]) -> None:
        """The final result after a page: +FPS:/+FET: (or a hang-up) in ``lines``."""
        self.trace += [f"< {line}" for line in lines]
        self.trace.append(f"< {result}")
        if self.state is State.IN_PAGE:  # the modem ended the phase without <DLE><ETX>
            self._end_page(partial=True)
            self.state = State.AFTER_PAGE
        for line in lines:
            self._report(line)
        if self.state is State.DONE:
            return
        page = self.pages[-1] if self.pages else None
        if page is not None:
            page.post_page = self._page_post
            page.modem_status = self._page_status
            if page.partial and result == "OK" and self._page_post is not None and self.hangup is None:
                page.partial = False  # no RTC seen, but the modem says the page ended normally
                self.trace.append(f"! page {len(self.pages)} had no RTC; the modem reported it complete")
        if result != "OK" or self.hangup is not None:
            self._ended_by_modem(result)
            return
        if self._page_post is None:
            self.trace.append("! no post-page report (+FET) after the page: asking for the next one")
        if self._page_post == 2:
            self.eop_seen = True
        self.state = State.BETWEEN_PAGES
        if page is not None:
            self._queue.append(Command(f"AT{self.sp.page}={page.quality}", 3.0, kind="quality"))
        self._queue.append(Command("AT+FDR", 60.0, kind="fdr"))

    def unsolicited(self, line: str) -> None:
        if line.upper() == "RING" or ("=" in line and not line.startswith("+")):
            return  # rings and caller ID of the call being answered
        self.trace.append(f"< {line} (unsolicited)")
        self._report(line)
        if (
            self.hangup is not None
            and self.state is not State.DONE
            and self.state is not State.IN_PAGE
            and not self._queue
        ):
            self._ended_by_modem("")

    def garbage(self, data: bytes, reason: str) -> None:
        self.trace.append(f"! garbage from the modem ({reason}): {data[:32].hex(' ')}")  # the fax page shows it

    def data_timeout(self, seconds: float) -> None:
        """No page data for ``seconds``: keep what arrived and give up on the call."""
        if self.state is State.IN_PAGE:
            self._end_page(partial=True)
        self.failed = True
        self._finish(f"no page data from the modem for {seconds:g} s")

    def device_gone(self, reason: str) -> None:
        if self.state is State.IN_PAGE:
            self._end_page(partial=True)
        self.device_lost = True
        self.failed = True
        self.off_hook = False
        self._finish(f"modem gone: {reason}")

    def stuck(self) -> None:
        self.failed = True
        self._finish(f"driver has nothing to ask the modem in state {self.state.value!r}")

    def call_timeout(self) -> None:
        if self.state is State.IN_PAGE:
            self._end_page(partial=True)
        self.failed = True
        self._finish("call exceeded the maximum duration")

    # -- results -------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return (
            self.eop_seen
            and self.hangup == "00"
            and bool(self.pages)
            and not any(p.partial for p in self.pages)
            and not self.failed
        )

    def close(self) -> None:
        """Close the TIFF (a page still open is kept as it is)."""
        if self._rx is not None:
            if self._rx.in_page:
                self._end_page(partial=True)
            self._rx.close()
            self._rx = None

    def facts(self, now: float) -> CallFacts:
        p = self.params
        if self.hangup is not None:
            code = int(self.hangup, 16)
            text = f"{self.sp.hangup}:{self.hangup} {hangup_text(self.hangup)}"
        else:
            code, text = -1, "call ended before the modem reported a hang-up"
        if self.hangup == "00" and not self.eop_seen:
            text += " (but the sender never sent end-of-procedure)"
        if self.hangup_reason and not self.complete:
            text = f"{self.hangup_reason} ({text})"
        last = self.pages[-1].stats if self.pages else None
        return CallFacts(
            remote_ident=self.remote_ident,
            bit_rate=p.bit_rate if p else 0,
            ecm=bool(p.ec) if p else False,
            resolution=last.resolution if last else (p.resolution[2] if p else ""),
            bad_rows=sum(pg.stats.bad_rows for pg in self.pages),
            duration=round(now - self.started, 1),
            result_code=code,
            result_text=text,
            pages=len(self.pages),
            page_stats=[PageFacts.of(pg.as_dict()) for pg in self.pages],
            remote_vendor="",
            remote_model="",
            hangup_reason=self.hangup_reason,
            trace=self.trace[-400:],
            modem_class=self.variant,
            extra={"bit_order_reversed": self.reverse},
        )

    # -- inside --------------------------------------------------------------------------------
    def _report(self, line: str) -> None:
        m = re.match(r"^\s*(\+F[A-Z]+)\s*(?::\s*(.*))?$", line, re.IGNORECASE)
        if not m:
            if line.strip():
                shown = "".join(c if c.isprintable() else "?" for c in line.strip())
                self.trace.append(f'! unexpected line from the modem: "{shown}"')
            return
        name, value = m.group(1).upper(), (m.group(2) or "").strip()
        sp = self.sp
        try:
            if name == sp.connect:
                pass
            elif name == sp.tsi:
                self.remote_ident = value.strip('"').strip()
            elif name == sp.dcs:
                self.params = parse_dcs(value, sp.hex_reports)
            elif name == sp.page:
                self._page_status = parse_fparams(value, 16 if sp.hex_reports else 10)
            elif name == sp.eop:
                self._page_post = int(parse_fparams(value, 10)[0])
            elif name == sp.hangup:
                self.hangup = hangup_key(value, sp.hex_reports)
                self.off_hook = False
            else:
                self.trace.append(f"! report {name} not used")
        except (ValueError, IndexError, TypeError) as e:
            self.trace.append(f"! malformed {name} report ignored: {e}")

    def _set_ecm(self, cmd: Command, lines: list[str]) -> None:
        """Our capabilities as the modem has them, with the ec field set as the call wants."""
        for line in lines:
            try:
                values = parse_fparams(line, 10)
            except ValueError:
                continue
            if len(values) >= 6 and all(isinstance(v, int) for v in values):
                values[5] = (values[5] or 1) if self.call.ecm else 0
                self._queue.insert(0, Command(f"AT{self.sp.caps}={','.join(map(str, values))}", 3.0, optional=True))
                return
        self.trace.append(f"! {cmd.text}: no usable capability list; ECM left as the modem has it")

    def _start_page(self) -> None:
        if self._rx is None:
            self._finish("page data with no TIFF open")
            return
        p = self.params or SessionParams(vr=1)
        if self.params is None:
            self.trace.append("! page data before any session parameters: assuming fine, 1728, MH")
        x, y, _ = p.resolution
        self._page_status, self._page_post = [], None
        try:
            self._rx.start_page(p.encoding, p.width, x, y)
        except T4Error as e:
            self.failed = True
            self._finish(f"cannot start the page: {e}")
            return
        self.state = State.IN_PAGE

    def _end_page(self, partial: bool) -> None:
        assert self._rx is not None
        if self._sniff:
            self._decide_bit_order()  # a page shorter than the sniff window
        saw_rtc = self._rx.saw_rtc
        try:
            stats = self._rx.end_page()
        except T4Error as e:
            self.trace.append(f"! page {len(self.pages) + 1} lost: {e}")
            return
        # a page that ended without its RTC was cut short (spandsp 0.0.6 does not always flag
        # T.6's EOFB, so there the modem's <DLE><ETX> has to do)
        ended = saw_rtc or (stats.encoding == T6 and not partial)
        partial = partial or not ended
        rec = PageRecord(stats, partial=partial, quality=copy_quality(stats, ended))
        self.pages.append(rec)
        self.trace.append(
            f"= page {len(self.pages)}: {stats.length} rows, {stats.bad_rows} bad{', cut short' if partial else ''}"
        )

    def _ended_by_modem(self, result: str) -> None:
        if self.hangup is None:
            self.failed = True
            self._finish(f"modem ended the call with {result or 'no result'} and no hang-up report")
        elif self.hangup != "00":
            self._finish("the modem ended the call")  # its +FHS code says why, in result_text
        else:
            self._finish("")

    def _finish(self, reason: str) -> None:
        if self.state is State.DONE:
            return
        if reason and not self.hangup_reason:
            self.hangup_reason = reason
        self.state = State.DONE
        self._queue.clear()
        self.close()


class Class2Receiver:
    """The :class:`~appliance.modem.driver.ReceiveDriver` for Class 2 and Class 2.0 modems."""

    #: seconds without page data (or a result) inside a page before the call is given up
    data_timeout = 30.0

    def __init__(self, variant: str = "2.0") -> None:
        if variant not in SPELLINGS:
            raise ValueError(f"Class 2 variant must be '2' or '2.0', not {variant!r}")
        self.variant = variant

    async def receive(self, port: ModemPort, call: ModemCall) -> ModemCallResult:
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        session = Class2Session(call, self.variant, now=t0)
        deadline = loop.time() + call.max_call_duration
        self._drain(port, session)  # the RINGs before our answer
        session.start()
        try:
            while not session.done:
                if loop.time() >= deadline:
                    session.call_timeout()
                    break
                cmd = session.next_command()
                if cmd is None:  # nothing left to ask yet the call is not over: our bug, not a hang
                    session.stuck()
                    break
                try:
                    done = await port.command(cmd.text, cmd.timeout, expect=ALL_RESULTS)
                except ModemError as e:
                    self._drain(port, session)
                    if "device gone" in e.result or "port closed" in e.result:
                        session.device_gone(e.result)
                    else:
                        session.command_failed(cmd, e.result)
                    continue
                self._drain_unsolicited_only(port, session)
                session.command_done(cmd, done.result, list(done.lines))
                if session.in_data:
                    await self._page(port, session, deadline)
                elif session.unwanted_data_phase(done.result):
                    port.channel.end_data_phase(asyncio.get_running_loop().time())
                    self._drop_abandoned_phase(port, session)
        finally:
            session.close()
        if session.off_hook and not session.device_lost and port.is_open:
            port.channel.end_data_phase(
                asyncio.get_running_loop().time()
            )  # one the modem left open (a CONNECT as a page's result) would hold ATH
            try:  # make sure the line is released; the modem may be on hook already
                await port.command("ATH", 5.0, expect=ALL_RESULTS)
            except ModemError:
                pass
        facts = session.facts(time.monotonic())
        if not session.complete:
            facts.modem_history = port.history()
        return ModemCallResult(session.complete, facts)

    async def _page(self, port: ModemPort, session: Class2Session, deadline: float) -> None:
        """One page's data phase: DC2, data until <DLE><ETX>, then the page's final result."""
        loop = asyncio.get_running_loop()
        try:
            await port.write_data(DC2)
        except ModemError as e:
            session.device_gone(e.result)
            return
        while not session.done:
            wait = min(self.data_timeout, deadline - loop.time())
            if wait <= 0:
                session.call_timeout()
                break
            try:
                ev = await asyncio.wait_for(port.events.get(), wait)
            except TimeoutError:
                session.data_timeout(self.data_timeout)
                break
            if self._dispatch(ev, session):
                return
        if not session.device_lost and port.is_open:
            port.channel.end_data_phase(loop.time())
            try:
                await port.write_data(CAN)
            except ModemError:
                pass

    @staticmethod
    def _dispatch(ev: Event, session: Class2Session) -> bool:
        """Hand one event to the session; True when the page's data phase is over."""
        if isinstance(ev, DataReceived):
            session.data(ev.data)
        elif isinstance(ev, DataEnd):
            session.data_end()
        elif isinstance(ev, DleCommand):
            session.dle_command(ev.code)
        elif isinstance(ev, DataResult):
            session.data_result(ev.result, list(ev.lines))
            return True
        elif isinstance(ev, Unsolicited):
            session.unsolicited(ev.line)
        elif isinstance(ev, Garbage):
            session.garbage(ev.data, ev.reason)
        elif isinstance(ev, DeviceGone):
            session.device_gone(ev.reason)
            return True
        return False

    @staticmethod
    def abandoned(ev: Event, session: Class2Session) -> None:
        """One event already queued from a data phase the driver abandoned: its data and final
        result belong to no page, and left queued the next page took them for its own, ended at
        once and left the real page's phase open (found by fuzzing: a stalled line)."""
        if isinstance(ev, DataReceived):
            session.trace.append(f"! {len(ev.data)} bytes of an abandoned data phase dropped")
        elif isinstance(ev, DataResult):
            session.trace.append(f"! {ev.result} ended an abandoned data phase")
            for line in ev.lines:  # a hang-up report in there still counts
                session.unsolicited(line)
        elif not isinstance(ev, (DataEnd, DleCommand)):
            Class2Receiver._dispatch(ev, session)

    def _drop_abandoned_phase(self, port: ModemPort, session: Class2Session) -> None:
        while not port.events.empty():
            self.abandoned(port.events.get_nowait(), session)

    def _drain(self, port: ModemPort, session: Class2Session) -> None:
        while not port.events.empty():
            self._dispatch(port.events.get_nowait(), session)

    def _drain_unsolicited_only(self, port: ModemPort, session: Class2Session) -> None:
        """Lines that arrived while a command ran (data events wait for the page loop)."""
        keep = []
        while not port.events.empty():
            ev = port.events.get_nowait()
            if isinstance(ev, (Unsolicited, Garbage)):
                self._dispatch(ev, session)
            else:
                keep.append(ev)
        for ev in keep:
            port.events.put_nowait(ev)
