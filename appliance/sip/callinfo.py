"""Building responses and reading call facts out of requests: pure functions the UA core uses."""
from __future__ import annotations

import re
from typing import Iterable

from .errors import SipParseError
from .events import Addr, IncomingCall, Local
from .message import SipRequest, SipResponse
from .sdp import SessionDescription
from .uri import SipUri, Via, host_address, parse_name_addr

_CSEQ_RE = re.compile(r"^[0-9]{1,10}\s+[A-Za-z0-9\-.!%*_+`'~]+$")


def make_response(req: SipRequest, status: int, reason: str, to_tag: str | None = None,
                  headers: Iterable[tuple[str, str]] = (), body: bytes | str = b"",
                  server: str = "") -> SipResponse:
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
    for name, value in (("From", req.headers.get("From") or ""), ("To", to),
                        ("Call-ID", req.call_id), ("CSeq", req.headers.get("CSeq") or "")):
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
        req.via
        parse_name_addr(req.headers.get("From") or "")
        parse_name_addr(req.headers.get("To") or "")
    except (SipParseError, IndexError):
        return False
    return bool(req.call_id and _CSEQ_RE.match(req.headers.get("CSeq") or "")
                and int(req.cseq[0]) < 2**31)


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


def incoming_call(req: SipRequest, offer: SessionDescription | None, remote: Addr, local: Local) -> IncomingCall:
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
    return IncomingCall(req.call_id, req, offer, caller, name, called, remote, local, diversion)
