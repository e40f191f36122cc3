"""The dead-letter alert: one mail to the administrator when a fax cannot be delivered.

It names the fax (its number, caller, pages, time received in the owner's zone), the recipient
and what to change, and carries no image and nothing from the configuration beyond addresses,
so it can go to a mailbox with wider access than the fax's recipient.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import format_datetime

from appliance import localtime
from appliance.spool.store import FaxRecord, Job

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean_caller(fax: FaxRecord) -> str:
    """Caller number (digits, + and # only) and name without control characters, for a header."""
    number = re.sub(r"[^0-9+#*]", "", fax.caller_number or "")[:32]
    name = " ".join(_CONTROL.sub(" ", fax.caller_name or "").split())[:64]
    ident = " ".join(_CONTROL.sub(" ", fax.remote_ident or "").split())[:32]
    parts = [p for p in (number, f'"{name}"' if name else "", f"TSI {ident}" if ident else "") if p]
    return " ".join(parts) or "unknown caller"


def alert_message_id(fax: FaxRecord, job: Job) -> str:
    """Stable per dead job, so a crash-resend of the alert is recognisably the same mail."""
    return f"<{fax.uid}.job{job.id}.alert@faxbridge>"


def render_alert(
    fax: FaxRecord, job: Job, error: str, *, admin: str, from_addr: str, now: float, tz: localtime.Zone = None
) -> EmailMessage:
    """The alert mail; ``error`` is the job's recorded last error (server reply and advice);
    ``tz`` the owner's zone for the times it shows."""
    received = localtime.format_time(fax.finished or fax.created, tz)
    caller = clean_caller(fax)
    msg = EmailMessage()
    msg["From"] = from_addr
    msg["To"] = admin
    msg["Subject"] = f"Fax {fax.id} from {caller} could not be delivered to {job.recipient}"
    msg["Date"] = format_datetime(localtime.at(now, tz))
    msg["Message-ID"] = alert_message_id(fax, job)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Faxbridge-Alert"] = "dead-letter"
    msg.set_content(
        "A received fax could not be delivered and will not be retried.\n\n"
        f"Fax:        {fax.id}\n"
        f"Caller:     {caller}\n"
        f"Pages:      {fax.pages}\n"
        f"Received:   {received}\n"
        f"Recipient:  {job.recipient}\n"
        f"Attempts:   {job.attempts}\n"
        f"Error:      {_CONTROL.sub(' ', error)}\n\n"
        "The fax is kept in the spool. After fixing the cause, send it again with:\n"
        f"    faxbridge resend {fax.id} --to {job.recipient}\n"
    )
    return msg
