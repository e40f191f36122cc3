"""Render one received fax as the email a mailbox gets.

Everything the far end or the network sent us (TSI, caller name and number, called number) is
untrusted: control characters never reach a header, the HTML body escapes it, and the attachment
name is built from our own clock and the fax's number only.  Headers are encoded per RFC 2047 by
the email package (policy ``utf8=False``), so the message is 7-bit clean for any SMTP server.
Times are in the owner's zone, named (``appliance.localtime``).
"""

from __future__ import annotations

import html
import logging
import re
import string
import time
import unicodedata
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import cast

from appliance import localtime
from appliance.delivery import tiff_profiles
from appliance.fax.pagelimits import PAGE_TOO_LARGE
from appliance.fax.t30codes import CALL_DROPPED as T30_CALL_DROPPED
from appliance.fax.t30codes import OK as T30_OK
from appliance.routing.um import is_um_notice, referral
from appliance.spool.store import FaxRecord

log = logging.getLogger("faxbridge.delivery")

#: RFC 5322 with CRLF, RFC 2047 for non-ASCII headers, 78-column folding
POLICY = policy.SMTP.clone(utf8=False, max_line_length=78)

#: UM partner mode: the context header is one base64 token that must not be folded
UM_POLICY = POLICY.clone(max_line_length=998)

_HEADER_MAX = 120


def clean_text(value: object, limit: int = _HEADER_MAX) -> str:
    """One line of printable text: controls (CR, LF, NUL, ESC, bidi overrides...) become spaces."""
    s = "".join(" " if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in str(value))
    s = re.sub(r"\s+", " ", s).strip()
    return s if len(s) <= limit else s[: limit - 1] + "…"


def caller_label(fax: FaxRecord) -> str:
    return clean_text(fax.caller_number or fax.remote_ident or "", 60) or "unknown caller"


def route(fax: FaxRecord) -> dict:
    """The routing rule's delivery choices (fax.extra["route"]), each key defaulted."""
    r = fax.extra.get("route") if isinstance(fax.extra, dict) else None
    r = r if isinstance(r, dict) else {}
    fmt = r.get("format") if r.get("format") in ("tiff", "pdf", "both") else "tiff"
    flavour = r.get("tiff") if r.get("tiff") in ("tiff-f", "profile-s") else "tiff-f"
    return {
        "to": _addresses(r.get("to")),
        "cc": _addresses(r.get("cc")),
        "format": fmt,
        "tiff": flavour,
        "subject": r.get("subject") if isinstance(r.get("subject"), str) else "",
    }


_ADDR = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")


def _addresses(value: object) -> list[str]:
    """Plain addr-specs only: anything with a display name, comma or control character is dropped."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return []
    out = []
    for a in value:
        a = clean_text(a, 254)
        if _ADDR.match(a):
            out.append(a)
        elif a:
            log.warning("route address %r is not a plain address: left out", a)
    return out


def um_status(fax: FaxRecord) -> str:
    """X-MS-Exchange-UM-PartnerStatus: 2.0 complete, 2.6 incomplete; for a call without a page,
    2.4 (cancelled: the caller hung up or never sent a fax) or 5.0 (the fax session failed).
    Exchange turns both of the last two into a missed-call notice in the mailbox."""
    if fax.pages > 0:
        return "2.0" if fax.complete else "2.6"
    return "2.4" if fax.result_code in (T30_OK, T30_CALL_DROPPED) else "5.0"


def refused_pages(fax: FaxRecord) -> list[str]:
    """Why each page the spool refused for its size was left out (``extra["refused_pages"]``)."""
    listed = fax.extra.get("refused_pages") if isinstance(fax.extra, dict) else None
    if not isinstance(listed, list):
        return []
    return [
        clean_text(r.get("reason") or f"page {r.get('page')} is larger than a fax page can be", 300)
        for r in listed
        if isinstance(r, dict)
    ]


def _default_subject(fax: FaxRecord) -> str:
    refused = len(refused_pages(fax))
    if refused and fax.pages <= 0:
        return f"Refused fax from {caller_label(fax)} ({refused} page{'s' if refused > 1 else ''} too large)"
    if fax.pages <= 0:
        return f"Missed fax call from {caller_label(fax)}"
    n = f"{fax.pages} page" if fax.pages == 1 else f"{fax.pages} pages"
    if refused:
        return f"Incomplete fax from {caller_label(fax)} ({n}, {refused} refused as too large)"
    if fax.complete:
        return f"Fax from {caller_label(fax)} ({n})"
    return f"Incomplete fax from {caller_label(fax)} ({n} received)"


_PLACEHOLDERS = ("caller", "called", "tsi", "pages", "line", "date")


def _fill(template: str, fax: FaxRecord, tz: localtime.Zone) -> str | None:
    """The route's subject template with cleaned values; None if it uses anything but plain names."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return None
    for _, name, spec, conv in fields:
        if name is not None and (name not in _PLACEHOLDERS or spec or conv):
            return None
    values = {
        "caller": caller_label(fax),
        "called": clean_text(fax.called_number, 60),
        "tsi": clean_text(fax.remote_ident, 60),
        "pages": str(int(fax.pages)),
        "line": clean_text(fax.line, 60),
        "date": localtime.format_time(fax.finished or fax.created, tz, localtime.MINUTES),
    }
    return "".join(lit + (values[name] if name is not None else "") for lit, name, _, _ in fields)


