"""Dialog state (RFC 3261 §12) and the requests built from it: in-dialog requests, ACK for 2xx."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from appliance.sip.errors import SipParseError
from appliance.sip.events import Addr
from appliance.sip.message import SipRequest, SipResponse
from appliance.sip.uri import SipUri, host_address, parse_name_addr


@dataclass
class Dialog:
    """One dialog; `local_party`/`remote_party` are full From/To values including the tags."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_party: str
    remote_party: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 1
    remote_cseq: int | None = None

    @classmethod
    def as_uas(cls, invite: SipRequest, response: SipResponse, local_seq: int) -> Dialog:
        """Built from the INVITE we received and the 2xx we sent (§12.1.1)."""
        return cls(
            call_id=invite.call_id,
            local_tag=response.to_tag or "",
            remote_tag=invite.from_tag or "",
            local_party=response.headers.get("To") or "",
            remote_party=invite.headers.get("From") or "",
            remote_target=_contact_uri(invite),
            route_set=list(invite.headers.get_all("Record-Route")),
            local_cseq=local_seq,
            remote_cseq=invite.cseq[0],
        )

    @classmethod
    def as_uac(cls, invite: SipRequest, response: SipResponse) -> Dialog:
        """Built from our INVITE and the 2xx we got (§12.1.2): the route set is reversed."""
        return cls(
            call_id=invite.call_id,
            local_tag=invite.from_tag or "",
            remote_tag=response.to_tag or "",
            local_party=invite.headers.get("From") or "",
            remote_party=response.headers.get("To") or "",
            remote_target=_contact_uri(response) or invite.uri,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_cseq=invite.cseq[0],
        )

    def create_request(self, method: str, via: str, *, cseq: int | None = None) -> SipRequest:
        """A request inside the dialog to the remote target through the route set (loose routing)."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        req = SipRequest(method, self.remote_target)
        req.headers.add("Via", via)
        for route in self.route_set:
            req.headers.add("Route", route)
        req.headers.add("Max-Forwards", "70")
        req.headers.add("From", self.local_party)
        req.headers.add("To", self.remote_party)
        req.headers.add("Call-ID", self.call_id)
        req.headers.add("CSeq", f"{cseq} {method}")
        return req

    def next_hop(self, fallback: Addr) -> Addr:
        """First Route, else the remote target, when it names an IP address; else `fallback`.

        The core does no DNS; a host name sends the request where the dialog's messages came from.
        """
        try:
            uri = SipUri.parse(parse_name_addr(self.route_set[0])[1] if self.route_set else self.remote_target)
            host = host_address(uri.host)
            ipaddress.ip_address(host)
        except (SipParseError, ValueError):
            return fallback
        return host, uri.port or (5061 if uri.scheme == "sips" else 5060)


def _contact_uri(message: SipRequest | SipResponse) -> str:
    contact = message.headers.get("Contact")
    if not contact:
        return ""
    try:
        return parse_name_addr(contact)[1]
    except SipParseError:
        return ""
