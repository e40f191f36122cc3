"""Sending, as the daemon runs it: the queue, the worker, the ways in (mail listener, Graph
watch) and the control commands the web process and the CLI use.

The control commands take files only through a staging directory in the spool (see submit.py):
the control socket carries small JSON lines, never documents.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.config import Config, OutboundRouteConfig
from appliance.control import BadRequest
from appliance.delivery.queue import send_via_backend
from appliance.outbound.mailparse import MailFax
from appliance.outbound.outcome import Outcome, Result
from appliance.outbound.render import Cover
from appliance.outbound.report import report_lines, words
from appliance.outbound.staging import (
    SubmitRefused,
    purge_stale_staging,
    remove_staging,
    staged_files,
    staging_root,
)
from appliance.outbound.submit import SubmitRequest, cover_from, plan, render, submit
from appliance.outbound.worker import OutboundWorker, Progress
from appliance.spool.outbound import OutAttempt, OutboundQueue, OutJob
from appliance.spool.store import Spool

log = logging.getLogger("faxbridge.outbound")

#: one attempt (SIP or modem), ringing included: 50 pages at 9600 bit/s fit well
SIP_ATTEMPT_LIMIT = 3000.0
#: a preview renders at most this many pages as pictures (the count is still exact)
PREVIEW_PAGES = 50


class OutboundService:
    def __init__(self, cfg: Callable[[], Config], spool: Spool, modems: Callable[[], Any] = lambda: None) -> None:
        self.cfg = cfg
        self.queue = OutboundQueue(spool)
        self.modems = modems
        self.worker = OutboundWorker(cfg, self.queue, self._dispatch, self._send_mail)
        self.listener: Any = None
        self.watcher: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        recovered = await loop.run_in_executor(None, self.queue.recover, time.time())
        if recovered:
            log.info("outbound: %d job(s) recovered after a restart", len(recovered))
        await loop.run_in_executor(None, purge_stale_staging, staging_root(self.cfg()), time.time())
        self._spawn(self.worker.run())
        ob = self.cfg().outbound
        if ob.enabled and ob.smtp_listen:
            from appliance.outbound.mailin import MailInListener

            listener = MailInListener(self.cfg(), self._submit_mail)
            try:
                await listener.start()
            except OSError as e:  # a port in use must not stop the box receiving faxes
                log.error("mail to fax is not available: cannot listen on %s: %s", ob.smtp_listen, e)
                await listener.stop()
            else:
                self.listener = listener
        if ob.enabled and ob.graph_mailbox:
            from appliance.outbound.graphwatch import GraphWatcher

            self.watcher = GraphWatcher(self.cfg(), self._submit_mail)
            self._spawn(self.watcher.run())

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        self.worker.stop()
        for task in list(self._tasks):
            try:
                await asyncio.wait_for(asyncio.shield(task), 10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:  # noqa: BLE001 - logged by its done callback
                pass

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("outbound task failed: %r", task.exception())

    async def submit(self, req: SubmitRequest) -> OutJob:
        return await submit(self.cfg(), self.queue, req, wake=self.worker.wake)

    async def _submit_mail(self, fax: MailFax, sender: str) -> str:
        """The mail ways in (SMTP listener, Graph watch) hand one number's fax here; the job's uid.
        A refusal is a ValueError (SubmitRefused) whose words go back to the sender."""
        loop = asyncio.get_running_loop()
        key = fax.meta.get("idempotency_key", "")
        if key:
            seen = await loop.run_in_executor(None, self.queue.get_by_idempotency_key, key)
            if seen is not None:
                return seen.uid
        from appliance.outbound.mailin import stage_attachments  # aiosmtpd only where mail comes in

        cfg = self.cfg()
        with tempfile.TemporaryDirectory(prefix="mail-", dir=cfg.path(cfg.spool.dir)) as tmp:
            files = await loop.run_in_executor(None, stage_attachments, fax, Path(tmp) / "files")
            cover = (
                Cover(from_=sender, to=fax.number, subject=fax.subject, note=fax.cover_note) if fax.cover_note else None
            )
            source = fax.meta.get("source", "mail")
            req = SubmitRequest(
                fax.number,
                files,
                sender,
                source if source in ("mail", "graph") else "mail",
                fax.subject,
                cover,
                fax.body_text,
                meta=dict(fax.meta),
            )
            job = await self.submit(req)
        return job.uid

    # -- the ways out ------------------------------------------------------------------------------
    async def _dispatch(
        self,
        job: OutJob,
        route: OutboundRouteConfig,
        digits: str,
        tiff: Path,
        progress: Progress,
        cancel: asyncio.Event,
    ) -> Outcome:
        cfg = self.cfg()
        ident = cfg.outbound.ident or cfg.fax.ident
        if route.via.startswith("sip:"):
            from appliance.outbound.sip_send import credentials_for, send_over_sip

            target = route.sip_uri(digits)
            return await send_over_sip(
                target,
                tiff,
                ident=ident,
                t38=route.t38,
                caller=cfg.outbound.name,
                local_ip=None,
                credentials=credentials_for(target, cfg.sip.registrations),
                on_connected=progress.connected,
                on_page=progress.page,
                cancel=cancel,
                timeout=SIP_ATTEMPT_LIMIT,
            )
        if route.via.startswith("modem:"):
            from appliance.outbound.modem_send import send_over_modem

            manager = self.modems()
            if manager is None:
                return Outcome(Result.NO_ROUTE, "no modem line is configured", pages_total=job.pages)
            return await send_over_modem(
                manager,
                route.via,
                digits,
                tiff,
                ident=ident,
                ecm=cfg.modem.ecm,
                on_connected=progress.connected,
                on_page=progress.page,
                cancel=cancel,
                timeout=SIP_ATTEMPT_LIMIT,
            )
        return Outcome(Result.NO_ROUTE, f"route {route.name}: {route.via!r} is neither sip: nor modem:")

    def _send_mail(self, msg: Any, recipient: str) -> str:
        cfg = self.cfg()
        return send_via_backend(cfg.delivery, msg, recipient, cfg.path)

    # -- control commands ------------------------------------------------------------------------
    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "outbound-preview": self.cmd_preview,
            "outbound-submit": self.cmd_submit,
            "outbound-list": self.cmd_list,
            "outbound-get": self.cmd_get,
            "outbound-cancel": self.cmd_cancel,
        }

    def _request(self, req: dict[str, Any]) -> SubmitRequest:
        cfg = self.cfg()
        number = req.get("number")
        if not isinstance(number, str) or not number.strip():
            raise BadRequest("give the fax number to send to")
        try:
            files = staged_files(cfg, req.get("staging"))
            cover = cover_from(req.get("cover"))
        except SubmitRefused as e:
            raise BadRequest(str(e)) from e
        fields = {}
        for key, limit in (("sender", 254), ("subject", 200), ("body_text", 20000)):
            v = req.get(key, "")
            if not isinstance(v, str) or len(v) > limit:
                raise BadRequest(f"{key} must be text of at most {limit} characters")
            fields[key] = v
        source = req.get("source", "api")
        if source not in ("web", "api", "cli"):
            raise BadRequest("source must be web, api or cli")
        fine = req.get("fine")
        if fine is not None and not isinstance(fine, bool):
            raise BadRequest("fine must be true or false")
        return SubmitRequest(
            number.strip(),
            files,
            fields["sender"],
            source,
            fields["subject"],
            cover,
            fields["body_text"],
            fine=fine,
        )

    async def cmd_preview(self, req: dict[str, Any]) -> dict[str, Any]:
        """Render what would be sent into the staging directory's preview/ (page-N.png)."""
        cfg = self.cfg()
        request = self._request(req)
        try:
            choice = plan(cfg, request.number)
            where = staging_root(cfg) / str(req["staging"])
            tiff = where / "preview.tif"
            pages = await render(cfg, request, tiff)
        except SubmitRefused as e:
            return {"ok": False, "error": str(e)}
        from appliance.outbound.render import preview_png

        out = where / "preview"
        loop = asyncio.get_running_loop()

        def pictures() -> None:
            out.mkdir(exist_ok=True)
            for n in range(1, min(pages, PREVIEW_PAGES) + 1):
                (out / f"page-{n}.png").write_bytes(preview_png(tiff, n, 600))

        await loop.run_in_executor(None, pictures)
        return {"pages": pages, "e164": choice.e164, "route": choice.route.name, "preview": f"{req['staging']}/preview"}

    async def cmd_submit(self, req: dict[str, Any]) -> dict[str, Any]:
        request = self._request(req)
        try:
            job = await self.submit(request)
        except SubmitRefused as e:
            return {"ok": False, "error": str(e)}
        remove_staging(self.cfg(), str(req["staging"]))
        return {"id": job.id, "uid": job.uid, "job": job_dict(job)}

    async def cmd_list(self, req: dict[str, Any]) -> dict[str, Any]:
        limit = req.get("limit", 100)
        if not isinstance(limit, int) or not 1 <= limit <= 500:
            raise BadRequest("limit must be a number from 1 to 500")
        jobs = await asyncio.get_running_loop().run_in_executor(None, functools.partial(self.queue.list, limit=limit))
        return {"jobs": [job_dict(j) for j in jobs]}

    async def cmd_get(self, req: dict[str, Any]) -> dict[str, Any]:
        job = await self._job(req)
        loop = asyncio.get_running_loop()
        attempts = await loop.run_in_executor(None, self.queue.attempts, job.id)
        zone = None
        try:
            from appliance import localtime

            zone = localtime.zone(self.cfg().system.timezone)
        except Exception:  # noqa: BLE001 - the report rows in the system's zone then
            pass
        return {
            "job": {
                **job_dict(job),
                "attempts": [attempt_dict(a) for a in attempts],
                "report": [list(r) for r in report_lines(job, attempts, zone)],
                "trace": list(attempts[-1].trace) if attempts else [],
            }
        }

    async def cmd_cancel(self, req: dict[str, Any]) -> dict[str, Any]:
        job = await self._job(req)
        try:
            job = await self.worker.cancel(job.id)
        except ValueError as e:  # the queue refuses to cancel a finished job, in words
            return {"ok": False, "error": str(e)}
        return {"job": job_dict(job)}

    async def _job(self, req: dict[str, Any]) -> OutJob:
        job_id = req.get("id")
        if not isinstance(job_id, int) or isinstance(job_id, bool) or job_id < 1:
            raise BadRequest('give "id", the number of a sent fax')
        job = await asyncio.get_running_loop().run_in_executor(None, self.queue.get, job_id)
        if job is None:
            raise BadRequest(f"there is no outgoing fax {job_id}")
        return job


