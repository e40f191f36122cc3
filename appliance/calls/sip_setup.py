"""Wiring the [sip] configuration into a SipEndpoint: TLS, the call gate, digest for our own
requests, registrations. The daemon calls `build_endpoint` and, after `start`, `start_registrations`.

This is the one place where the application's config meets the SIP core: `appliance/sip/` takes
plain values and objects of its own protocols (`policy.PeerRule`, `registration.RegistrationSettings`,
`tls.TlsSettings`) and never imports `appliance.config`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from appliance.config import Config, PeerConfig, SipConfig
from appliance.sip.digest import DigestServer
from appliance.sip.policy import SELF_TEST_PEER_NAME, CallGate, ConnectionLimiter, PeerTable, RateLimiter
from appliance.sip.registration import ChallengeAnswerer
from appliance.sip.tls import TlsSettings
from appliance.sip.transport import SipEndpoint
from appliance.sip.uri import SipUri

log = logging.getLogger("faxbridge.sip")


#: the peer a self-test call is recorded under (its line is "sip:self-test")
SELF_TEST_PEER = PeerConfig(name=SELF_TEST_PEER_NAME, match="127.0.0.1/32", t38="accept")


def implicit_peer(name: str, match: str) -> PeerConfig:
    """The peer of a caller the table lets in without an entry (private networks, allow_unknown)."""
    return PeerConfig(name=name, match=match, t38="accept")


def peer_table(peers: Sequence[PeerConfig], allow_unknown: bool = False) -> PeerTable[PeerConfig]:
    """[[sip.peers]] as the call gate's table."""
    return PeerTable(peers, allow_unknown, implicit=implicit_peer)


def tls_settings(sip: SipConfig, resolve: Callable[[str], Path] = Path) -> TlsSettings:
    """[sip]'s TLS paths; `resolve` is Config.path (paths relative to the state directory)."""

    def path(p: str) -> str:
        return str(resolve(p)) if p else ""

    return TlsSettings(path(sip.tls_cert), path(sip.tls_key), path(sip.tls_ca), sip.tls_verify_client)


def build_endpoint(cfg: Config, ua: Any) -> tuple[SipEndpoint, PeerTable[PeerConfig]]:
    """The endpoint for `cfg.sip` around `ua`; log PeerTable.describe() at start."""
    sip = cfg.sip
    peers = peer_table(sip.peers, sip.allow_unknown)
    gate = CallGate(
        peers,
        RateLimiter(sip.rate_limit, sip.rate_burst),
        DigestServer(sip.auth_realm),
        server=sip.user_agent,
        max_calls=sip.max_calls,
    )
    needs_tls = (
        any(l.transport == "tls" for l in sip.listeners())
        or sip.tls_ca
        or any(SipUri.parse(r.registrar).transport == "tls" for r in sip.registrations)
    )
    tls = tls_settings(sip, cfg.path) if needs_tls else None
    endpoint = SipEndpoint(
        ua,
        tls=tls,
        gate=gate,
        connections=ConnectionLimiter(sip.max_connections, sip.max_connections_per_address),
        idle_timeout=sip.connection_idle_timeout,
    )
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
