"""Render one received fax as the email a mailbox gets.

Everything the far end or the network sent us (TSI, caller name and number, called number) is
untrusted: control characters never reach a header, the HTML body escapes it, and the attachment
name is built from our own clock and uid only.  Headers are encoded per RFC 2047 by the email
package (policy ``utf8=False``), so the message is 7-bit clean for any SMTP server.
"""

from __future__ import annotations

import html
import re
import time
import unicodedata
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from appliance.spool.store import FaxRecord

#: RFC 5322 with CRLF, RFC 2047 for non-ASCII headers, 78-column folding
POLICY = policy.SMTP.clone(utf8=False, max_line_length=78)

_HEADER_MAX = 120


def clean_text(value: object, limit: int = _HEADER_MAX) -> str:
    """One line of printable text: controls (CR, LF, NUL, ESC, bidi overrides...) become spaces."""
    s = "".join(" " if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in str(value))
    s = re.sub(r"\s+", " ", s).strip()
    return s if len(s) <= limit else s[: limit - 1] + "…"


def caller_label(fax: FaxRecord) -> str:
    return clean_text(fax.caller_number or fax.remote_ident or "", 60) or "unknown caller"


def subject(fax: FaxRecord) -> str:
    n = f"{fax.pages} page" if fax.pages == 1 else f"{fax.pages} pages"
    if fax.complete:
        return f"Fax from {caller_label(fax)} ({n})"
    return f"Incomplete fax from {caller_label(fax)} ({n} received)"


def attachment_name(fax: FaxRecord) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(fax.created))
    uid = re.sub(r"[^0-9a-f]", "", fax.uid.lower())[:32] or "fax"
    return f"fax-{stamp}-{uid}.tif"


def _facts(fax: FaxRecord) -> list[tuple[str, str]]:
    received = fax.finished or fax.created
    rows = [
        ("Caller number", fax.caller_number),
        ("Caller name", fax.caller_name),
        ("Called number", fax.called_number),
        ("Sender ident (TSI)", fax.remote_ident),
        ("Pages", str(fax.pages)),
        ("Bad rows", str(fax.bad_rows)),
        ("Rate", f"{fax.bit_rate} bit/s" if fax.bit_rate else ""),
        ("ECM", "yes" if fax.ecm else "no"),
        ("Resolution", fax.resolution),
        ("Duration", f"{fax.duration:.0f} s" if fax.duration else ""),
        ("Result", fax.result_text),
        ("Received", time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(received))),
    ]
    return [(k, clean_text(v, 200) or "-") for k, v in rows]


def _warning(fax: FaxRecord) -> str:
    if fax.complete:
        return ""
    return (f"INCOMPLETE FAX: the call ended before the fax was finished. "
            f"Only {fax.pages} page(s) were received.")


def _plain(fax: FaxRecord) -> str:
    width = max(len(k) for k, _ in _facts(fax))
    lines = [_warning(fax), ""] if not fax.complete else []
    lines.append(f"{subject(fax)}. The fax is attached as a TIFF image.")
    lines.append("")
    lines += [f"{k + ':':<{width + 1}} {v}" for k, v in _facts(fax)]
    return "\n".join(lines) + "\n"


def _html(fax: FaxRecord) -> str:
    e = html.escape
    rows = "\n".join(f"<tr><th align=\"left\">{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _facts(fax))
    warning = ""
    if not fax.complete:
        warning = (f"<p style=\"color:#b00020;font-weight:bold;border:2px solid #b00020;padding:8px\">"
                   f"{e(_warning(fax))}</p>\n")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(subject(fax))}</title></head>"
            f"<body>\n{warning}<p>{e(subject(fax))}. The fax is attached as a TIFF image.</p>\n"
            f"<table>\n{rows}\n</table>\n</body></html>\n")


def render_message(fax: FaxRecord, recipient: str, *, from_addr: str, image: bytes, message_id: str,
                   now: float | None = None) -> EmailMessage:
    """The fax as an RFC 3965-style mail with exactly one image/tiff attachment.

    Raises ValueError for an empty image: a "fax received" mail without the fax would be worse
    than a delivery that waits.
    """
    if not image:
        raise ValueError(f"fax {fax.uid}: refusing to render a message without the image")
    when = fax.created or (now if now is not None else time.time())
    msg = EmailMessage(policy=POLICY)
    msg["From"] = clean_text(from_addr, 254)
    msg["To"] = clean_text(recipient, 254)
    msg["Date"] = format_datetime(datetime.fromtimestamp(when).astimezone())
    msg["Message-ID"] = clean_text(message_id, 254)
    msg["Subject"] = subject(fax)
    msg["X-FaxNumberOfPages"] = str(int(fax.pages))
    if clean_text(fax.caller_number):
        msg["X-CallingTelephoneNumber"] = clean_text(fax.caller_number, 60)
    msg.set_content(_plain(fax), cte="quoted-printable")
    msg.add_alternative(_html(fax), subtype="html", cte="quoted-printable")
    msg.add_attachment(image, maintype="image", subtype="tiff", filename=attachment_name(fax),
                       params={"application": "faxbw"})
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]
    # after the body: set_content() drops every Content-* header, this one included
    msg["Content-Class"] = "fax-ca"
    return msg
