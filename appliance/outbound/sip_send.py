"""One outbound fax attempt over SIP: the calling-side call of appliance/fax/sender.py, its end
said as an `Outcome`.

The call is the one ``faxbridge send-test-fax`` places (one call loop for both); this module adds
what the queue needs around it: the route's T.38 choice in the receive side's words, the caller
ID, digest credentials from ``[[sip.registrations]]``, and the mapping of every way a call can
end (SIP status, T.30 completion code, hang-up, cancel) to a `Result` with its technical detail.

Each attempt has its own SIP endpoint on an ephemeral port (like send-test-fax): the daemon's
endpoint serves incoming calls and its event queue is theirs. A PBX that only takes calls from
a registered contact's address and port therefore needs the account's calls allowed by
credentials (digest), which is how PBXs and trunks authenticate outgoing calls anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from PIL import Image

from appliance.fax import t30codes
from appliance.fax.sender import SendResult, send_fax
from appliance.outbound.outcome import Outcome, Result
from appliance.sip.errors import SipParseError
from appliance.sip.uri import SipUri

log = logging.getLogger("faxbridge.outbound")

#: the route's t38 setting (as on receive) -> the calling-side call's T.38 mode: "request" is
#: our re-INVITE to T.38 after the answer (accepting the far end's too), "accept" takes the far
#: end's, "off" answers a T.38 re-INVITE with 488 and stays on G.711
T38_CHOICES = {"off": "off", "accept": "accept", "request": "reinvite"}

#: how long the far end may ring before the attempt counts as not answered
RING_TIMEOUT = 60.0

BUSY_STATUSES = frozenset({486, 600})
NO_ANSWER_STATUSES = frozenset({408, 480, 487})

# T.30 completion codes (spandsp's T30_ERR_*) by what they mean for the sender
#: no fax machine answered: no DIS within T0/T1
_NO_FAX = frozenset({2, 3})
#: phase B: the modems could not train (DCS/TCF got no or a bad answer, every speed failed)
_TRAINING = frozenset({6, 14, 20})
#: the far end went quiet or away mid-document: no answer to a page, timers expired, carrier lost
_DROPPED = frozenset({5, 21, 22, 26, 29, 30, 31, 32, 33, 34, t30codes.CALL_DROPPED})
#: our own document could not be read (the TIFF went missing or is broken): an internal error
_OURS = frozenset(range(41, 48))


def t38_mode(choice: str) -> str:
    """The route's ``t38`` (off|accept|request) as the calling-side call's mode."""
    try:
        return T38_CHOICES[choice]
    except KeyError:
        raise ValueError(f"t38 must be off, accept or request, not {choice!r}") from None


def from_user(ident: str) -> str:
    """Our caller ID's user part: the ident's digits with its leading "+" (E.164), or
    "anonymous" when the ident has no digits."""
    digits = "".join(c for c in ident if c.isascii() and c.isdigit())[:20]
    if not digits:
        return "anonymous"
    return ("+" if ident.strip().startswith("+") else "") + digits


def display_name(name: str) -> str:
    """outbound.name fit for a From display name: printable, one line, at most 64 characters
    (format_name_addr escapes quotes and backslashes)."""
    return "".join(c for c in name if c.isprintable()).strip()[:64]


def _host_port(uri_text: str) -> tuple[str, int | None] | None:
    try:
        uri = SipUri.parse(uri_text)
    except SipParseError:
        return None
    return uri.host.strip("[]").lower(), uri.port


class RegistrationLike(Protocol):
    """The fields of config.RegistrationConfig that `credentials_for` reads."""

    registrar: str
    outbound_proxy: str
    domain: str
    user: str
    auth_user: str
    password: str


def credentials_for(target: str, registrations: Iterable[RegistrationLike]) -> tuple[str, str] | None:
    """The digest (user, password) for calls to `target`: the first ``[[sip.registrations]]``
    entry whose registrar, outbound proxy or domain is the target's host (and, where both name
    a port, the same port); None when none is, or it has no password.

    Why the registrations: a PBX or trunk that takes our calls knows us as the account we
    register, and challenges our INVITE for that account's password; a route names only the
    host. An entry is matched by host, so calls to another host never see the password.
    """
    where = _host_port(target)
    if where is None:
        return None
    host, port = where
    for reg in registrations:
        candidates = [_host_port(reg.registrar), _host_port(reg.outbound_proxy) if reg.outbound_proxy else None]
        if reg.domain:
            candidates.append((reg.domain.strip("[]").lower(), None))
        for cand in candidates:
            if cand is None or cand[0] != host:
                continue
            if cand[1] is not None and port is not None and cand[1] != port:
                continue
            if reg.password:
                return (reg.auth_user or reg.user, reg.password)
    return None


def count_pages(tiff: Path) -> int:
    """Pages in the document (0 when it cannot be read: the call then fails as our error)."""
    try:
        with Image.open(tiff) as im:
            return int(getattr(im, "n_frames", 1))
    except OSError:
        return 0


def _clean_ident(text: str) -> str:
    """The far end's CSI as the report may show it: printable ASCII, at most 20 characters."""
    return "".join(c for c in text if c.isascii() and c.isprintable()).strip()[:20]


def _way(result: SendResult) -> str:
    if not result.answered or not result.mode:
        return "SIP"
    way = f"SIP {result.mode}"
    if result.t38_silent and result.mode != "T.38":
        way += " (T.38 agreed, but no T.38 media came)"
    elif result.t38_refused and result.mode != "T.38":
        way += f" (T.38 refused: {result.t38_refused})"
    return way


