"""The report back to whoever sent a fax: did it arrive, in plain words, with the facts a fax
user looks for (far end's CSI, pages confirmed, duration, rate) and the first page as a thumbnail.

Everything in it that came from the line (the far end's CSI) or from the sender (the subject) is
cleaned to printable text of bounded length before it reaches a header or the HTML part.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from appliance import localtime
from appliance.outbound.outcome import WORDS, Result
from appliance.spool.outbound import OutAttempt, OutJob

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean(value: object, limit: int = 80) -> str:
    return " ".join(_CONTROL.sub(" ", str(value or "")).split())[:limit]


def wants_report(job: OutJob) -> bool:
    """Whether the report the queue owes goes out as a mail: only to a mail address (a web user
    or the CLI reads it on the page or the terminal). The owner's policy (always, failure,
    never) was applied by the queue when the job was submitted."""
    return "@" in job.sender


def words(result: str) -> str:
    try:
        return WORDS[Result(result)]
    except ValueError:
        return clean(result)


def report_lines(job: OutJob, attempts: Sequence[OutAttempt], tz: localtime.Zone) -> list[tuple[str, str]]:
    """(label, value) rows of the report, shared by the plain and the HTML part and the web page."""
    rows = [
        ("To", clean(job.e164, 32)),
        ("Result", words(job.last_result)),
    ]
    if job.last_detail:
        rows.append(("Detail", clean(job.last_detail, 200)))
    rows.append(("Pages", f"{job.pages_confirmed} of {job.pages} confirmed by the receiving machine"))
    if job.remote_ident:
        rows.append(("Receiver", clean(job.remote_ident, 20)))
    last = attempts[-1] if attempts else None
    if last is not None:
        if last.duration:
            rows.append(("Duration", f"{last.duration:.0f} s"))
        if last.bit_rate:
            rows.append(("Rate", f"{last.bit_rate} bit/s" + (" with ECM" if last.ecm else "")))
        if last.way:
            rows.append(("Sent over", clean(last.way, 60)))
    rows.append(("Attempts", str(len(attempts))))
    rows.append(("Queued", localtime.format_time(job.created, tz)))
    if job.finished:
        rows.append(("Finished", localtime.format_time(job.finished, tz)))
    if getattr(job, "resent_after_unknown", False):
        rows.append(
            (
                "Note",
                "the fax box restarted during an earlier attempt after the receiver had answered; "
                "the fax was sent again, so the receiver may have part of it twice",
            )
        )
    return rows


def subject(job: OutJob) -> str:
    to = clean(job.e164, 32)
    if job.last_result == Result.SENT:
        return f"Fax to {to} sent ({job.pages} page{'s' if job.pages != 1 else ''})"
    if job.last_result == Result.CANCELLED:
        return f"Fax to {to} cancelled"
    return f"Fax to {to} failed: {words(job.last_result)}"


def render_report(
    job: OutJob,
    attempts: Sequence[OutAttempt],
    *,
    from_addr: str,
    tiff: Path | None,
    now: float,
    tz: localtime.Zone = None,
) -> EmailMessage:
    """The report mail to ``job.sender``: plain text and HTML, the first page inline as PNG."""
    rows = report_lines(job, attempts, tz)
    msg = EmailMessage()
    msg["From"] = from_addr
    msg["To"] = job.sender
    msg["Subject"] = subject(job)
    msg["Date"] = format_datetime(localtime.at(now, tz))
    msg["Message-ID"] = f"<{job.uid}.report@faxbridge>"
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Faxbridge-Report"] = clean(job.last_result, 20)
    if job.subject:
        msg["X-Faxbridge-Original-Subject"] = clean(job.subject, 200)
    width = max(len(k) for k, _ in rows) + 2
    plain = "\n".join(f"{k + ':':<{width}}{v}" for k, v in rows)
    msg.set_content(f"{subject(job)}.\n\n{plain}\n")
    thumb = _thumbnail(tiff)
    table = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    img = "<p><img src='cid:page1' alt='first page' width='300'></p>" if thumb else ""
    msg.add_alternative(
        f"<html><body><p><b>{html.escape(subject(job))}.</b></p><table>{table}</table>{img}</body></html>",
        subtype="html",
    )
    html_part = msg.get_body(("html",))
    if thumb and html_part is not None:
        html_part.add_related(thumb, "image", "png", cid="<page1>", filename="page1.png")
    return msg


def _thumbnail(tiff: Path | None) -> bytes | None:
    if tiff is None:
        return None
    try:
        from appliance.outbound.render import preview_png

        return preview_png(tiff, 1, 300)
    except Exception:  # noqa: BLE001 - a report goes out without its picture rather than not at all
        return None
