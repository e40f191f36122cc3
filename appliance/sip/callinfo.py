"""Building responses and reading call facts out of requests: pure functions the UA core uses."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from urllib.parse import unquote, unquote_plus

from appliance.sip.errors import SipParseError
from appliance.sip.events import Addr, Admission, ExchangeUmReferral, IncomingCall, Local
from appliance.sip.message import SipRequest, SipResponse
from appliance.sip.sdp import SessionDescription
from appliance.sip.uri import SipUri, Via, host_address, parse_name_addr

_CSEQ_RE = re.compile(r"^[0-9]{1,10}\s+[A-Za-z0-9\-.!%*_+`'~]+$")


def make_response(
    req: SipRequest,
    status: int,
    reason: str,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | str = b"",
    server: str = "",
) -> SipResponse:
    """A response to `req` (§8.2.6): Via, From, To (+ our tag), Call-ID and CSeq copied."""
    resp = SipResponse(status, reason)
    for via in req.headers.get_all("Via"):
        resp.headers.add("Via", via)
    if req.method == "INVITE" and 100 < status < 300:
        for rr in req.headers.get_all("Record-Route"):
            resp.headers.add("Record-Route", rr)
    to = req.headers.get("To") or ""
    if to_tag and status > 100 and not req.to_tag:
        to += f";tag={to_tag}"
    for name, value in (
        ("From", req.headers.get("From") or ""),
        ("To", to),
        ("Call-ID", req.call_id),
        ("CSeq", req.headers.get("CSeq") or ""),
    ):
        resp.headers.add(name, value)
    if status == 100 and req.headers.get("Timestamp"):
        resp.headers.add("Timestamp", req.headers.get("Timestamp") or "")
    if server:
        resp.headers.add("Server", server)
    for name, value in headers:
        resp.headers.add(name, value)
    resp.body = body.encode("utf-8") if isinstance(body, str) else body
    return resp


def stamp_via(req: SipRequest, remote: Addr) -> None:
    """RFC 3261 §18.2.1 / RFC 3581: note where the request really came from in the top Via."""
    vias = req.headers.get_all("Via")
    top = Via.parse(vias[0])
    if host_address(top.host) != remote[0]:
        top.params["received"] = remote[0]
    if "rport" in top.params and top.params["rport"] is None:
        top.params["rport"] = str(remote[1])
    req.headers.set_all("Via", [str(top), *vias[1:]])


def reply_target(req: SipRequest, remote: Addr, local: Local) -> Addr:
    """Where responses go (RFC 3261 §18.2.2, RFC 3581); streams always use the connection."""
    via = req.via
    if local.transport != "udp" or "rport" in via.params:
        return remote
    return via.params.get("received") or host_address(via.host), via.port or 5060


def answerable(req: SipRequest) -> bool:
    """Enough of a broken request survived to build a response that the peer can match."""
    try:
        _ = req.via  # parsed on access: raises when the top Via is missing or broken
        parse_name_addr(req.headers.get("From") or "")
        parse_name_addr(req.headers.get("To") or "")
    except (SipParseError, IndexError):
        return False
    return bool(req.call_id and _CSEQ_RE.match(req.headers.get("CSeq") or "") and int(req.cseq[0]) < 2**31)


def contact_uri(req: SipRequest) -> str:
    try:
        return parse_name_addr(req.headers.get("Contact") or "")[1]
    except SipParseError:
        return ""


def _user_and_name(value: str) -> tuple[str, str]:
    try:
        display, uri, _ = parse_name_addr(value)
        return SipUri.parse(uri).user or "", display
    except SipParseError:
        return "", ""


def incoming_call(
    req: SipRequest, offer: SessionDescription | None, remote: Addr, local: Local, admission: Admission | None = None
) -> IncomingCall:
    caller, name = "", ""
    for value in req.headers.get_list("P-Asserted-Identity"):
        caller, name = _user_and_name(value)
        if caller:
            break
    if not caller:
        caller, name = _user_and_name(req.headers.get("From") or "")
    try:
        called = SipUri.parse(req.uri).user or ""
    except SipParseError:
        called = ""
    called = called or _user_and_name(req.headers.get("To") or "")[0]
    diversion = [u for u in (_user_and_name(v)[0] for v in req.headers.get_list("Diversion")) if u]
    referred_by = req.headers.get("Referred-By") or ""
    return IncomingCall(
        req.call_id,
        req,
        offer,
        caller,
        name,
        called,
        remote,
        local,
        diversion,
        referred_by,
        parse_exchange_referral(referred_by),
        admission,
    )


# --- Exchange UM fax referral (exchange.md §1.4) ---------------------------------------------------
# UM REFERs the gateway to us with Referred-By: <sip:um-fqdn;msExchUMFaxRecipient=smtp:<addr>;
# msExchUMContext=<url-escaped base64>>; the gateway copies it into its INVITE. The context is
# base64 of a UTF-8, URL-encoded query string (UMPartnerContext: HttpUtility.ParseQueryString):
# CallId=..&CallerId=..&Extension=..&PhoneContext=..&CallerIdDisplayName=..

MAX_CONTEXT = 4096  # characters of base64; real contexts are a few hundred
MAX_CONTEXT_KEYS = 32
MAX_CONTEXT_VALUE = 1024
_ADDRESS_RE = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _referral_params(value: str) -> dict[str, str]:
    """URI parameters (inside <>) and header parameters (after it) by lower-cased name; the
    first occurrence wins. Written by hand: a URI parameter like smtp:bob@x fools a URI parser."""
    params: dict[str, str] = {}
    start = value.find("<")
    if start >= 0:
        end = value.find(">", start)
        end = len(value) if end < 0 else end
        uri, header_part = value[start + 1 : end], value[end + 1 :]
        items = uri.partition("?")[0].split(";")[1:] + header_part.split(";")
    else:
        items = value.split(";")[1:]
    for item in items:
        name, eq, val = item.partition("=")
        name = name.strip().lower()
        if eq and name and name not in params:
            params[name] = val.strip().strip('"')
    return params


def _plain_address(text: str) -> str | None:
    if len(text) > 254 or not _ADDRESS_RE.fullmatch(text) or len(text.rpartition("@")[0]) > 64:
        return None
    return text


def _context_pairs(text: str, notes: list[str]) -> dict[str, str]:
    """Key/value pairs of the decoded context: the query string Exchange writes, or Key:Value;..."""
    eq, colon = text.find("="), text.find(":")
    pairs: list[tuple[str, str]] = []
    if eq >= 0 and (colon < 0 or eq < colon):
        for item in text.split("&"):
            key, _, val = item.partition("=")
            pairs.append((unquote_plus(key), unquote_plus(val)))
    else:
        for item in text.split(";"):
            key, _, val = item.partition(":")
            pairs.append((key, val))
    context: dict[str, str] = {}
    for key, val in pairs:
        key, clean = _CONTROL_RE.sub("", key).strip(), _CONTROL_RE.sub("", val).strip()
        if clean != val.strip():
            notes.append(f"control characters removed from context value {key!r}")
        if not key:
            continue
        if len(context) >= MAX_CONTEXT_KEYS:
            notes.append("context has too many keys: the rest ignored")
            break
        context.setdefault(key, clean[:MAX_CONTEXT_VALUE])
    return context


def parse_exchange_referral(referred_by: str) -> ExchangeUmReferral | None:
    """Exchange UM's msExchUMFaxRecipient/msExchUMContext in a Referred-By value; None if absent.

    Never raises: a recipient that is not a plain SMTP address is left empty, a context that is
    not base64 (or whose text cannot be read) gives context_raw "" (resp. an empty context); each
    such decision is recorded in notes.
    """
    params = _referral_params(referred_by)
    recipient_param = params.get("msexchumfaxrecipient")
    context_param = params.get("msexchumcontext")
    if recipient_param is None and context_param is None:
        return None
    notes: list[str] = []
    recipient = ""
    if recipient_param is not None:
        text = unquote(recipient_param).strip()
        scheme, colon, address = text.partition(":")
        if not colon or scheme.lower() != "smtp":
            notes.append("msExchUMFaxRecipient is not an smtp: address: ignored")
        elif _plain_address(address) is None:
            notes.append("msExchUMFaxRecipient is not a plain address: ignored")
        else:
            recipient = address
    else:
        notes.append("no msExchUMFaxRecipient")
    context_raw, context = "", {}
    if context_param is None:
        notes.append("no msExchUMContext")
    else:
        raw = unquote(context_param).strip()
        if len(raw) > MAX_CONTEXT or not _BASE64_RE.fullmatch(raw):
            notes.append("msExchUMContext is not base64 (or too long): ignored")
        else:
            context_raw = raw
            try:
                text = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                notes.append("msExchUMContext does not decode (base64/UTF-8): context left empty")
            else:
                context = _context_pairs(text, notes)
    return ExchangeUmReferral(recipient, context_raw, context, notes)