def _classify_t30(code: int, fax_answered: bool) -> Result:
    if code in _OURS:
        return Result.ERROR
    if not fax_answered and (code in _NO_FAX or code in _DROPPED):
        return Result.NO_CARRIER
    if code in _NO_FAX:
        return Result.NO_CARRIER
    if code in _TRAINING:
        return Result.TRAINING_FAILED
    if code in _DROPPED:
        return Result.DROPPED
    return Result.FAR_END_ERROR  # a refusal of the far end: DCN, RTN until retries ran out, ...


def outcome_of(result: SendResult, pages_total: int) -> Outcome:
    """How the call that `send_fax` reported ended, in the queue's terms. Pure."""
    pages = result.pages_sent
    t30 = result.result_code
    base = Outcome(
        Result.ERROR,
        pages_confirmed=pages,
        pages_total=pages_total,
        remote_ident=_clean_ident(result.remote_ident),
        duration=result.duration,
        bit_rate=result.bit_rate,
        ecm=result.ecm,
        way=_way(result),
        sip_status=result.sip_status,
        t30_code=t30,
        trace=list(result.trace),
    )

    def done(res: Result, detail: str) -> Outcome:
        base.result, base.detail = res, detail
        return base

    if result.ok and t30 == t30codes.OK:
        return done(Result.SENT, f"{pages} page(s) confirmed")
    if result.cancelled:
        if not result.answered:
            return done(Result.CANCELLED, "cancelled while the call was ringing")
        return done(Result.CANCELLED, f"cancelled during the fax, after {pages} confirmed page(s)")
    if not result.answered:
        status = result.sip_status
        if result.ring_timeout:
            return done(Result.NO_ANSWER, result.status)
        if status is None:
            return done(Result.NO_ANSWER, "no final SIP answer" + (" in time" if result.timed_out else ""))
        text = f"SIP {status} {result.sip_reason}".strip()
        if status in BUSY_STATUSES:
            return done(Result.BUSY, text)
        if status in NO_ANSWER_STATUSES:
            return done(Result.NO_ANSWER, text)
        return done(Result.REFUSED, text)
    if t30 is not None:
        text = f"T.30: {t30codes.result_text(t30)}"
        if t30 == t30codes.OK:  # spandsp said OK, but we ended the call ourselves first
            return done(Result.DROPPED, "the call ended before the last page was confirmed")
        return done(_classify_t30(t30, result.fax_answered), text)
    if result.remote_hangup:
        if not result.fax_answered:
            return done(Result.NO_CARRIER, "the far end hung up before a fax machine answered")
        return done(Result.DROPPED, f"the far end hung up (BYE) after {pages} confirmed page(s)")
    if result.timed_out:
        if not result.fax_answered:
            return done(Result.NO_CARRIER, "no fax machine answered before the call's time limit")
        return done(Result.DROPPED, f"the call's time limit ran out after {pages} confirmed page(s)")
    return done(Result.NO_CARRIER if not result.fax_answered else Result.DROPPED, result.status)


async def send_over_sip(
    target: str,
    tiff: Path,
    *,
    ident: str,
    t38: str,
    caller: str,
    local_ip: str | None,
    credentials: tuple[str, str] | None,
    on_connected: Callable[[], None],
    on_page: Callable[[int], None],
    cancel: asyncio.Event,
    timeout: float,
    ring_timeout: float = RING_TIMEOUT,
) -> Outcome:
    """Call `target` (sip:DIGITS@HOST[:PORT][;transport=tcp|tls]) and send every page of `tiff`.

    `ident` is our TSI and, as digits, the From user (caller ID); `caller` the From display name
    (outbound.name); `t38` the route's off|accept|request; `credentials` (user, password) answer
    the far end's digest challenge (see `credentials_for`); `timeout` bounds the whole attempt,
    `ring_timeout` the wait for an answer. `on_connected()` is called when the far end answers
    (200 OK), `on_page(n)` when it confirmed page n (MCF). Never raises for what the network or
    the far end did: every end is an Outcome.
    """
    mode = t38_mode(t38)
    pages_total = count_pages(tiff)
    user = from_user(ident)
    if pages_total == 0:
        return Outcome(Result.ERROR, detail=f"the document {tiff.name} could not be read", way="SIP")
    try:
        result = await send_fax(
            target,
            tiff,
            caller=user,
            caller_name=display_name(caller),
            ident=ident,
            t38=mode,
            bind=local_ip,
            timeout=timeout,
            from_host="anonymous.invalid" if user == "anonymous" else "",
            ring_timeout=ring_timeout,
            cancel=cancel,
            on_connected=on_connected,
            on_page=on_page,
            credentials=credentials,
            t38_fallback=True,
        )
    except (OSError, SipParseError, ValueError) as e:
        # the name does not resolve, the TCP/TLS connection is refused, the target is malformed
        log.warning("outbound call to %s could not be placed: %s", target, e)
        return Outcome(Result.NO_ROUTE, detail=f"the call could not be placed: {e}", pages_total=pages_total, way="SIP")
    outcome = outcome_of(result, pages_total)
    log.info(
        "outbound call to %s: %s (%s), %d/%d page(s), %s",
        target,
        outcome.result,
        outcome.detail,
        outcome.pages_confirmed,
        pages_total,
        outcome.way,
    )
    return outcome