def sentence(text: str) -> str:
    """The report's words as a page shows them on their own: a capital first letter."""
    return text[:1].upper() + text[1:]


def job_dict(job: OutJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "uid": job.uid,
        "number": job.number,
        "e164": job.e164,
        "route": job.route,
        "state": str(job.state),
        "created": job.created,
        "next_attempt": job.next_attempt,
        "attempts": job.attempts,
        "pages": job.pages,
        "pages_confirmed": job.pages_confirmed,
        "last_result": job.last_result,
        "last_words": sentence(words(job.last_result)) if job.last_result else "",
        "last_detail": job.last_detail,
        "remote_ident": job.remote_ident,
        "finished": job.finished,
        "source": job.source,
        "sender": job.sender,
        "subject": job.subject,
        "cancel_requested": job.cancel_requested,
        "resent_after_unknown": job.resent_after_unknown,
    }


def attempt_dict(a: OutAttempt) -> dict[str, Any]:
    keys = (
        "started",
        "connected",
        "finished",
        "result",
        "detail",
        "pages_confirmed",
        "remote_ident",
        "bit_rate",
        "duration",
        "way",
    )
    out = {k: getattr(a, k) for k in keys}
    out["words"] = sentence(words(out["result"])) if out["result"] else "In progress"
    return out
