"""The delivery worker: takes due jobs from the spool and sends them until accepted or dead.

At-least-once: a job is marked delivered only after the backend accepted it; a crash in between
resends the same message (same Message-ID) after ``Spool.recover``.  Blocking work (SQLite
commits with fsync, reading the image, SMTP) runs in the loop's executor so calls in progress
never wait on delivery.

Every failed attempt is recorded as the server's reply followed by advice on what to change
(``advice.py``).  A dead job (5xx, too big, too old) owes the admin one alert mail
(``delivery.admin``), recorded in the same commit; alerts are retried but never alert about
themselves.  If the spool cannot record an outcome (disk full), the outcome is kept in memory
and written on the next pass; the job stays ``delivering`` meanwhile, which ``recover`` requeues
after a restart (the same Message-ID again: at-least-once).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypedDict

from appliance import localtime
from appliance.config import DeliveryConfig
from appliance.delivery.advice import advise_exception, advise_text, with_advice
from appliance.delivery.alert import render_alert
from appliance.delivery.errors import PermanentDeliveryError, TemporaryDeliveryError
from appliance.delivery.maildir import deliver_maildir
from appliance.delivery.message import render_message
from appliance.delivery.smtp import send_smtp
from appliance.routing.um import is_um_notice
from appliance.spool.store import Job, Spool

log = logging.getLogger("faxbridge.delivery")

#: longest sleep between looks at the queue, so a changed wall clock is noticed
MAX_IDLE = 60.0

#: the job that copies a fax into ``delivery.archive`` (never a mail address: no "@")
ARCHIVE = "maildir:archive"


def send_via_backend(
    cfg: DeliveryConfig, msg: EmailMessage, recipient: str, resolve_path: Callable[[str], Path]
) -> str:
    """Hand one message to the configured backend; the server's acceptance, or a DeliveryError."""
    if cfg.backend == "smtp":
        return send_smtp(cfg, msg, recipient)
    if cfg.backend == "maildir":
        return "maildir " + deliver_maildir(resolve_path(cfg.url), msg)
    if cfg.backend == "direct":
        from appliance.delivery.direct import send_direct

        return send_direct(cfg, msg, recipient)
    if cfg.backend == "graph":
        from appliance.delivery.graph import send_graph

        return send_graph(cfg, msg, recipient)
    raise PermanentDeliveryError(f"unknown delivery backend {cfg.backend!r}")


def backoff(cfg: DeliveryConfig, attempts: int, rng: random.Random) -> float:
    """Delay before the next try after ``attempts`` failures: doubling, capped, +-20 % jitter."""
    base = min(cfg.retry_max, cfg.retry_initial * 2 ** max(attempts - 1, 0))
    return base * rng.uniform(0.8, 1.2)


