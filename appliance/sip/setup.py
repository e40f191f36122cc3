"""Wiring the [sip] configuration into a SipEndpoint: TLS, the call gate, digest for our own
requests, registrations. The daemon calls `build_endpoint` and, after `start`, `start_registrations`.
"""
from __future__ import annotations

import logging
from typing import Any

from ..config import Config, RegistrationConfig
from .digest import DigestClient, DigestServer
from .message import SipRequest, SipResponse
from .policy import CallGate, PeerTable, RateLimiter
from .tls import TlsSettings
from .transport import SipEndpoint
from .uri import SipUri, host_address

log = logging.getLogger("appliance.sip")


class ChallengeAnswerer:
    """A UserAgent.challenge_hook: answers a 401/407 to our INVITE, re-INVITE or BYE with the
    credentials of the registration account whose registrar/domain the request goes to (or the
    only account there is), once per request; a second challenge without stale=true is final."""

    def __init__(self, ua: Any, accounts: list[RegistrationConfig]) -> None:
        self.ua = ua
        self._by_host: dict[str, DigestClient] = {}
        self._only: DigestClient | None = None
        for acc in accounts:
            client = DigestClient(acc.auth_user or acc.user, acc.password)
            for uri in (acc.registrar, acc.outbound_proxy):
                if uri:
                    self._by_host.setdefault(host_address(SipUri.parse(uri).host).lower(), client)
            if acc.domain:
                self._by_host.setdefault(acc.domain.lower(), client)
            self._only = client if len(accounts) == 1 else None

    def _client_for(self, request: SipRequest) -> DigestClient | None:
        try:
            host = host_address(SipUri.parse(request.uri).host).lower()
        except Exception:  # noqa: BLE001 - a tel: URI or junk: fall back to the only account
            host = ""
        return self._by_host.get(host) or self._only

    def __call__(self, call_id: str, request: SipRequest, response: SipResponse, now: float) -> bool:
        from .digest import parse_challenges

        client = self._client_for(request)
        if client is None:
            return False
        had_credentials = "Authorization" in request.headers or "Proxy-Authorization" in request.headers
        if had_credentials and not any(c.stale for c in parse_challenges(response.headers)):
            return False  # our credentials were refused: let the UA fail the request
        answers = client.authorize(response, request.method, request.uri)
        if not answers:
            return False
        self.ua.resend_request(call_id, request, answers, now)
        return True


def build_endpoint(cfg: Config, ua: Any) -> tuple[SipEndpoint, PeerTable]:
    """The endpoint for `cfg.sip` around `ua`; log PeerTable.describe() at start."""
    sip = cfg.sip
    peers = PeerTable(sip.peers, sip.allow_unknown)
    gate = CallGate(peers, RateLimiter(sip.rate_limit, sip.rate_burst), DigestServer(sip.auth_realm),
                    server=sip.user_agent)
    needs_tls = any(l.transport == "tls" for l in sip.listeners()) or sip.tls_ca or any(
        SipUri.parse(r.registrar).transport == "tls" for r in sip.registrations)
    tls = TlsSettings.from_config(sip, cfg.path) if needs_tls else None
    if sip.registrations and hasattr(ua, "challenge_hook"):
        ua.challenge_hook = ChallengeAnswerer(ua, sip.registrations)
    return SipEndpoint(ua, tls=tls, gate=gate), peers


async def start_registrations(endpoint: SipEndpoint, cfg: Config) -> None:
    """Start every [[sip.registrations]] entry; one that cannot start (DNS) is logged, not fatal."""
    for reg_cfg in cfg.sip.registrations:
        try:
            await endpoint.add_registration(reg_cfg)
        except (OSError, LookupError) as exc:
            log.error("SIP registration %s cannot start: %s", reg_cfg.name or reg_cfg.registrar, exc)
