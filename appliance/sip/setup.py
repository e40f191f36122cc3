"""Wiring the [sip] configuration into a SipEndpoint: TLS, the call gate, digest for our own
requests, registrations. The daemon calls `build_endpoint` and, after `start`, `start_registrations`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from ..config import Config
from .digest import DigestServer, parse_challenges
from .events import Addr
from .message import SipRequest, SipResponse
from .policy import CallGate, ConnectionLimiter, PeerTable, RateLimiter
from .registration import Registration
from .tls import TlsSettings
from .transport import SipEndpoint
from .uri import SipUri

log = logging.getLogger("faxbridge.sip")


class ChallengeAnswerer:
    """A UserAgent.challenge_hook: answers a 401/407 to our INVITE, re-INVITE or BYE with the
    credentials of the registration whose registrar (or outbound proxy) the request went to,
    only for a realm that registrar itself challenged our REGISTER with, once per request (again
    only on stale=true).

    Why so narrow: anyone we send a request to can challenge it, with a realm and nonce of their
    choosing; answering with the PBX account would hand them an MD5 digest to crack offline. A
    caller's gateway that challenges our BYE gets no answer (the BYE then fails: the call is
    over anyway).
    """

    def __init__(self, registrations: Callable[[], Sequence[Registration]],
                 resend: Callable[[str, SipRequest, list[tuple[str, str]], float], object]) -> None:
        self._registrations = registrations
        self._resend = resend  # UserAgent.resend_request

    def _registration_for(self, dest: Addr, source: Addr) -> Registration | None:
        for reg in self._registrations():
            remote = getattr(reg, "remote", None)
            if remote is not None and tuple(remote) == tuple(dest) and source[0] == dest[0]:
                return reg
        return None

    def __call__(self, call_id: str, request: SipRequest, dest: Addr, response: SipResponse, source: Addr,
                 now: float) -> bool:
        reg = self._registration_for(dest, source)
        if reg is None or not reg.realms:
            return False
        had_credentials = "Authorization" in request.headers or "Proxy-Authorization" in request.headers
        if had_credentials and not any(c.stale for c in parse_challenges(response.headers)):
            return False  # our credentials were refused: let the UA fail the request
        answers = reg.digest.authorize(response, request.method, request.uri, realms=reg.realms)
        if not answers:
            return False
        self._resend(call_id, request, answers, now)
        return True


def build_endpoint(cfg: Config, ua: Any) -> tuple[SipEndpoint, PeerTable]:
    """The endpoint for `cfg.sip` around `ua`; log PeerTable.describe() at start."""
    sip = cfg.sip
    peers = PeerTable(sip.peers, sip.allow_unknown)
    gate = CallGate(peers, RateLimiter(sip.rate_limit, sip.rate_burst), DigestServer(sip.auth_realm),
                    server=sip.user_agent, max_calls=sip.max_calls)
    needs_tls = any(l.transport == "tls" for l in sip.listeners()) or sip.tls_ca or any(
        SipUri.parse(r.registrar).transport == "tls" for r in sip.registrations)
    tls = TlsSettings.from_config(sip, cfg.path) if needs_tls else None
    endpoint = SipEndpoint(ua, tls=tls, gate=gate,
                           connections=ConnectionLimiter(sip.max_connections, sip.max_connections_per_address),
                           idle_timeout=sip.connection_idle_timeout)
    if hasattr(ua, "challenge_hook"):  # answers only for our registrations' own registrars and realms
        ua.challenge_hook = ChallengeAnswerer(lambda: endpoint.registrations, ua.resend_request)
    return endpoint, peers


async def start_registrations(endpoint: SipEndpoint, cfg: Config) -> None:
    """Start every [[sip.registrations]] entry; one that cannot start (DNS) is logged, not fatal."""
    for reg_cfg in cfg.sip.registrations:
        try:
            await endpoint.add_registration(reg_cfg)
        except (OSError, LookupError) as exc:
            log.error("SIP registration %s cannot start: %s", reg_cfg.name or reg_cfg.registrar, exc)