def subject(fax: FaxRecord, tz: localtime.Zone = None) -> str:
    """From the route's template when it has one, else the built-in; incomplete faxes say so.
    A ``{date}`` in the template is in ``tz``, the owner's zone, named."""
    template = route(fax)["subject"]
    filled = _fill(template, fax, tz) if template else None
    if template and filled is None:
        log.warning("fax %s: subject template %r unusable: default subject", fax.id, template)
    text = clean_text(filled, 200) if filled else ""
    if not text:
        return _default_subject(fax)
    return text if fax.complete else clean_text(f"Incomplete fax ({fax.pages} received): {text}", 200)


def attachment_name(fax: FaxRecord, ext: str = "tif", tz: localtime.Zone = None) -> str:
    """'fax-20261207-150405-12.tif': the time received in the owner's zone and the fax's number
    (built from our own clock and counter only: nothing the caller sent reaches a file name)."""
    number = str(int(fax.id)) if fax.id > 0 else "test"
    return f"fax-{localtime.stamp(fax.created, tz)}-{number}.{ext}"


def attachments(fax: FaxRecord, image: bytes, *, um: bool) -> list[tuple[str, bytes]]:
    """[(kind, bytes)] per the route; kind is "tiff" or "pdf".

    Exchange UM partner mode takes exactly one image/tiff, so the route's PDF is ignored there
    and Profile S is the default.  A conversion that fails falls back to the stored TIFF, unless
    that holds a page refused for its size: such a page never reaches a mailbox, so a fax whose
    every page was refused has no attachment (the mail says why).
    """
    r = route(fax)
    raw_flavour = (fax.extra.get("route") or {}).get("tiff") if isinstance(fax.extra, dict) else None
    flavour = r["tiff"] if not um or raw_flavour in ("tiff-f", "profile-s") else "profile-s"
    fmt = "tiff" if um else r["format"]
    out: list[tuple[str, bytes]] = []
    if fmt in ("tiff", "both"):
        tiff = _convert(fax, image, flavour)
        if tiff is not None:
            out.append(("tiff", tiff))
    if fmt in ("pdf", "both"):
        try:
            out.append(("pdf", tiff_profiles.to_pdf(image)))
        except (ValueError, OSError) as e:
            log.warning("fax %s: no PDF (%s): the TIFF goes instead", fax.id, e)
            if fmt == "pdf" and _raw_is_safe(fax, image):
                out.append(("tiff", image))
    return out


