"""The one way into the outbound queue: every way in (mail, Graph, web, API, CLI) ends here.

A request names a number and files; the number is normalised and routed first (cheap, and a
forbidden number must not cost a render), then the files are rendered in a child process with
limits (hostile documents cannot harm the daemon), then the pages are queued durably. Any
refusal is a `SubmitRefused` whose text is meant for the sender, unchanged.

Files arrive in a staging directory: `<spool>/outbound-staging/<token>/` holding `1`, `2`, ...
and `names.json` (the names the sender gave, for messages only; never used as paths). The web
process and the CLI write there; the daemon reads and removes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import localtime
from appliance.config import Config
from appliance.outbound.numbers import NumberRefused, normalise
from appliance.outbound.render import Cover, RenderRefused
from appliance.outbound.renderjob import render_in_child
from appliance.outbound.routes import RouteChoice, choose_route
from appliance.outbound.staging import MAX_FILES, SubmitRefused
from appliance.spool.outbound import OutboundQueue, OutJob

log = logging.getLogger("faxbridge.outbound")

SOURCES = ("mail", "graph", "web", "api", "cli")


@dataclass
class SubmitRequest:
    number: str
    #: (name the sender gave, file) in the order the pages go out
    files: list[tuple[str, Path]] = field(default_factory=list)
    #: who gets the report: a mail address, or a web user's name ("" = no report mail)
    sender: str = ""
    source: str = "api"
    subject: str = ""
    cover: Cover | None = None
    body_text: str = ""
    #: fine (204x196) or standard (204x98); None: the configured outbound.resolution
    fine: bool | None = None
    #: facts a way in needs to find the job again (the Graph message id), stored with the job
    meta: dict[str, Any] = field(default_factory=dict)


def cover_from(data: object) -> Cover | None:
    """A cover page from a JSON object of from/to/subject/note strings; None when all are empty."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise SubmitRefused("the cover page must be an object with from, to, subject and note")
    values = {}
    for key, limit in (("from", 200), ("to", 200), ("subject", 200), ("note", 4000)):
        v = data.get(key, "")
        if not isinstance(v, str):
            raise SubmitRefused(f"cover {key} must be text")
        if len(v) > limit:
            raise SubmitRefused(f"cover {key} is longer than {limit} characters")
        values[key] = v
    if not any(values.values()):
        return None
    return Cover(from_=values["from"], to=values["to"], subject=values["subject"], note=values["note"])


def plan(cfg: Config, number: str) -> RouteChoice:
    """Normalise and route; SubmitRefused with the reason."""
    if not cfg.outbound.enabled:
        raise SubmitRefused("sending faxes is switched off on this fax box ([outbound] enabled = false)")
    try:
        return choose_route(normalise(number, cfg.outbound), cfg.outbound)
    except NumberRefused as e:
        raise SubmitRefused(str(e)) from e


async def render(cfg: Config, req: SubmitRequest, out: Path) -> int:
    """Render the request's pages into ``out`` (a fax TIFF) off the loop; the page count."""
    ob = cfg.outbound
    if not req.files and not req.body_text.strip() and req.cover is None:
        raise SubmitRefused("there is nothing to send: attach a PDF, TIFF, PNG or JPEG file, or write a note")
    if len(req.files) > MAX_FILES:
        raise SubmitRefused(f"at most {MAX_FILES} files can go in one fax")
    total = sum(p.stat().st_size for _, p in req.files)
    if total > ob.max_bytes:
        raise SubmitRefused(f"the files are {total:,} bytes together; this fax box takes at most {ob.max_bytes:,}")
    cover = req.cover
    if cover is not None and not cover.date:  # the owner's zone, not the child's
        zone = localtime.zone(cfg.system.timezone)
        cover = dataclasses.replace(cover, date=localtime.format_time(time.time(), zone, "%Y-%m-%d %H:%M"))
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(
            None,
            lambda: render_in_child(
                [p for _, p in req.files],
                [n for n, _ in req.files],
                out,
                fine=req.fine if req.fine is not None else ob.resolution == "fine",
                cover=cover,
                body_text=req.body_text,
                max_pages=ob.max_pages,
                max_bytes=ob.max_bytes,
            ),
        )
    except RenderRefused as e:
        raise SubmitRefused(str(e)) from e


async def submit(
    cfg: Config, queue: OutboundQueue, req: SubmitRequest, *, wake: Callable[[], None] = lambda: None
) -> OutJob:
    """Queue one fax: plan, render, then the queue's durable submit. The caller's files are left
    in place (the caller removes its staging)."""
    if req.source not in SOURCES:
        raise SubmitRefused(f"unknown source {req.source!r}")
    choice = plan(cfg, req.number)
    spool_dir = cfg.path(cfg.spool.dir)
    with tempfile.TemporaryDirectory(prefix="render-", dir=spool_dir) as tmp:
        out = Path(tmp) / "fax.tif"
        pages = await render(cfg, req, out)
        loop = asyncio.get_running_loop()
        job: OutJob = await loop.run_in_executor(
            None,
            lambda: queue.submit(
                out,
                time.time(),
                number=req.number[:64],
                e164=choice.e164,
                route=choice.route.name,
                sender=req.sender[:254],
                source=req.source,
                subject=req.subject[:200],
                pages=pages,
                meta=req.meta,
                report=cfg.outbound.report,
            ),
        )
    log.info(
        "queued fax %s to %s via %s: %d page(s) from %s (%s)",
        job.id,
        choice.e164,
        choice.route.name,
        pages,
        req.source,
        req.sender or "no report",
    )
    wake()
    return job
