"""The outbound worker: takes due jobs from the queue, sends each over its route, records the
outcome, schedules the retry, and mails the report.

Order of records per attempt (what makes a crash safe, with the queue's `recover`): the job is
claimed (an attempt row "dialling") before the call is placed; `attempt_connected` is written as
soon as the far end answers, so after a crash the queue knows whether anything may have reached
the far end; each confirmed page is written as it is confirmed; the outcome last.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypedDict

from appliance import localtime
from appliance.config import Config, OutboundRouteConfig
from appliance.delivery.errors import PermanentDeliveryError, TemporaryDeliveryError
from appliance.outbound.header import stamp_header
from appliance.outbound.outcome import Outcome, Result
from appliance.outbound.report import render_report, wants_report
from appliance.spool.outbound import OutboundQueue, OutJob, retry_at

log = logging.getLogger("faxbridge.outbound")

#: longest sleep between looks at the queue (a changed clock, a missed wake)
MAX_IDLE = 30.0
#: a call longer than this is ended: 50 pages at 2400 bit/s fit well within it
CALL_TIMEOUT = 3600.0
#: report mail retries: 1, 2, 4 ... minutes, given up after a day
REPORT_MAX_AGE = 86400.0


class Progress(Protocol):
    def connected(self) -> None: ...
    def page(self, confirmed: int) -> None: ...


#: sends one attempt: (job, route, digits to dial, the stamped TIFF, progress, cancel) -> outcome
Dispatch = Callable[[OutJob, OutboundRouteConfig, str, Path, Progress, asyncio.Event], Awaitable[Outcome]]
#: hands a report mail to the delivery backend: (message, recipient) -> the server's reply
SendMail = Callable[[Any, str], str]


class WorkerStatus(TypedDict):
    sending: list[int]
    busy_routes: dict[str, int]


class _Attempt:
    """The progress callbacks of one attempt, written through to the queue off the loop."""

    def __init__(self, worker: OutboundWorker, job_id: int) -> None:
        self.worker, self.job_id = worker, job_id
        self.pages = 0
        self.answered = False

    def connected(self) -> None:
        self.answered = True
        self.worker._later(self.worker.queue.attempt_connected, self.job_id, time.time())

    def page(self, confirmed: int) -> None:
        self.pages = confirmed
        self.worker._later(self.worker.queue.attempt_progress, self.job_id, confirmed)


class OutboundWorker:
    def __init__(
        self,
        cfg: Callable[[], Config],
        queue: OutboundQueue,
        dispatch: Dispatch,
        send_mail: SendMail,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg, self.queue, self.dispatch, self.send_mail = cfg, queue, dispatch, send_mail
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self._wake = asyncio.Event()
        self._stop = False
        self._cancels: dict[int, asyncio.Event] = {}
        self._busy: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writes: set[asyncio.Future[Any]] = set()

    # -- control ---------------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        for ev in self._cancels.values():
            ev.set()
        self._wake.set()

    def status(self) -> WorkerStatus:
        return {"sending": sorted(self._cancels), "busy_routes": dict(self._busy)}

    async def cancel(self, job_id: int) -> OutJob:
        """Cancel a job: at once when it waits, by hanging up when it is being sent."""
        job: OutJob = await self._io(self.queue.cancel, job_id, self.clock())
        ev = self._cancels.get(job_id)
        if ev is not None:
            ev.set()
        self.wake()
        return job

    # -- the loop --------------------------------------------------------------------------------
    async def run(self) -> None:
        while not self._stop:
            self._wake.clear()
            try:
                await self.run_once()
                await self.send_reports()
            except Exception:  # the queue must keep going whatever one look at it met
                log.exception("outbound queue")
            due = await self._io(self.queue.next_due)
            wait = MAX_IDLE if due is None else min(MAX_IDLE, max(0.05, due - self.clock()))
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_once(self) -> int:
        """Start every due job a route has room for; how many started."""
        cfg = self.cfg()
        limits = {r.name: r.max_calls for r in cfg.outbound.routes}
        jobs: list[OutJob] = await self._io(
            functools.partial(self.queue.claim_due, self.clock(), busy_routes=dict(self._busy), limits=limits)
        )
        for job in jobs:
            self._busy[job.route] = self._busy.get(job.route, 0) + 1
            self._cancels[job.id] = asyncio.Event()
            task = asyncio.get_running_loop().create_task(self._attempt(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(jobs)

    async def _attempt(self, job: OutJob) -> None:
        cfg = self.cfg()
        cancel = self._cancels[job.id]
        progress = _Attempt(self, job.id)
        route = next((r for r in cfg.outbound.routes if r.name == job.route), None)
        started = self.clock()
        try:
            if route is None:
                outcome = Outcome(
                    Result.NO_ROUTE, f"route {job.route!r} is no longer configured", pages_total=job.pages
                )
            else:
                outcome = await self._send(cfg, job, route, progress, cancel)
        except Exception as e:  # a bug must end this attempt, recorded, not the worker
            log.exception("sending fax %s", job.id)
            outcome = Outcome(Result.ERROR, f"{type(e).__name__}: {e}", pages_total=job.pages)
        if cancel.is_set() and outcome.result is not Result.SENT and not self._stop:
            outcome.result = Result.CANCELLED
        if self._stop and outcome.result is not Result.SENT:
            # the daemon is stopping: the call was ended by us, not by the far end. Not answered:
            # give the job back (dialled again at the next start); answered: leave it sending, and
            # the queue's recovery records the outcome as unknown at the next start
            if not progress.answered:
                await self._flush()
                try:
                    await self._io(self.queue.release, job.id, self.clock())
                except ValueError:  # answered after all (the write raced the stop)
                    pass
            self._busy[job.route] -= 1
            self._cancels.pop(job.id, None)
            return
        outcome.pages_total = outcome.pages_total or job.pages
        outcome.pages_confirmed = max(outcome.pages_confirmed, progress.pages)
        outcome.duration = outcome.duration or round(self.clock() - started, 1)
        nxt = self._next_attempt(job, route, outcome)
        await self._flush()
        done: OutJob = await self._io(
            functools.partial(self.queue.attempt_done, next_attempt=nxt), job.id, self.clock(), outcome
        )
        self._busy[job.route] -= 1
        self._cancels.pop(job.id, None)
        log.info(
            "fax %s to %s: %s%s",
            job.id,
            job.e164,
            outcome.words(),
            f"; next attempt in {nxt - self.clock():.0f} s" if nxt is not None else "",
        )
        if done.state != job.state:
            self.wake()

    async def _send(
        self, cfg: Config, job: OutJob, route: OutboundRouteConfig, progress: _Attempt, cancel: asyncio.Event
    ) -> Outcome:
        from appliance.outbound.numbers import dial_digits

        digits = dial_digits(job.e164, route, cfg.outbound)
        zone = localtime.zone(cfg.system.timezone)
        ident = cfg.outbound.ident or cfg.fax.ident
        with tempfile.TemporaryDirectory(prefix="send-", dir=cfg.path(cfg.spool.dir)) as tmp:
            tiff = Path(tmp) / "stamped.tif"
            source = self.queue.document_path(job)
            if cfg.outbound.header:
                await self._io(
                    functools.partial(
                        stamp_header,
                        source,
                        tiff,
                        template=cfg.outbound.header,
                        ident=ident,
                        name=cfg.outbound.name,
                        when=localtime.at(self.clock(), zone),
                    )
                )
            else:
                tiff = source
            return await asyncio.wait_for(self.dispatch(job, route, digits, tiff, progress, cancel), CALL_TIMEOUT)

    def _next_attempt(self, job: OutJob, route: OutboundRouteConfig | None, outcome: Outcome) -> float | None:
        """When to try again: the route's schedule for a retryable result, with a little jitter
        so many jobs to one busy number do not all redial in the same second."""
        if route is None:
            return None
        now = self.clock()
        at = retry_at(job, outcome, route.retries, now)
        if at is None or at <= now:
            return at
        return now + (at - now) * self.rng.uniform(0.9, 1.1)

    # -- reports ---------------------------------------------------------------------------------
    async def send_reports(self) -> int:
        cfg = self.cfg()
        sent = 0
        for job in await self._io(self.queue.reports_due, self.clock()):
            if not wants_report(job):
                await self._io(self.queue.report_sent, job.id, self.clock())
                continue
            attempts = await self._io(self.queue.attempts, job.id)
            path = self.queue.document_path(job)
            msg = await self._io(
                functools.partial(
                    render_report,
                    job,
                    attempts,
                    from_addr=cfg.delivery.from_,
                    tiff=path if path.exists() else None,
                    now=self.clock(),
                    tz=localtime.zone(cfg.system.timezone),
                )
            )
            try:
                await self._io(self.send_mail, msg, job.sender)
            except (TemporaryDeliveryError, PermanentDeliveryError, OSError) as e:
                give_up = isinstance(e, PermanentDeliveryError) or self.clock() - (job.finished or 0) > REPORT_MAX_AGE
                log.warning(
                    "report for fax %s to %s failed%s: %s",
                    job.id,
                    job.sender,
                    " for good" if give_up else ", will retry",
                    e,
                )
                wait = min(3600.0, 60.0 * 2 ** min(job.report_attempts, 6))
                await self._io(
                    functools.partial(self.queue.report_retry, give_up=give_up), job.id, str(e), self.clock() + wait
                )
            else:
                await self._io(self.queue.report_sent, job.id, self.clock())
                sent += 1
        return sent

    # -- plumbing --------------------------------------------------------------------------------
    def _later(self, fn: Callable[..., Any], *args: Any) -> None:
        """A progress write, off the loop; `_flush` waits for them before the outcome is written."""
        fut = asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
        self._writes.add(fut)
        fut.add_done_callback(self._written)

    def _written(self, fut: asyncio.Future[Any]) -> None:
        self._writes.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("recording outbound progress failed: %s", fut.exception())

    async def _flush(self) -> None:
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