def _convert(fax: FaxRecord, image: bytes, flavour: str) -> bytes | None:
    """The TIFF in the route's flavour; the stored file if that fails and is safe to pass on; else None."""
    try:
        if flavour == "profile-s":
            return tiff_profiles.to_profile_s(image)
        return tiff_profiles.to_tiff_f(image)
    except (ValueError, OSError, RuntimeError) as e:
        if not _raw_is_safe(fax, image):
            log.warning("fax %s: %s conversion failed (%s): no TIFF, the file holds a refused page", fax.id, flavour, e)
            return None
        log.warning("fax %s: %s conversion failed (%s): the stored TIFF goes as received", fax.id, flavour, e)
        return image


def _raw_is_safe(fax: FaxRecord, image: bytes) -> bool:
    """The stored TIFF may go as received: it holds no page refused for its size."""
    return not refused_pages(fax) and not tiff_profiles.oversized_pages(image)


def _facts(fax: FaxRecord, tz: localtime.Zone) -> list[tuple[str, str]]:
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
        ("Received", localtime.format_time(received, tz)),
        # the number the web UI, the CLI and the log use for this fax (decision 0014)
        ("Fax", f"number {int(fax.id)} on the fax appliance" if fax.id > 0 else "a test message"),
    ]
    return [(k, clean_text(v, 200) or "-") for k, v in rows]


def _warning(fax: FaxRecord) -> str:
    refused = refused_pages(fax)
    if refused:
        what = "NO PAGE DELIVERED" if fax.pages <= 0 else "PAGE REFUSED" if len(refused) == 1 else "PAGES REFUSED"
        return (
            f"{what}: {'; '.join(refused[:3])}{'; ...' if len(refused) > 3 else ''}. "
            f"{'It is' if len(refused) == 1 else 'They are'} not attached; the fax as received is "
            f"kept on the fax appliance."
        )
    if fax.pages <= 0:
        return "MISSED FAX CALL: the caller did not send a page."
    if fax.complete:
        return ""
    hangup = fax.extra.get("hangup_reason") if isinstance(fax.extra, dict) else None
    if isinstance(hangup, str) and hangup.startswith(PAGE_TOO_LARGE):
        return (
            f"INCOMPLETE FAX: the fax appliance ended the call: {clean_text(hangup, 300)}. "
            f"Only {fax.pages} page(s) before it were received."
        )
    return f"INCOMPLETE FAX: the call ended before the fax was finished. Only {fax.pages} page(s) were received."


def _attached(fax: FaxRecord, kinds: list[str]) -> str:
    if not kinds and refused_pages(fax):
        return "No page could be delivered, so nothing is attached."
    if not kinds and fax.pages > 0:
        return "The fax image could not be converted, so nothing is attached; it is kept on the fax appliance."
    if not kinds:
        return "No page was received, so nothing is attached."
    names = {"tiff": "a TIFF image", "pdf": "a PDF document"}
    return "The fax is attached as " + " and as ".join(names[k] for k in kinds) + "."


def _plain(fax: FaxRecord, kinds: list[str], tz: localtime.Zone) -> str:
    facts = _facts(fax, tz)
    width = max(len(k) for k, _ in facts)
    lines = [_warning(fax), ""] if _warning(fax) else []
    lines.append(f"{subject(fax, tz)}. {_attached(fax, kinds)}")
    lines.append("")
    lines += [f"{k + ':':<{width + 1}} {v}" for k, v in facts]
    return "\n".join(lines) + "\n"


def _html(fax: FaxRecord, kinds: list[str], tz: localtime.Zone) -> str:
    e = html.escape
    title = subject(fax, tz)
    rows = "\n".join(f'<tr><th align="left">{e(k)}</th><td>{e(v)}</td></tr>' for k, v in _facts(fax, tz))
    warning = ""
    if _warning(fax):
        warning = (
            f'<p style="color:#b00020;font-weight:bold;border:2px solid #b00020;padding:8px">{e(_warning(fax))}</p>\n'
        )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title></head>'
        f"<body>\n{warning}<p>{e(title)}. {e(_attached(fax, kinds))}</p>\n"
        f"<table>\n{rows}\n</table>\n</body></html>\n"
    )


