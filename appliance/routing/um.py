"""The Exchange UM referral a fax record carries, and whether its call owes a missed-call notice.

Exchange UM refers a fax call to us with the recipient's mailbox and a context token (the daemon
keeps both in ``extra["exchange_um"]``, only from ``exchange_um`` peers); routing may refuse the
recipient (``extra["route"]["um_refused"]``).  Ingestion asks ``is_um_notice`` whether a call
without pages still goes to the mailbox, and the mail renderer builds the partner message from
``referral``: both read the same facts of the record here, and neither asks the other.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.spool.store import FaxRecord

log = logging.getLogger("faxbridge.routing")

#: the context header is one base64 token; longer than this is no UM context
CONTEXT_MAX = 900


def referral(fax: FaxRecord) -> dict | None:
    """The Exchange UM referral, when it carries a usable base64 context; else None (generic mail).

    None too when routing refused the UM recipient (outside routing.accepted_domains): the fax
    then goes to the routing result as ordinary mail, and a call without pages owes no notice.
    """
    um = fax.extra.get("exchange_um") if isinstance(fax.extra, dict) else None
    if not isinstance(um, dict):
        return None
    r = fax.extra.get("route")
    if isinstance(r, dict) and r.get("um_refused"):
        return None
    raw = str(um.get("context_raw") or "").strip()
    if not raw or not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", raw) or len(raw) > CONTEXT_MAX:
        log.warning("fax %s: Exchange UM context missing or not base64: sent as plain mail", fax.id)
        return None
    try:
        base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        log.warning("fax %s: Exchange UM context does not decode: sent as plain mail", fax.id)
        return None
    return {**um, "context_raw": raw}


def is_um_notice(fax: FaxRecord) -> bool:
    """A call Exchange UM referred that brought no page: the mailbox gets a missed-call notice."""
    return fax.pages <= 0 and not fax.image and referral(fax) is not None
