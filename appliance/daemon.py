"""The appliance's one asyncio process: SIP ingress, fax reception, spool and delivery.

Each call is a task on the one event loop (no thread per call: spandsp calls are short C calls);
blocking work (fsync, TIFF page counting, SMTP) goes to the default executor so it never makes a
call's RTP late.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .delivery.queue import DeliveryWorker
from .fax.session import ReceiveSession
from .media.channel import AudioChannel, PortAllocator
from .media.clock import MediaClock
from .routing.router import route
from .sip import events as sipev
from .sip.sdp import NoUsableCodec, answer_audio
from .sip.transport import SipEndpoint
from .sip.useragent import UserAgent
from .spandsp.audio import AudioFaxTerminal
from .spool.store import FaxRecord, Spool

log = logging.getLogger("faxbridge")
POLL_INTERVAL = 0.25
#: a full collection at least this often (seconds), earlier when the appliance is idle
FULL_GC_INTERVAL = 60.0


@dataclass
class ActiveCall:
    """What the daemon knows about a call in progress."""

    call_id: str
    fax: FaxRecord
    started: float
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str = ""
    session: ReceiveSession | None = None
    channel: AudioChannel | None = None
    codec: str = ""


def _background_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError:  # not permitted in some sandboxes: only the latency guarantee suffers
        pass


class Appliance:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.spool = Spool(cfg.path(cfg.spool.dir))
        self.sip = SipEndpoint(UserAgent(user_agent=cfg.sip.user_agent))
        self.ports = PortAllocator(*cfg.sip.rtp_ports)
        self.media_clock = MediaClock()
        self.delivery = DeliveryWorker(self.spool, cfg.delivery, resolve_path=cfg.path)
        self.calls: dict[str, ActiveCall] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rng = random.SystemRandom()
        self.stats = {"calls": 0, "faxes": 0, "rejected": 0, "no_fax": 0, "incomplete": 0}

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        if os.environ.get("FAXBRIDGE_LOOP_DEBUG"):  # log every loop step that blocks calls' media
            loop.set_debug(True)
            loop.slow_callback_duration = 0.003
        # Executor threads (fsync, TIFF, MIME) hold the GIL for up to the switch interval: 5 ms by
        # default, which is exactly the RTP lateness budget.  Make them yield every 0.5 ms.
        sys.setswitchinterval(0.0005)
        # Only two of them, at the lowest CPU priority: on a busy core the kernel then runs the loop
        # (every call's media) first, and the background work in the gaps.
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2, thread_name_prefix="faxbridge-io",
                                                     initializer=_background_priority))
        recovered = await loop.run_in_executor(None, self.spool.recover, time.time())
        for fax in recovered.get("unrouted", []):
            await loop.run_in_executor(None, self._route, fax)
        if any(v for k, v in recovered.items() if k != "unrouted") or recovered.get("unrouted"):
            log.info("recovered after restart: %s",
                     {k: (len(v) if isinstance(v, list) else v) for k, v in recovered.items()})
        listeners = [(l.transport, l.host, l.port) for l in self.cfg.sip.listeners()]
        await self.sip.start(listeners)
        gc.freeze()  # start-up objects never die: keep them out of every later collection
        # The collector, left automatic, stops the loop for ~5 ms when it walks the heap, at the
        # moments with most garbage: many calls ending together.  Collect on our own schedule.
        gc.disable()
        self._spawn(self._collect_garbage())
        self._spawn(self._sip_events())
        self._spawn(self.delivery.run())
        log.info("SIP listening on %s", ", ".join(f"{l.transport}:{l.host}:{l.port}" for l in self.sip.locals))

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            call.end_reason = call.end_reason or "appliance shutting down"
            self.sip.hangup(call.call_id)
            call.ended.set()
        for _ in range(40):
            if not self.calls:
                break
            await asyncio.sleep(0.05)
        self.delivery.stop()
        await self.sip.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.spool.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", exc_info=task.exception())

    async def _collect_garbage(self) -> None:
        """Young objects every second (cheap); the whole heap only when no call is in progress."""
        full_due = time.monotonic() + FULL_GC_INTERVAL
        while True:
            await asyncio.sleep(1.0)
            if not self.calls and time.monotonic() >= full_due or time.monotonic() >= full_due + FULL_GC_INTERVAL:
                gc.collect()
                full_due = time.monotonic() + FULL_GC_INTERVAL
            else:
                gc.collect(0)

    # -- SIP events --------------------------------------------------------------------------
    async def _sip_events(self) -> None:
        while True:
            ev = await self.sip.events.get()
            try:
                if isinstance(ev, sipev.IncomingCall):
                    self._spawn(self._receive_call(ev))
                elif isinstance(ev, sipev.CallEnded):
                    call = self.calls.get(ev.call_id)
                    if call is not None:
                        call.end_reason = call.end_reason or ev.reason
                        call.ended.set()
            except Exception:  # one bad event must never stop the daemon
                log.exception("handling SIP event %r", ev)

    def _local_ip(self, ev: sipev.IncomingCall) -> str:
        """The address for our SDP and RTP socket: configured, else the one the call came in on."""
        return self.cfg.sip.public_address or ev.local.host

    async def _receive_call(self, ev: sipev.IncomingCall) -> None:
        loop = asyncio.get_running_loop()
        self.stats["calls"] += 1
        if ev.offer is None:
            # delayed offer (offer in our 200, answer in ACK) is not supported yet
            self.sip.reject_call(ev.call_id, 488, "Not Acceptable Here (no SDP offer)")
            self.stats["rejected"] += 1
            return
        if not os.access(self.spool.root / "incoming", os.W_OK):
            self.sip.reject_call(ev.call_id, 503, "Service Unavailable (spool not writable)")
            log.error("spool %s is not writable: refusing call %s", self.spool.root, ev.call_id)
            self.stats["rejected"] += 1
            return
        try:
            channel = await AudioChannel.open(self.ports, ev.local.host, payload_type=0, remote=None,
                                              delay=self.cfg.sip.playout_delay_ms / 1000.0)
        except OSError as e:
            log.error("call %s: %s", ev.call_id, e)
            self.sip.reject_call(ev.call_id, 503, "Service Unavailable (no media port)")
            self.stats["rejected"] += 1
            return
        try:
            answer = answer_audio(ev.offer, self._local_ip(ev), channel.port,
                                  session_id=self._rng.getrandbits(31), version=1)
        except NoUsableCodec as e:
            channel.close()
            self.sip.reject_call(ev.call_id, 488, "Not Acceptable Here")
            log.warning("call %s from %s rejected: %s", ev.call_id, ev.caller_number, e)
            self.stats["rejected"] += 1
            return
        channel.playout.payload_type = answer.payload_type
        channel.stream.payload_type = answer.payload_type
        channel.remote = answer.remote
        line = f"sip:{ev.local.transport}:{ev.local.host}:{ev.local.port}"
        try:
            fax = await loop.run_in_executor(None, lambda: self.spool.begin_fax(
                time.time(), line=line, call_id=ev.call_id, caller_number=ev.caller_number,
                caller_name=ev.caller_name, called_number=ev.called_number,
                extra={"remote": f"{ev.remote[0]}:{ev.remote[1]}", "codec": answer.codec,
                       "diversion": list(ev.diversion)}))
        except (OSError, sqlite3.Error) as e:  # disk full, spool damaged: refuse rather than lose
            channel.close()
            log.error("call %s refused: the spool cannot record it: %s", ev.call_id, e)
            self.sip.reject_call(ev.call_id, 503, "Service Unavailable (spool error)")
            self.stats["rejected"] += 1
            return
        call = ActiveCall(ev.call_id, fax, loop.time(), channel=channel, codec=answer.codec)
        self.calls[ev.call_id] = call
        terminal: AudioFaxTerminal | None = None
        try:
            terminal = AudioFaxTerminal(calling=False, codec=answer.codec, ident=self.cfg.fax.ident,
                                        ecm=self.cfg.fax.ecm, rx_file=self.spool.incoming_path(fax))
            call.session = ReceiveSession(terminal, loop.time(), self.cfg.fax)
            self.sip.answer_call(ev.call_id, answer.sdp)
            channel.start(terminal, self.media_clock)
            log.info("call %s answered: %s -> %s (%s), fax %s", ev.call_id, ev.caller_number,
                     ev.called_number, answer.codec, fax.id)
            while not call.ended.is_set():
                try:
                    await asyncio.wait_for(call.ended.wait(), POLL_INTERVAL)
                except asyncio.TimeoutError:
                    pass
                seen = len(call.session.pages)
                reason = call.session.poll(loop.time())
                for n, page in enumerate(call.session.pages[seen:], seen + 1):
                    log.info("call %s: page %d received (%s, %d bad rows, %d bit/s%s)", ev.call_id, n,
                             page.resolution, page.bad_rows, page.bit_rate, ", ECM" if page.ecm else "")
                if reason:
                    log.info("call %s: hanging up: %s", ev.call_id, reason)
                    call.end_reason = reason
                    self.sip.hangup(ev.call_id)
                    break
        except Exception:
            log.exception("call %s failed", ev.call_id)
            self.sip.hangup(ev.call_id)
        finally:
            channel.close()
            facts: dict[str, Any] = {}
            complete = False
            if terminal is not None and call.session is not None:
                terminal.close()  # closes the TIFF; may report phase E
                call.session.poll(loop.time())
                facts = call.session.facts(loop.time())
                complete = call.session.complete
                facts["extra"] = {**fax.extra, **facts.get("extra", {}), "end_reason": call.end_reason,
                                  "rtp": {**channel.playout.stats, **channel.stats,
                                                "late_ticks": channel.late_ticks}}
            self.calls.pop(ev.call_id, None)
            await loop.run_in_executor(None, self._finish, fax, complete, facts)

    def _finish(self, fax: FaxRecord, complete: bool, facts: dict[str, Any]) -> None:
        """Commit the received file durably, then route it; runs in the executor."""
        facts.pop("pages", None)  # the spool counts pages from the file itself
        rec = self.spool.finish_fax(fax.id, time.time(), complete=complete, **facts)
        if rec.state == "no_fax":
            self.stats["no_fax"] += 1
            log.info("fax %s: no pages received (%s)", rec.id, rec.result_text)
            return
        self.stats["faxes"] += 1
        if not rec.complete:
            self.stats["incomplete"] += 1
        log.info("fax %s received: %d page(s)%s, TSI %r, %s", rec.id, rec.pages,
                 "" if rec.complete else " (incomplete)", rec.remote_ident, rec.result_text)
        self._route(rec)

    def _route(self, rec: FaxRecord) -> None:
        decision = route(self.cfg.routing, called_number=rec.called_number, caller_number=rec.caller_number,
                         remote_ident=rec.remote_ident, line=rec.line)
        self.spool.add_jobs(rec.id, decision.recipients, time.time())
        log.info("fax %s routed to %s (%s)", rec.id, ", ".join(decision.recipients), decision.rule)
        self._loop.call_soon_threadsafe(self.delivery.wake)  # we may be on an executor thread

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
