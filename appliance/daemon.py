"""The appliance's one asyncio process: SIP ingress, fax reception, spool and delivery.

Each call is a task on the one event loop (no thread per call: spandsp calls are short C calls);
blocking work (fsync, TIFF page counting, SMTP) goes to the default executor so it never makes a
call's RTP late.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from appliance import localtime
from appliance.calls.facts import CallFacts, CaptureFacts
from appliance.calls.modem_line import CallerInfo, ModemLine
from appliance.calls.sip_call import InboundSipCall
from appliance.calls.sip_setup import SELF_TEST_PEER, build_endpoint, peer_table, start_registrations
from appliance.config import Config, PeerConfig
from appliance.control import ApplianceControl, ControlServer
from appliance.delivery.queue import ARCHIVE, DeliveryWorker
from appliance.media.channel import MediaChannel, PortAllocator
from appliance.media.clock import MediaClock
from appliance.media.totals import MediaTotals
from appliance.modem.driver import ModemCallResult
from appliance.modem.manager import ModemManager
from appliance.outbound.service import OutboundService
from appliance.restarts import daemon_changes
from appliance.routing.router import route
from appliance.routing.um import is_um_notice
from appliance.rtsched import promote_this_thread, worker_this_thread
from appliance.sip import events as sipev
from appliance.sip.messagelog import messages_text
from appliance.sip.policy import RETRY_AFTER, SelfTestPass
from appliance.sip.sdp import NoUsableCodec
from appliance.sip.useragent import UserAgent
from appliance.spool.store import FaxRecord, Spool

log = logging.getLogger("faxbridge.daemon")
#: a full collection at least this often (seconds), earlier when the appliance is idle
FULL_GC_INTERVAL = 60.0
#: how often faxes older than system.retention_days are purged (the first run is at start-up)
RETENTION_INTERVAL = 3600.0


def admission_refusal(
    ev: sipev.IncomingCall, peer: PeerConfig | None, calls: int, max_calls: int, self_test: SelfTestPass | None = None
) -> tuple[int, str, str] | None:
    """(status, reason phrase, log text) when a new call must not get a media port, else None.

    The call gate admitted it; this repeats the gate's checks against the daemon's own view: a
    peer by address, the same peer the gate named, its authentication, and capacity.  The
    appliance's own test call has no peer: its pass must have admitted exactly this Call-ID
    (``peer`` is then SELF_TEST_PEER)."""
    adm = ev.admission
    if adm is not None and adm.self_test:
        if self_test is None or not self_test.admitted(ev.call_id) or peer is not SELF_TEST_PEER:
            return 403, "Forbidden", "admitted as the appliance's own test call, but no test pass names it"
        return (
            (503, "Service Unavailable", f"sip.max_calls ({max_calls}) calls in progress")
            if calls >= max_calls
            else None
        )
    if peer is None:
        return 403, "Forbidden", f"{ev.remote[0]} is not a configured peer"
    if adm is None:
        return 403, "Forbidden", "no call gate admitted this call"
    if adm.peer != peer.name:
        return 403, "Forbidden", f"admitted for peer {adm.peer!r} but {ev.remote[0]} is peer {peer.name!r}"
    if peer.username and adm.authenticated != peer.username:
        return 403, "Forbidden", f"peer {peer.name!r} must authenticate and did not"
    if calls >= max_calls:
        return 503, "Service Unavailable", f"sip.max_calls ({max_calls}) calls in progress"
    return None


class Appliance:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        #: what this process started with: a reload replaces ``cfg``, never this (restarts.py
        #: compares the two to say which saved settings wait for a restart)
        self.loaded = cfg
        self.spool = Spool(cfg.path(cfg.spool.dir))
        # TLS, the call gate (who may call, flood limits, digest for peers) and our own credentials
        self.sip, self.peers = build_endpoint(cfg, UserAgent(user_agent=cfg.sip.user_agent))
        self.ports = PortAllocator(*cfg.sip.rtp_ports)
        self.media_clock = MediaClock()
        self.media_totals = MediaTotals()  # /metrics: every call's media counters
        self.delivery = DeliveryWorker(
            self.spool,
            cfg.delivery,
            resolve_path=cfg.path,
            refusal=lambda addr: self.cfg.routing.refusal(addr),
            zone=lambda: localtime.zone(self.cfg.system.timezone),
        )
        self.calls: dict[str, InboundSipCall] = {}
        #: sending faxes: the outbound queue, its worker and the ways in (appliance/outbound)
        self.outbound = OutboundService(lambda: self.cfg, self.spool, lambda: self.modems)
        #: serial modem lines ([modem]); None when no device is configured and nothing is adopted
        self.modems: ModemManager | None = None
        self._modem_faxes: dict[int, FaxRecord] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stats = {
            "calls": 0,
            "faxes": 0,
            "rejected": 0,
            "no_fax": 0,
            "incomplete": 0,
            "um_referrals_ignored": 0,
            "recipients_refused": 0,
        }
        #: the web process's way in (appliance/control.py); set by the control socket's "restart",
        #: which `faxbridge run` waits for beside SIGTERM
        self.control: ControlServer | None = None
        self._control_cmds: ApplianceControl | None = None
        self.restart_requested = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        if os.environ.get("FAXBRIDGE_LOOP_DEBUG"):  # log every loop step that blocks calls' media
            loop.set_debug(True)
            loop.slow_callback_duration = 0.003
        # Executor threads (fsync, TIFF, MIME) hold the GIL for up to the switch interval: 5 ms by
        # default, which is exactly the RTP lateness budget.  Make them yield every 0.5 ms.
        sys.setswitchinterval(0.0005)
        # The loop (every call's media) runs real-time when permitted, so the kernel runs it before
        # anything else on a busy machine; its executor's workers just below it, as a worker holding
        # the GIL the loop waits for must get the CPU ahead of every other process (decision 0011).
        why_not = promote_this_thread(self.cfg.system.realtime_priority)
        log.info(
            "event loop: %s",
            f"SCHED_RR priority {self.cfg.system.realtime_priority}"
            if not why_not
            else f"normal scheduling: {why_not}",
        )
        loop.set_default_executor(
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="faxbridge-io", initializer=worker_this_thread)
        )
        recovered = await loop.run_in_executor(None, self.spool.recover, time.time())
        for fax in recovered.get("unrouted", []):
            await loop.run_in_executor(None, self._route, fax)
        if any(v for k, v in recovered.items() if k != "unrouted") or recovered.get("unrouted"):
            log.info(
                "recovered after restart: %s", {k: (len(v) if isinstance(v, list) else v) for k, v in recovered.items()}
            )
        listeners = [(l.transport, l.host, l.port) for l in self.cfg.sip.listeners()]
        await self.sip.start(listeners)
        await start_registrations(self.sip, self.cfg)
        gc.freeze()  # start-up objects never die: keep them out of every later collection
        # The collector, left automatic, stops the loop for ~5 ms when it walks the heap, at the
        # moments with most garbage: many calls ending together.  Collect on our own schedule.
        gc.disable()
        self._spawn(self._collect_garbage())
        self._spawn(self._sip_events())
        self._spawn(self.delivery.run())
        self._spawn(self._purge_old_faxes())
        if self.cfg.modem.devices or self.cfg.modem.auto_adopt:
            # each line fails alone (absent device: "down", broken modem: "error") and retries
            self.modems = ModemManager.from_config(self.cfg, self._modem_begin, self._modem_finish)
            await self.modems.start()
        await self.outbound.start()
        self._control_cmds = ApplianceControl(self)
        self.control = ControlServer(
            self.cfg.path(self.cfg.system.control_socket),
            {**self._control_cmds.handlers(), **self.outbound.handlers()},
        )
        try:
            await self.control.start()
        except OSError as e:  # the web page then says "daemon not running"; calls are what matters
            log.error("control socket not available: %s", e)
            self.control = None
        log.info("who may call: %s", self.peers.describe())
        um_peers = [p.name for p in self.cfg.sip.peers if p.exchange_um]
        log.info(
            "Exchange UM referrals (Referred-By recipient) trusted from: %s; faxes go only to %s",
            ", ".join(um_peers) or "no peer (every referral is ignored)",
            ", ".join(self.cfg.routing.domains()) or "no domain",
        )
        log.info("SIP listening on %s", ", ".join(f"{l.transport}:{l.host}:{l.port}" for l in self.sip.locals))

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.close()
        if self._control_cmds is not None:
            await self._control_cmds.close()
        for call in list(self.calls.values()):
            call.end_reason = call.end_reason or "appliance shutting down"
            self.sip.hangup(call.call_id)
            call.events.put_nowait(sipev.CallEnded(call.call_id, "appliance shutting down"))
        for _ in range(40):
            if not self.calls:
                break
            await asyncio.sleep(0.05)
        await self.outbound.stop()  # calls being sent end; the queue's recovery takes them up at start
        if self.modems is not None:  # modem calls in progress end and are recorded; ports close
            await self.modems.stop()
        self.delivery.stop()
        try:
            await self.sip.unregister_all(timeout=5)
        except Exception:  # a registrar that is gone must not block shutdown
            log.exception("unregistering")
        await self.sip.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.spool.close()

    def status_line(self) -> str:
        """One line for `systemctl status` (the unit's STATUS=): what a restart now would cut off."""
        calls = len(self.calls) + len(self._modem_faxes)  # SIP calls and modem calls
        return f"{calls} call(s) in progress; {self.stats['faxes']} fax(es) received since start"

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", exc_info=task.exception())

    async def _purge_old_faxes(self) -> None:
        """Retention: every hour, delete faxes older than system.retention_days (0 keeps all).

        Reads self.cfg each time, so a reloaded setting applies at the next run; the spool
        never purges a fax whose delivery is still open.  Errors are logged, never fatal.
        """
        loop = asyncio.get_running_loop()
        while True:
            days = self.cfg.system.retention_days
            if days > 0:
                try:
                    await loop.run_in_executor(None, self.spool.purge_older_than, time.time() - days * 86400.0)
                except (OSError, sqlite3.Error):
                    log.exception("retention purge failed; trying again in an hour")
            await asyncio.sleep(RETENTION_INTERVAL)

    async def _collect_garbage(self) -> None:
        """Young objects every second (cheap); the whole heap only when no call is in progress."""
        full_due = time.monotonic() + FULL_GC_INTERVAL
        while True:
            await asyncio.sleep(1.0)
            if (not self.calls and time.monotonic() >= full_due) or time.monotonic() >= full_due + FULL_GC_INTERVAL:
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
                elif (call := self.calls.get(getattr(ev, "call_id", ""))) is not None:
                    call.events.put_nowait(ev)
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
            self._refuse(ev, 488, "Not Acceptable Here (no SDP offer)", "no SDP offer")
            return
        if not os.access(self.spool.root / "incoming", os.W_OK):
            self._refuse(ev, 503, "Service Unavailable (spool not writable)", f"spool {self.spool.root} not writable")
            return
        # the call gate decided this already; never trust one gate: check again before a port opens
        self_test = self.self_test_pass()
        if ev.admission is not None and ev.admission.self_test:
            peer: PeerConfig | None = SELF_TEST_PEER
        else:
            peer = self.peers.match(ev.remote[0], ev.local.transport)
        refusal = admission_refusal(ev, peer, len(self.calls), self.cfg.sip.max_calls, self_test)
        if refusal is not None:
            status, reason, why = refusal
            self._refuse(ev, status, reason, why)
            return
        assert peer is not None
        try:
            channel = await MediaChannel.open(
                self.ports, ev.local.host, payload_type=0, remote=None, delay=self.cfg.sip.playout_delay_ms / 1000.0
            )
        except OSError as e:
            self._refuse(ev, 503, "Service Unavailable (no media port)", str(e))
            return
        if peer.capture:  # the owner asked for this peer's media, for a support engineer
            channel.start_capture()
        line = f"sip:{peer.name}" if peer.name else f"sip:{ev.local.transport}:{ev.local.host}:{ev.local.port}"
        answered = CallFacts(
            line=line,
            call_id=ev.call_id,
            caller_number=ev.caller_number,
            caller_name=ev.caller_name,
            called_number=ev.called_number,
            extra={
                "remote": f"{ev.remote[0]}:{ev.remote[1]}",
                "diversion": list(ev.diversion),
                "peer": peer.name,
                **self._referral_facts(ev, peer),
            },
        )
        try:
            fax = await loop.run_in_executor(None, lambda: self.spool.begin_fax(time.time(), **answered.columns()))
        except (OSError, sqlite3.Error) as e:  # disk full, spool damaged: refuse rather than lose
            channel.close()
            self._refuse(ev, 503, "Service Unavailable (spool error)", f"the spool cannot record it: {e}")
            return
        call = InboundSipCall(
            ev.call_id,
            self.cfg,
            self.sip,
            channel,
            self.media_clock,
            self.spool.incoming_path(fax),
            self._local_ip(ev),
            t38_policy=peer.t38,
            t38_max_datagram_override=peer.t38_max_datagram,
        )
        self.calls[ev.call_id] = call
        try:
            try:
                sdp = call.answer(ev.offer)
            except NoUsableCodec as e:
                self._refuse(ev, 488, "Not Acceptable Here", str(e), recorded=True)
            else:
                self.sip.answer_call(ev.call_id, sdp)
                log.info(
                    "call %s answered: %s -> %s (%s), fax %s",
                    ev.call_id,
                    ev.caller_number,
                    ev.called_number,
                    "T.38" if call.mode == "t38" else call.codec,
                    fax.id,
                )
                await call.run()
        except Exception:
            log.exception("call %s failed", ev.call_id)
            self.sip.hangup(ev.call_id)
        finally:
            call.close()  # closes the TIFF; may report phase E
            outcome: CallFacts | None = None
            complete = False
            if call.session is not None:
                call.session.poll(loop.time())
                outcome = call.session.facts(loop.time())
                complete = call.session.complete
                outcome.end_reason, outcome.media = call.end_reason, call.media_facts()
                outcome.capture = self._capture_facts(call.channel)
            self.media_totals.add(call.channel)  # as it leaves the live calls: counted once
            self.calls.pop(ev.call_id, None)
            files = self._call_diagnostics(ev.call_id, call.channel)
            await loop.run_in_executor(None, self._finish, fax, complete, outcome, files)

    def _call_diagnostics(self, call_id: str, channel: MediaChannel) -> dict[str, bytes | bytearray]:
        """The call's SIP messages and (capture on) its media as a pcap, for the fax's diagnostics.
        The pcap's buffer is handed over, not copied: up to 8 MB on the loop would delay media."""
        files: dict[str, bytes | bytearray] = {}
        record = self.sip.messages.take(call_id)
        if record is not None:
            files["sip.txt"] = messages_text(record).encode()
        if channel.capture is not None:
            files["pcap"] = channel.capture.take()
        return files

    @staticmethod
    def _capture_facts(channel: MediaChannel) -> CaptureFacts | None:
        cap = channel.capture
        return CaptureFacts(packets=cap.packets, bytes=cap.size, left_out=cap.dropped) if cap else None

    def self_test_pass(self) -> SelfTestPass | None:
        """The call gate's pass for the appliance's own test call (None without a gate)."""
        gate = self.sip.gate
        return gate.self_test if gate is not None else None

    # -- modem calls ---------------------------------------------------------------------------
    async def _modem_begin(self, caller: CallerInfo) -> tuple[int, Path]:
        """A modem line is about to answer: record the call first.  Raising makes the line leave
        the call unanswered, which is better than receiving a fax we cannot keep."""
        loop = asyncio.get_running_loop()
        if not os.access(self.spool.root / "incoming", os.W_OK):
            raise OSError(f"spool {self.spool.root} not writable")
        self.stats["calls"] += 1
        answered = CallFacts(
            line=caller.line,
            caller_number=caller.caller_number,
            caller_name=caller.caller_name,
            called_number=caller.called_number,
            extra={"device": caller.device, "rings": caller.rings, "caller_id": caller.raw},
        )
        fax = await loop.run_in_executor(None, lambda: self.spool.begin_fax(time.time(), **answered.columns()))
        self._modem_faxes[fax.id] = fax
        log.info("modem call on %s from %r, fax %s", caller.line, caller.caller_number, fax.id)
        return fax.id, self.spool.incoming_path(fax)

    async def _modem_finish(self, fax_id: int, result: ModemCallResult) -> None:
        """The driver's result goes the way of a SIP call's: spool, routing, delivery."""
        fax = self._modem_faxes.pop(fax_id, None) or self.spool.get_fax(fax_id)
        if fax is None:
            log.error("modem call finished for unknown fax %s", fax_id)
            return
        await asyncio.get_running_loop().run_in_executor(None, self._finish, fax, result.complete, result.facts)

    def _referral_facts(self, ev: sipev.IncomingCall, peer: PeerConfig) -> dict[str, Any]:
        """Exchange UM's fax fields (recipient, context) for the fax record: trusted only from a
        configured peer with ``exchange_um = true``.  From anyone else, a caller-chosen recipient
        could make the box mail any address: ignored, logged once and counted, and kept only as
        an untrusted note (the recipient passed the strict address parser) for diagnosis."""
        um = ev.exchange_um
        if um is None:
            return {}
        if peer.exchange_um and peer in self.cfg.sip.peers:  # never the implicit private/unknown peer
            return {
                "exchange_um": {
                    "recipient": um.recipient,
                    "context": um.context,
                    "context_raw": um.context_raw,
                    "notes": um.notes,
                }
            }
        self.stats["um_referrals_ignored"] += 1
        why = f"peer {peer.name!r} is not an exchange_um peer"
        log.warning(
            "call %s from %s: Exchange UM referral ignored (%s): recipient %r not used",
            ev.call_id,
            ev.remote[0],
            why,
            um.recipient,
        )
        return {"um_referral_ignored": {"why": why, "recipient": um.recipient}}

    def _refuse(self, ev: sipev.IncomingCall, status: int, reason: str, why: str, *, recorded: bool = False) -> None:
        """Answer a call we will not take; its SIP messages are dropped unless the spool recorded
        the call (``recorded``), whose diagnostics keep them."""
        log.warning("call %s from %r refused with %d: %s", ev.call_id, ev.caller_number, status, why)
        if not recorded:
            self.sip.messages.forget(ev.call_id)
        extra = [("Retry-After", str(RETRY_AFTER))] if status == 503 else []
        self.sip.reject_call(ev.call_id, status, reason, extra)
        self.stats["rejected"] += 1

    def _finish(
        self,
        fax: FaxRecord,
        complete: bool,
        outcome: CallFacts | None,
        files: dict[str, bytes | bytearray] | None = None,
    ) -> None:
        """Commit the received file durably, then route it; runs in the executor.  The call's
        diagnostics are kept first, so the fax page has them once the fax is there (a failure to
        keep them costs only them).  ``outcome`` is the front-end's report (None: the call ended
        before a fax session began), joined to what the record says of the answer."""
        if files:
            try:
                self.spool.save_diagnostics(fax, files)
            except OSError as e:
                log.warning("fax %s: call diagnostics not kept: %s", fax.id, e)
        facts = CallFacts.answered(fax)
        if outcome is not None:
            facts = facts.ended_with(outcome)
        rec = self.spool.finish_fax(fax.id, time.time(), complete=complete, **facts.columns())
        if rec.state == "no_fax":
            self.stats["no_fax"] += 1
            log.info("fax %s: no pages received (%s)", rec.id, rec.result_text)
            if is_um_notice(rec):  # Exchange UM shows the recipient a missed call
                self._route(rec, notice=True)
            return
        self.stats["faxes"] += 1
        if not rec.complete:
            self.stats["incomplete"] += 1
        log.info(
            "fax %s received: %d page(s)%s, TSI %r, %s",
            rec.id,
            rec.pages,
            "" if rec.complete else " (incomplete)",
            rec.remote_ident,
            rec.result_text,
        )
        self._route(rec)

    def _route(self, rec: FaxRecord, *, notice: bool = False) -> None:
        um = (rec.extra.get("exchange_um") or {}).get("recipient", "")
        decision = route(
            self.cfg.routing,
            called_number=rec.called_number,
            caller_number=rec.caller_number,
            remote_ident=rec.remote_ident,
            line=rec.line,
            um_recipient=um,
        )
        # routing rules: the delivery choices go into the record before its jobs exist, so a
        # crash in between leaves an unrouted fax that start-up routes again (never jobs without it)
        route_extra = decision.as_extra()
        self.spool.update_facts(rec.id, extra={"route": route_extra})
        rec.extra["route"] = route_extra
        for why in decision.refused:
            self.stats["recipients_refused"] += 1
            log.warning("fax %s: not sent to %s", rec.id, why)
        if notice and decision.um_refused:
            return  # a missed-call notice is for the UM mailbox alone, which was refused
        # the archive keeps faxes, not missed-call notices
        archive = [ARCHIVE] if self.cfg.delivery.archive and not notice else []
        self.spool.add_jobs(rec.id, decision.recipients + archive, time.time(), notice=notice)
        log.info(
            "%s %s routed to %s (%s)",
            "missed-call notice for fax" if notice else "fax",
            rec.id,
            ", ".join(decision.recipients),
            decision.rule,
        )
        self._loop.call_soon_threadsafe(self.delivery.wake)  # we may be on an executor thread

    # -- configuration reload (the web UI saved the file; the control socket's "reload") -------
    async def reload_config(self) -> dict[str, Any]:
        """Re-read the configuration file and apply what can change without dropping a call.

        Calls in progress keep the Config they were answered with (an InboundSipCall holds its own
        reference, a modem call got its settings when it began); new calls, routing decisions and
        delivery attempts use the new one.  What needs new sockets or processes (listeners, RTP
        ports, TLS files, registrations, the spool, the control socket) is not applied but named
        in ``restart``, compared with what this process started with (restarts.py; the web
        process judges its own settings).  Returns {"ok", "applied", "restart"} or
        {"ok": false, "error", "errors"} when the file is wrong (the old settings stay)."""
        lock = self.__dict__.setdefault("_reload_lock", asyncio.Lock())
        async with lock:  # two saves in quick succession: one reload after the other
            return await self._reload_config()

    async def _reload_config(self) -> dict[str, Any]:
        from appliance.config import ConfigError, config_file
        from appliance.delivery import oauth

        loop = asyncio.get_running_loop()
        path = config_file(self.cfg)
        try:
            if path.is_file():
                new = await loop.run_in_executor(None, Config.load, path, self.cfg.base_dir)
            else:
                new = Config.from_dict({}, base_dir=self.cfg.base_dir)
        except ConfigError as e:
            log.error("reload: %s: %s; keeping the running configuration", path, "; ".join(e.errors))
            return {"ok": False, "error": "; ".join(e.errors), "errors": e.errors}
        old = self.cfg
        applied: list[str] = []
        restart: list[str] = []
        if new.delivery != old.delivery or new.base_dir != old.base_dir:
            self.delivery.cfg = new.delivery
            self.delivery.resolve_path = new.path
            oauth.reset()  # tokens of the old app registration must not be reused
            applied.append("delivery")
        for name in ("routing", "fax", "system"):
            if getattr(new, name) != getattr(old, name):
                applied.append(name)  # read from self.cfg per call / per fax
        applied += self._reload_sip(old, new)
        # what only a start reads, against what this process started with (resolved paths); the
        # web process says for itself what it waits for
        restart += daemon_changes(self.loaded, new)
        if old.sip.registrations != new.sip.registrations:
            if self.sip.started and "sip.listen" not in restart:
                await self._reload_registrations(new)
                applied.append("sip.registrations")
            else:
                restart.append("sip.registrations")
        self.cfg = new
        applied += await self._reload_modems(old, new, restart)
        self.delivery.wake()
        log.info(
            "configuration reloaded from %s: applied %s%s",
            path,
            ", ".join(applied) or "nothing new",
            f"; needs a restart: {', '.join(restart)}" if restart else "",
        )
        return {"ok": True, "applied": applied, "restart": restart}

    def _reload_sip(self, old: Config, new: Config) -> list[str]:
        """Who may call, flood limits and the digest realm apply to the next INVITE."""
        from appliance.sip.digest import DigestServer
        from appliance.sip.policy import RateLimiter

        applied = []
        o, n = old.sip, new.sip
        gate = self.sip.gate
        if (o.peers, o.allow_unknown) != (n.peers, n.allow_unknown):
            self.peers = peer_table(n.peers, n.allow_unknown)
            if gate is not None:
                gate.peers = self.peers
            applied.append("sip.peers")
        if gate is not None and (o.rate_limit, o.rate_burst) != (n.rate_limit, n.rate_burst):
            gate.limiter = RateLimiter(n.rate_limit, n.rate_burst)
            applied.append("sip.rate_limit")
        if gate is not None and o.auth_realm != n.auth_realm:
            gate.digest = DigestServer(n.auth_realm)
            applied.append("sip.auth_realm")
        if gate is not None and o.max_calls != n.max_calls:
            gate.max_calls = n.max_calls
            applied.append("sip.max_calls")
        limits = ("max_connections", "max_connections_per_address", "connection_idle_timeout")
        if any(getattr(o, k) != getattr(n, k) for k in limits):
            self.sip.conn_limiter.total = n.max_connections
            self.sip.conn_limiter.per_address = n.max_connections_per_address
            self.sip.idle_timeout = n.connection_idle_timeout
            applied.append("sip.connections")
        if (o.public_address, o.playout_delay_ms) != (n.public_address, n.playout_delay_ms):
            applied.append("sip.media")  # read from self.cfg when a call is answered
        return applied

    def restart_needed(self) -> list[str]:
        """Saved (and reloaded) settings that only a restart puts into effect."""
        return daemon_changes(self.loaded, self.cfg)

    async def _reload_registrations(self, new: Config) -> None:
        """Accounts removed or changed are unregistered (Expires: 0, answers awaited briefly),
        new or changed ones start registering; unchanged ones keep their binding."""
        loop = asyncio.get_running_loop()
        wanted = list(new.sip.registrations)
        gone = [r for r in self.sip.registrations if r.cfg not in wanted]
        now = loop.time()
        for reg in gone:
            reg.stop(now)
        self.sip.flush()
        deadline = now + 3.0
        # polled: a sans-I/O Registration tells nobody when it is done (and this runs on a reload only)
        while not all(r.done for r in gone) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        self.sip.registrations[:] = [r for r in self.sip.registrations if r not in gone]
        kept = [r.cfg for r in self.sip.registrations]
        fresh = dataclasses.replace(
            new, sip=dataclasses.replace(new.sip, registrations=[c for c in wanted if c not in kept])
        )
        await start_registrations(self.sip, fresh)

    async def _reload_modems(self, old: Config, new: Config, restart: list[str]) -> list[str]:
        """New settings for every line; idle lines restart now to apply init/class/serial
        changes, busy ones when their call has ended; added devices start, removed idle ones stop."""
        from appliance.calls.modem_line import LineSettings

        settings = LineSettings.from_config(new.modem, new.fax)
        if self.modems is None:
            if new.modem.devices or new.modem.auto_adopt:
                self.modems = ModemManager.from_config(new, self._modem_begin, self._modem_finish)
                await self.modems.start()
                return ["modem"]
            return []
        m = self.modems
        if m.settings == settings and old.modem.devices == new.modem.devices and m.auto_adopt == new.modem.auto_adopt:
            return []
        only_rings = (
            dataclasses.replace(m.settings, rings=settings.rings, max_call_duration=settings.max_call_duration)
            == settings
        )
        m.settings, m.auto_adopt = settings, new.modem.auto_adopt
        for device in [d for d in old.modem.devices if d not in new.modem.devices]:
            line = m.lines.get(device)
            if line is not None and line.in_call:
                restart.append(f"modem.devices: {device} is in a call")
                continue
            await m.remove(device)
        for line in list(m.lines.values()):
            line.settings = settings  # read again at the next ring and call
            if not only_rings:
                self._spawn(self._restart_line_when_idle(line))
        for device in new.modem.devices:
            m.add(device)
        return ["modem"]

    async def _restart_line_when_idle(self, line: ModemLine) -> None:
        # polled once a second: a line tells nobody when its call ends (and this runs on a reload only)
        while line.in_call:  # noqa: ASYNC110
            await asyncio.sleep(1.0)
        await line.stop()
        line.start()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