def addressees(r: dict, recipient: str) -> tuple[list[str], list[str]]:
    """The message's (To, Cc): the route's when this copy goes to the route's own addresses, so
    every copy of one delivery reads the same; else (a resend to another address) that address
    alone, so the mail is addressed to whoever it was sent to and names no one else."""
    targets = [clean_text(a, 254) for a in recipient.split(",") if clean_text(a, 254)]
    routed = {a.lower() for a in r["to"] + r["cc"]}
    if r["to"] and targets and all(t.lower() in routed for t in targets):
        return r["to"], r["cc"]
    return targets, []


def _fax_content_type(part: EmailMessage, name: str) -> None:
    """``image/tiff; application=faxbw; name="..."``, as on-ramps and fax partners write it
    (RFC 2301 9.1; reference/exchange.md section 4), with the hint as a bare token: the email
    package would quote it, and some receivers compare the text.  Set raw, folded by hand before
    ``name``, so no refolding rewrites it; ``name`` is our own digits and letters only."""
    others = [(k, v) for k, v in part.items() if k.lower() != "content-type"]
    for k in {k for k, _ in part.items()}:
        del part[k]
    part.set_raw("Content-Type", f'image/tiff; application=faxbw;\n name="{name}"')
    for k, v in others:
        part[k] = v


def render_message(
    fax: FaxRecord,
    recipient: str,
    *,
    from_addr: str,
    image: bytes,
    message_id: str,
    now: float | None = None,
    tz: localtime.Zone = None,
) -> EmailMessage:
    """The fax as an RFC 3965-style mail, or an Exchange UM partner message when UM referred the call.

    ``recipient`` is whom this copy goes to (the job's address; the archive's copy names them
    all); ``tz`` is the owner's zone (``system.timezone``), for every time the mail shows and its
    Date header.  Attachments follow the route (TIFF-F, Profile S, PDF or both); UM mode gets
    exactly one image/tiff.  Raises ValueError for an empty image: a "fax received" mail without the fax
    would be worse than a delivery that waits.  The one exception is a UM-referred call with no
    page (``is_um_notice``): Exchange wants a partner message without attachment (status 2.4 or
    5.0) to show the recipient a missed call.
    """
    notice = is_um_notice(fax)
    if not image and not notice:
        raise ValueError(f"fax {fax.id}: refusing to render a message without the image")
    um = referral(fax)
    r = route(fax)
    parts = [] if notice else attachments(fax, image, um=um is not None)
    kinds = [k for k, _ in parts]
    when = fax.created or (now if now is not None else time.time())
    msg = EmailMessage(policy=POLICY if um is None else UM_POLICY)
    msg["From"] = clean_text(from_addr, 254)
    to, cc = addressees(r, recipient)
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Date"] = format_datetime(localtime.at(when, tz))
    msg["Message-ID"] = clean_text(message_id, 254)
    msg["Subject"] = subject(fax, tz)
    msg["X-FaxNumberOfPages"] = str(int(fax.pages))
    if clean_text(fax.caller_number):
        msg["X-CallingTelephoneNumber"] = clean_text(fax.caller_number, 60)
    if clean_text(fax.call_id):
        msg["X-CallID"] = clean_text(fax.call_id, 200)
    if um is not None:
        msg["X-MS-Exchange-UM-PartnerContent"] = "fax"
        msg["X-MS-Exchange-UM-PartnerStatus"] = um_status(fax)
        msg["X-MS-Exchange-UM-PartnerContext"] = um["context_raw"]
    msg.set_content(_plain(fax, kinds, tz), cte="quoted-printable")
    msg.add_alternative(_html(fax, kinds, tz), subtype="html", cte="quoted-printable")
    for kind, data in parts:
        if kind == "pdf":
            msg.add_attachment(data, maintype="application", subtype="pdf", filename=attachment_name(fax, "pdf", tz))
        else:
            name = attachment_name(fax, "tif", tz)
            msg.add_attachment(data, maintype="image", subtype="tiff", filename=name)
            parts_now = cast(list[EmailMessage], msg.get_payload())  # multipart: its parts, this one last
            _fax_content_type(parts_now[-1], name)
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]
    # after the body: set_content() drops every Content-* header, this one included
    msg["Content-Class"] = "MS-Exchange-UM-Partner" if um is not None else "fax-ca"
    return msg