class DeliveryWorker:
    def __init__(
        self,
        spool: Spool,
        cfg: DeliveryConfig,
        *,
        clock: Callable[[], float] = time.time,
        resolve_path: Callable[[str], Path] = lambda p: Path(p),
        rng: random.Random | None = None,
        refusal: Callable[[str], str | None] = lambda addr: None,
        zone: Callable[[], localtime.Zone] = lambda: None,
    ):
        self.spool = spool
        #: the owner's time zone (system.timezone) for the times a mail shows, asked per message
        #: so a reload applies at the next one
        self.zone = zone
        #: why an address may not get a fax (routing.accepted_domains), checked again before each
        #: send: a job queued by an older version or a stale resend never leaves the box
        self.refusal = refusal
        self.cfg = cfg
        self.clock = clock
        self.resolve_path = resolve_path
        self.rng = rng if rng is not None else random.Random()  # the jitter of the backoff; a test passes a seeded one
        # made in run(): an Event belongs to the loop that first waits on it
        self._wake: asyncio.Event | None = None
        self._woken = False
        self._stopping = False
        #: outcomes the spool could not record yet (disk full): written first on the next pass
        self._unrecorded: list[functools.partial[Any]] = []

    def wake(self) -> None:
        """New jobs were added: look at the queue now (call from the event loop's thread)."""
        self._woken = True
        if self._wake is not None:
            self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def status(self) -> QueueStatus:
        """Whether it runs, and outcomes it could not record yet (the spool could not write)."""
        return QueueStatus(running=self._wake is not None and not self._stopping, unrecorded=len(self._unrecorded))

    async def run(self) -> None:
        """Deliver until stop(); sleeps until the next job is due or wake() is called."""
        self._wake = asyncio.Event()
        if self._woken:
            self._wake.set()
        while not self._stopping:
            try:
                await self.run_once()
            except Exception:  # a bug or a broken database must not end delivery for good
                log.exception("delivery pass failed")
            if self._stopping:
                break
            try:
                dues = [
                    d
                    for d in (await self._io(self.spool.next_due), await self._io(self.spool.next_alert_due))
                    if d is not None
                ]
            except (OSError, sqlite3.Error):
                dues = []
            due = min(dues) if dues else None
            timeout = MAX_IDLE if due is None else min(MAX_IDLE, max(0.0, due - self.clock()))
            if self._unrecorded:
                timeout = min(timeout, self.cfg.retry_initial)
            if timeout > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
            self._wake.clear()
            self._woken = False

    async def run_once(self, limit: int = 10) -> int:
        """Deliver every job due now; return how many were attempted."""
        done = 0
        if not await self._flush_unrecorded():
            return 0  # the spool cannot write: claiming more jobs would only strand them
        while not self._stopping:
            jobs = await self._io(self.spool.claim_due_jobs, self.clock(), limit)
            if not jobs:
                break
            for i, job in enumerate(jobs):
                if self._stopping:
                    await self._io(self.spool.release_jobs, [j.id for j in jobs[i:]])
                    break
                try:
                    await self.deliver(job)
                except Exception as e:  # a bug must not strand this job and the rest in 'delivering'
                    log.exception("job %s to %s: delivery failed unexpectedly", job.id, job.recipient)
                    await self._retry(job, f"internal error ({type(e).__name__}: {str(e)[:200]}); see the log")
                done += 1
        await self.send_alerts()
        return done

    async def deliver(self, job: Job) -> None:
        """One attempt for one claimed job; every outcome is recorded in the spool."""
        now = self.clock()
        fax = await self._io(self.spool.get_fax, job.fax_id)
        if fax is None:
            await self._dead(job, f"fax {job.fax_id} is missing from the spool")
            return
        # a job queued after the call ended (a deliberate resend) counts from then, not from the call
        queued_later = job.created > (fax.finished or fax.created)
        age = now - (job.created if queued_later else fax.created)
        if age > self.cfg.max_age:
            last = f"; last error: {job.last_error}" if job.last_error else ""
            await self._dead(job, f"gave up after {age / 3600:.0f} h and {job.attempts} attempt(s){last}")
            return
        path = self.spool.image_path(fax)
        try:
            image = await self._io(path.read_bytes) if path else b""
        except OSError as e:
            image, missing = b"", e.strerror
        else:
            missing = "empty file" if path else "no image recorded"
        if not image and is_um_notice(fax):
            pass  # a UM missed-call notice: the one message that has no image
        elif not image:
            log.error(
                "fax %s: image %s unusable (%s): job %s to %s is dead", fax.id, path, missing, job.id, job.recipient
            )
            await self._dead(job, f"fax image missing: {fax.image or '-'} ({missing})")
            return
        archive = job.recipient == ARCHIVE
        if archive and not self.cfg.archive:
            await self._record(self.spool.job_delivered, job.id, self.clock(), "archive switched off: not kept")
            return
        refused = None if archive else self.refusal(job.recipient)
        if refused:
            await self._dead(job, f"not sent: {refused}")
            return
        to = job.recipient
        if archive:  # the archived copy reads as the mail the recipients got
            others = [j.recipient for j in await self._io(self.spool.jobs_for, fax.id) if j.recipient != ARCHIVE]
            to = ", ".join(others) or self.cfg.from_
        # rendering (base64, header folding) is pure Python: off the loop, where RTP runs
        msg = await self._io(
            functools.partial(
                render_message,
                fax,
                to,
                from_addr=self.cfg.from_,
                image=image,
                message_id=job.message_id,
                now=now,
                tz=self.zone(),
            )
        )
        size = await self._io(lambda: len(msg.as_bytes()))
        if size > self.cfg.max_message_bytes and not archive:  # a limit of the mail servers, not ours
            await self._dead(
                job,
                with_advice(
                    f"message is {size} bytes, over delivery.max_message_bytes ({self.cfg.max_message_bytes})",
                    advise_text("552 5.3.4 message size exceeds fixed maximum message size"),
                ),
            )
            return
        # The backend decides temporary vs permanent from the reply's class; the advice says what
        # to change.  A 4xx the advice calls permanent (e.g. 4.7.66) keeps retrying until max_age,
        # so fixing the setting is enough: nothing has to be resent by hand.
        try:
            if archive:
                reply = "archive " + await self._io(deliver_maildir, self.resolve_path(self.cfg.archive), msg)
            else:
                reply = await self._io(self._send, msg, job.recipient)
        except PermanentDeliveryError as e:
            await self._dead(job, with_advice(str(e), advise_text(str(e))))
        except TemporaryDeliveryError as e:
            await self._retry(job, with_advice(str(e), advise_text(str(e))), getattr(e, "retry_after", None))
        except OSError as e:  # maildir: disk full, permissions; may clear up
            await self._retry(job, with_advice(f"{type(e).__name__}: {e}", advise_exception(e)))
        else:
            log.info("fax %s delivered to %s as %s: %s", fax.id, job.recipient, job.message_id, reply)
            await self._record(self.spool.job_delivered, job.id, self.clock(), reply)

    def _send(self, msg: EmailMessage, recipient: str) -> str:
        return send_via_backend(self.cfg, msg, recipient, self.resolve_path)

    async def _retry(self, job: Job, error: str, retry_after: float | None = None) -> None:
        """Schedule the next attempt: our backoff, but never sooner than the server asked
        (a Graph 429's Retry-After): coming back earlier only earns another refusal."""
        now = self.clock()
        delay = backoff(self.cfg, job.attempts + 1, self.rng)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        log.warning(
            "job %s to %s failed (attempt %d), retrying in %.0f s: %s",
            job.id,
            job.recipient,
            job.attempts + 1,
            delay,
            error,
        )
        await self._record(self.spool.job_retry, job.id, now, error, now + delay)

    async def _dead(self, job: Job, error: str) -> None:
        log.error("job %s to %s is dead: %s", job.id, job.recipient, error)
        await self._record(functools.partial(self.spool.job_dead, alert_to=self.cfg.admin), job.id, self.clock(), error)

    async def _record(self, fn: Callable[..., Any], *args: Any) -> None:
        """Write an outcome; if the spool cannot (disk full), keep it for the next pass."""
        call = functools.partial(fn, *args)
        try:
            await self._io(call)
        except (OSError, sqlite3.Error) as e:
            log.error("cannot record a delivery outcome (%s); keeping it to write later", e)
            self._unrecorded.append(call)

    async def _flush_unrecorded(self) -> bool:
        """Write the outcomes kept in memory; False while the spool still cannot write."""
        while self._unrecorded:
            try:
                await self._io(self._unrecorded[0])
            except (OSError, sqlite3.Error) as e:
                log.warning("spool still cannot record %d outcome(s): %s", len(self._unrecorded), e)
                return False
            self._unrecorded.pop(0)
        return True

    async def send_alerts(self) -> int:
        """Mail the admin about each dead job not yet alerted; return how many were sent."""
        if not self.cfg.admin:
            return 0
        sent = 0
        for alert in await self._io(self.spool.due_alerts, self.clock()):
            job = await self._io(self.spool.get_job, alert["job_id"])
            fax = await self._io(self.spool.get_fax, job.fax_id) if job else None
            if job is None or fax is None:
                await self._io(
                    functools.partial(self.spool.alert_retry, give_up=True),
                    alert["job_id"],
                    "job or fax gone",
                    self.clock(),
                )
                continue
            msg = render_alert(
                fax,
                job,
                job.last_error,
                admin=alert["admin"],
                from_addr=self.cfg.from_,
                now=self.clock(),
                tz=self.zone(),
            )
            try:
                await self._io(self._send, msg, alert["admin"])
            except (TemporaryDeliveryError, PermanentDeliveryError, OSError) as e:
                now = self.clock()
                give_up = now - alert["created"] > self.cfg.max_age
                # logged only: an alert about a failed alert would fail the same way
                log.error(
                    "alert to %s about job %s failed%s: %s",
                    alert["admin"],
                    job.id,
                    " for good" if give_up else ", will retry",
                    e,
                )
                await self._io(
                    functools.partial(self.spool.alert_retry, give_up=give_up),
                    job.id,
                    str(e),
                    now + backoff(self.cfg, alert["attempts"] + 1, self.rng),
                )
            else:
                log.info("alerted %s: fax %s to %s is dead", alert["admin"], fax.id, job.recipient)
                await self._io(self.spool.alert_sent, job.id, self.clock())
                sent += 1
        return sent

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


class QueueStatus(TypedDict):
    running: bool
    unrecorded: int  # delivery outcomes waiting for the spool to take them (disk full)
