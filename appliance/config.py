"""Typed, validated configuration.

One TOML file, one dataclass per section.  Unknown keys and wrong types are errors that name the
key (``delivery.url``), so a typo never silently falls back to a default; every problem of a file
is reported at once, with "did you mean ..." for a misspelt key or value.  Secrets (SMTP
password) may live in a separate ``secrets.toml`` beside the main file, mode 0600; its values
are merged over the main file's.

Every relative path (spool, web state, log, control socket, certificates, a Maildir) is relative
to one base, the state directory: ``--state-dir``, else ``$FAXBRIDGE_STATE_DIR``, else ``./var``
(decision 0013).  Never the configuration file's own directory, so the file can move (the web UI
writes ``<state dir>/faxbridge.toml``; the appliance keeps it on its data partition) without
moving the faxes or the log.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import ipaddress
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

#: the environment variable that names the state directory (the CLI's --state-dir wins over it)
STATE_DIR_ENV = "FAXBRIDGE_STATE_DIR"
#: the state directory when nothing names one: ./var of the working directory (a checkout's make run)
DEFAULT_STATE_DIR = "var"
#: the configuration file the web UI writes, and the one used without --config: in the state directory
CONFIG_NAME = "faxbridge.toml"


def default_state_dir() -> Path:
    """$FAXBRIDGE_STATE_DIR, else ./var; absolute, so a process started elsewhere agrees."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR).absolute()


class ConfigError(ValueError):
    """A configuration problem; ``errors`` lists every one found, each naming its key."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


def parse_hostport(value: str, default_port: int) -> tuple[str, int]:
    """'127.0.0.1:5060', '[::1]:5060' or 'host' -> (host, port); ValueError saying what is wrong."""
    port_text: str | None
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host, port_text = value, None
    if not host:
        raise ValueError("no address before the port")
    if port_text is None:
        return host, default_port
    if not re.fullmatch(r"[0-9]{1,10}", port_text):
        raise ValueError(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range (1-65535)")
    return host, port


def did_you_mean(value: object, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """ " (did you mean 'x'?)" for the nearest choice to a misspelt value, else ""."""
    if not isinstance(value, str) or not value:
        return ""
    near = difflib.get_close_matches(value, sorted(choices), n=1, cutoff=0.6)
    if not near:  # a matter of case only ("SMTP") is close too
        near = [c for c in sorted(choices) if c.lower() == value.lower()][:1]
    return f" (did you mean {near[0]!r}?)" if near else ""


def one_of(value: object, choices: list[str] | tuple[str, ...], said: str = "") -> str:
    """The words for a value outside an enumeration: the choices, the value, a hint."""
    said = said or "must be one of " + ", ".join(choices)
    return f"{said}, not {value!r}{did_you_mean(value, list(choices))}"


def _email_validator() -> Any:
    """email-validator, set up for a box on a LAN: no DNS, and the domains of internal mail systems
    (`localhost`, `.local`, `.test`) are addresses like any other.  Those special-use names are
    refused by the library unless removed from its list, which its documentation says to do."""
    import email_validator

    for name in ("local", "localhost", "test"):
        if name in email_validator.SPECIAL_USE_DOMAIN_NAMES:
            email_validator.SPECIAL_USE_DOMAIN_NAMES.remove(name)
    return email_validator


def address_problem(addr: object) -> str | None:
    """What is wrong with one plain mail address (no display name, list or header break), or None.

    The one check for every address the configuration holds, the web UI's forms and the CLI's
    ``--to``: email-validator's syntax rules (RFC 5321/5322, IDNA), without DNS look-ups.
    """
    if not isinstance(addr, str):
        return "not a string"
    return _address_problem(addr)


@functools.lru_cache(maxsize=4096)
def _address_problem(addr: str) -> str | None:
    """address_problem for a string; cached: every settings form re-validates every address
    (email-validator's IDNA checks take ~90 us an address, 10 ms for a box with 50 rules)."""
    if not addr.strip():
        return "empty"
    if len(addr.rpartition("@")[0]) > 64:
        return "the part before the @-sign is longer than 64 characters (SMTP's limit)"
    ev = _email_validator()
    try:
        # ASCII only: the SMTP client does not speak SMTPUTF8; an IDN domain is fine (xn-- on the wire)
        ev.validate_email(
            addr,
            check_deliverability=False,
            globally_deliverable=False,
            allow_smtputf8=False,
            allow_display_name=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
        )
    except ev.EmailNotValidError as e:
        text = str(e).rstrip(".")
        return text[:1].lower() + text[1:]
    return None


def domain_problem(domain: str) -> str | None:
    """What is wrong with a mail domain (as accepted_domains lists them), or None."""
    why = address_problem(f"postmaster@{domain}")
    return (
        None
        if why is None
        else why.replace("the part after the @-sign", "the domain").replace("after the @-sign", "in the domain")
    )


T38_MODES = ("off", "accept", "request")
#: the most calls a configuration may allow at once (one event loop carries them all)
MAX_CALLS_LIMIT = 1000
SIP_TRANSPORTS = ("udp", "tcp", "tls")


@dataclass
class PeerConfig:
    """A gateway/PBX allowed to call us (``[[sip.peers]]``); see appliance/sip/policy.py."""

    name: str = ""
    #: an IP address or a network (IPv4/IPv6), e.g. "192.0.2.10" or "10.1.0.0/16"
    match: str = ""
    #: "" = any transport, else only calls arriving over this one
    transport: str = ""
    #: "off" (audio only), "accept" (answer a T.38 re-INVITE) or "request" (we re-INVITE to T.38)
    t38: str = "accept"
    #: when set, this peer's INVITEs must carry digest credentials (we answer 401 first)
    username: str = ""
    password: str = field(default="", repr=False)
    #: 0 = use the peer's T38FaxMaxDatagram; else override it (gateways that state the IFP size)
    t38_max_datagram: int = 0
    #: calls in progress from this peer at most (0 = only sip.max_calls); more get 503 Retry-After
    max_calls: int = 0
    #: this peer's Referred-By may name the fax's recipient (Exchange UM's msExchUMFaxRecipient and
    #: context): only the gateway/PBX that Exchange UM refers fax calls through; from any other
    #: source those fields are ignored, logged and counted
    exchange_um: bool = False
    #: keep a pcap of each call's RTP/UDPTL from this peer (8 MB at most a call) in the call's
    #: diagnostics on its fax page, for a support engineer; off, the media path never looks at it
    capture: bool = False

    def validate(self, prefix: str, errors: list[str]) -> None:
        if not self.name:
            errors.append(f"{prefix}.name: must not be empty")
        try:
            ipaddress.ip_network(self.match, strict=False)
        except ValueError:
            errors.append(f"{prefix}.match: {self.match!r} is not an IP address or network")
        if self.transport and self.transport not in SIP_TRANSPORTS:
            errors.append(
                f"{prefix}.transport: " + one_of(self.transport, SIP_TRANSPORTS, "must be udp, tcp or tls (or absent)")
            )
        if self.t38 not in T38_MODES:
            errors.append(f"{prefix}.t38: " + one_of(self.t38, T38_MODES, "must be off, accept or request"))
        if bool(self.username) != bool(self.password):
            errors.append(f"{prefix}.password: username and password go together")
        if not 0 <= self.max_calls <= MAX_CALLS_LIMIT:
            errors.append(f"{prefix}.max_calls: must be between 0 (no limit of its own) and {MAX_CALLS_LIMIT}")
        if self.t38_max_datagram and not 100 <= self.t38_max_datagram <= 1500:
            errors.append(f"{prefix}.t38_max_datagram: must be 0 (no override) or between 100 and 1500")


@dataclass
class RegistrationConfig:
    """One account we keep registered at a PBX/registrar (``[[sip.registrations]]``)."""

    #: a label for logs and the status page, and the key that matches secrets.toml entries
    name: str = ""
    #: e.g. "sip:pbx.example:5060;transport=tcp"
    registrar: str = ""
    user: str = ""
    #: the digest user name when it differs from `user`
    auth_user: str = ""
    password: str = field(default="", repr=False)
    #: the AoR's host when it is not the registrar's (sip:user@domain)
    domain: str = ""
    expires: int = 3600
    #: "" = send to the registrar itself; else e.g. "sip:192.0.2.5:5060;transport=udp"
    outbound_proxy: str = ""
    #: user part of our Contact; default `user`
    contact_user: str = ""

    def validate(self, prefix: str, errors: list[str], transports: set[str]) -> None:
        from appliance.sip.errors import SipParseError
        from appliance.sip.uri import SipUri  # the config module stays importable without the SIP package

        for key in ("registrar", "outbound_proxy"):
            value = getattr(self, key)
            if not value and key == "outbound_proxy":
                continue
            try:
                uri = SipUri.parse(value)
                if uri.scheme not in ("sip", "sips") or uri.transport not in SIP_TRANSPORTS:
                    raise SipParseError("scheme")
            except SipParseError:
                errors.append(f"{prefix}.{key}: {value!r} is not a sip: URI (transport udp, tcp or tls)")
                continue
            if uri.transport not in transports:
                errors.append(f"{prefix}.{key}: needs a {uri.transport} listener in sip.listen")
        if not self.user or any(c in self.user for c in ' <>"@:;'):
            errors.append(f"{prefix}.user: must be a plain SIP user name")
        if self.contact_user and any(c in self.contact_user for c in ' <>"@:;'):
            errors.append(f"{prefix}.contact_user: must be a plain SIP user name")
        if not 60 <= self.expires <= 604800:
            errors.append(f"{prefix}.expires: must be between 60 and 604800 seconds")


@dataclass
class SipListen:
    transport: str
    host: str
    port: int


def _port_range_problem(ports: list[int]) -> str | None:
    """What is wrong with an RTP port range, said of the first and last port, not of a syntax:
    the file writes [40000, 40999], the settings page 40000-40999."""
    if len(ports) != 2:
        return f"needs two ports, the first and the last (got {len(ports)})"
    first, last = ports
    for what, port in (("first", first), ("last", last)):
        if not 1024 <= port <= 65535:
            return f"the {what} port, {port}, is out of range (1024-65535)"
    if first > last:
        return f"the first port, {first}, is above the last, {last}"
    return None


@dataclass
class SipConfig:
    """SIP listeners, TLS, media ports, registrations and who may call."""

    #: "udp:IP:PORT", "tcp:IP:PORT" or "tls:IP:PORT" (TLS needs tls_cert and tls_key)
    listen: list[str] = field(default_factory=lambda: ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"])
    #: inclusive UDP port range for RTP, one port per call
    rtp_ports: list[int] = field(default_factory=lambda: [40000, 40999])
    #: address put in SDP c= and Contact; empty = the listener's address
    public_address: str = ""
    user_agent: str = "Faxbridge/0.1"
    #: playout delay for received audio, milliseconds (fixed, not adaptive: fax modems want it steady)
    playout_delay_ms: int = 60
    #: PEM certificate chain and key of our TLS listeners (and client certificate for outgoing TLS)
    tls_cert: str = ""
    tls_key: str = ""
    #: CA bundle that verifies peers (client certificates, and servers we connect to); "" = system store
    tls_ca: str = ""
    #: require and verify a client certificate on TLS listeners (needs tls_ca)
    tls_verify_client: bool = False
    #: accept calls from addresses that match no [[sip.peers]] entry (with t38 = "accept")
    allow_unknown: bool = False
    #: per source IP: requests that start transactions, per second, and the burst allowed
    rate_limit: float = 20.0
    rate_burst: int = 40
    #: realm of the digest challenges we send to peers that must authenticate
    auth_realm: str = "faxbridge"
    #: incoming calls in progress at most; more get 503 with Retry-After. 24 fits a Raspberry Pi 4's
    #: one event-loop core with room to spare (make bench: 96 calls on a core 3-4 times faster)
    max_calls: int = 24
    #: accepted TCP/TLS connections, in all and per source address; more are closed at once
    max_connections: int = 128
    max_connections_per_address: int = 16
    #: seconds an accepted connection may stay silent (no complete message) while no call uses it
    connection_idle_timeout: float = 120.0
    peers: list[PeerConfig] = field(default_factory=list)
    registrations: list[RegistrationConfig] = field(default_factory=list)

    def listeners(self) -> list[SipListen]:
        out = []
        for item in self.listen:
            transport, _, rest = item.partition(":")
            transport = transport.lower()
            host, port = parse_hostport(rest, 5061 if transport == "tls" else 5060)
            out.append(SipListen(transport, host, port))
        return out

    def validate(self, errors: list[str]) -> None:
        transports: set[str] = set()
        for item in self.listen:
            transport, sep, rest = item.partition(":")
            if not sep:
                errors.append(f"sip.listen: {item!r} is not transport:address:port (e.g. udp:0.0.0.0:5060)")
                continue
            if transport.lower() not in SIP_TRANSPORTS:
                errors.append(
                    f"sip.listen: {item!r}: transport must be udp, tcp or tls"
                    + did_you_mean(transport.lower(), SIP_TRANSPORTS)
                )
                continue
            transports.add(transport.lower())
            try:
                host, _ = parse_hostport(rest, 5060)
            except ValueError as e:
                errors.append(f"sip.listen: {item!r}: {e}")
                continue
            try:
                ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                errors.append(f"sip.listen: {item!r}: {host!r} is not an IP address (e.g. 0.0.0.0 for all)")
        if why := _port_range_problem(self.rtp_ports):
            errors.append(f"sip.rtp_ports: {why}")
        if not 20 <= self.playout_delay_ms <= 500:
            errors.append("sip.playout_delay_ms: must be between 20 and 500")
        if "tls" in transports and not (self.tls_cert and self.tls_key):
            errors.append("sip.tls_cert: a tls listener needs sip.tls_cert and sip.tls_key")
        if self.tls_verify_client and not self.tls_ca:
            errors.append("sip.tls_verify_client: needs sip.tls_ca (the CA that signs client certificates)")
        if not 0.1 <= self.rate_limit <= 10000:
            errors.append("sip.rate_limit: must be between 0.1 and 10000 requests per second")
        if not 1 <= self.rate_burst <= 100000:
            errors.append("sip.rate_burst: must be between 1 and 100000")
        if not 1 <= self.max_calls <= MAX_CALLS_LIMIT:
            errors.append(f"sip.max_calls: must be between 1 and {MAX_CALLS_LIMIT}")
        elif _port_range_problem(self.rtp_ports) is None:
            first, last = self.rtp_ports
            ports = (last - (first + (first & 1))) // 2 + 1
            if self.max_calls > ports:
                errors.append(
                    f"sip.max_calls: {self.max_calls} calls need {self.max_calls} RTP ports (one even "
                    f"port each); the RTP ports from {first} to {last} hold {ports}"
                )
        if not 1 <= self.max_connections <= 10000:
            errors.append("sip.max_connections: must be between 1 and 10000")
        if not 1 <= self.max_connections_per_address <= self.max_connections:
            errors.append("sip.max_connections_per_address: must be between 1 and sip.max_connections")
        if not 10 <= self.connection_idle_timeout <= 86400:
            errors.append("sip.connection_idle_timeout: must be between 10 and 86400 seconds")
        if not self.auth_realm or any(c in self.auth_realm for c in '"\\\r\n'):
            errors.append("sip.auth_realm: must be a non-empty plain string")
        names: set[str] = set()
        for i, peer in enumerate(self.peers):
            peer.validate(f"sip.peers[{i}]", errors)
            if peer.name and peer.name in names:
                errors.append(f"sip.peers[{i}].name: {peer.name!r} is used twice")
            names.add(peer.name)
        names = set()
        for i, reg in enumerate(self.registrations):
            reg.validate(f"sip.registrations[{i}]", errors, transports)
            if reg.name and reg.name in names:
                errors.append(f"sip.registrations[{i}].name: {reg.name!r} is used twice")
            names.add(reg.name)

    def check_files(self, resolve: Callable[[str], Path], errors: list[str]) -> None:
        """TLS files must exist when the config is loaded, not at the first TLS connection."""
        for key in ("tls_cert", "tls_key", "tls_ca"):
            value = getattr(self, key)
            try:
                found = not value or resolve(value).is_file()
            except OSError:  # a name too long for the file system, or a loop of links
                found = False
            if not found:
                errors.append(f"sip.{key}: {value!r} is not a readable file")


@dataclass
class FaxConfig:
    """The fax engine's settings for received calls."""

    #: our own identity (CSI), at most 20 characters of digits, space and '+'
    ident: str = ""
    ecm: bool = True
    #: end a call that shows no fax signal after this many seconds
    no_signal_timeout: int = 60
    #: end a call this many seconds after phase E if the far end has not hung up
    post_phase_e_timeout: int = 10
    #: absolute limit on one call, seconds
    max_call_duration: int = 3600

    def validate(self, errors: list[str]) -> None:
        if len(self.ident) > 20 or any(c not in "0123456789 +" for c in self.ident):
            errors.append("fax.ident: at most 20 characters of digits, spaces and '+'")
        for name, lo, hi in (
            ("no_signal_timeout", 5, 600),
            ("post_phase_e_timeout", 1, 120),
            ("max_call_duration", 60, 86400),
        ):
            if not lo <= getattr(self, name) <= hi:
                errors.append(f"fax.{name}: must be between {lo} and {hi}")


@dataclass
class SpoolConfig:
    #: received faxes and the spool database (relative: in the state directory)
    dir: str = "spool"

    def validate(self, errors: list[str]) -> None:
        if not self.dir:
            errors.append("spool.dir: must not be empty")


#: delivery.starttls: "" is "required", except for a server on loopback
STARTTLS_MODES = ("", "required", "opportunistic", "none")


def _is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (a name that merely resolves there does not count)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


@dataclass
class DeliveryConfig:
    """Where received faxes go, and how the appliance proves who it is to Exchange."""

    #: smtp (a submission server or relay connector), direct (the recipient domain's MX),
    #: graph (Microsoft Graph sendMail) or maildir (a local Maildir)
    backend: str = "maildir"
    #: smtp://host:port or smtps://host:port; for maildir, the Maildir path; unused for direct/graph
    url: str = "Maildir"
    from_: str = "fax@localhost"
    #: "" (the default: "required", but "opportunistic" for a server on this box's loopback),
    #: "required", "opportunistic" (STARTTLS when offered, else in clear) or "none"
    starttls: str = ""
    #: CA bundle for verifying the server (SMTP, token endpoint, Graph); empty = system store
    ca_file: str = ""
    verify_tls: bool = True
    #: smtp authentication: "" (password when username is set, else none), "password",
    #: "oauth2" (XOAUTH2 with a client-credentials token) or "none"
    auth: str = ""
    username: str = ""
    password: str = ""
    #: Entra ID (Azure AD) app registration, for auth = "oauth2" and the graph backend
    tenant: str = ""
    client_id: str = ""
    client_secret: str = ""
    #: PEM file with the app's certificate and private key (instead of client_secret)
    client_certificate: str = ""
    #: the client secret's expiry as Entra ID shows it (YYYY-MM-DD): the dashboard warns before it
    client_secret_expires: str = ""
    #: token scope; empty = https://outlook.office365.com/.default (smtp) or
    #: https://graph.microsoft.com/.default (graph)
    oauth_scope: str = ""
    authority: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    #: PEM certificate (and key) presented to the server: a certificate-matched relay connector
    tls_client_cert: str = ""
    tls_client_key: str = ""
    #: direct backend: the MX port (25 on the internet) and resolvers (empty = the system's)
    direct_port: int = 25
    dns_servers: list[str] = field(default_factory=list)
    dns_port: int = 53
    #: a Maildir that also gets a copy of every fax, beside the backend; empty = none
    archive: str = ""
    timeout: int = 60
    #: first retry after this many seconds, doubling each time (with jitter)
    retry_initial: float = 30.0
    retry_max: float = 1800.0
    #: give up (job becomes dead) when the fax has waited this long, seconds
    max_age: int = 5 * 86400
    #: where dead-letter alerts go (a mail address); empty = no alerts, only the log
    admin: str = ""
    #: a rendered message larger than this is dead at once (Exchange Online's default: 35 MB)
    max_message_bytes: int = 35 * 1024 * 1024

    BACKENDS = ("smtp", "direct", "graph", "maildir")
    #: Graph's own ceiling for a message with attachments (upload sessions)
    GRAPH_MAX_BYTES = 150 * 1024 * 1024

    def starttls_for(self, host: str, address: str | None = None) -> str:
        """The STARTTLS policy for one server: the setting, else "required" unless the server's
        name and the address connected to (when known) are both loopback, where nothing leaves
        the box and a local relay without TLS is fine."""
        if self.starttls:
            return self.starttls
        local = _is_loopback_host(host) and (address is None or _is_loopback_host(address))
        return "opportunistic" if local else "required"

    def starttls_in_effect(self) -> str:
        """The policy with its reason, as check-config and the settings page show it."""
        if self.backend not in ("smtp", "direct"):
            return f"not used by the {self.backend} backend"
        if self.starttls:
            return f"{self.starttls} (set in delivery.starttls)"
        if self.backend == "direct":
            return "required (the default: the recipients' MX hosts are not on this box)"
        host = _url_host(self.url)
        policy = self.starttls_for(host)
        where = "is on this box (loopback)" if policy == "opportunistic" else "is not on this box"
        return f"{policy} (the default: {host or self.url} {where})"

    @property
    def auth_mode(self) -> str:
        """The effective smtp authentication: password, oauth2 or none."""
        return self.auth or ("password" if self.username else "none")

    @property
    def scope(self) -> str:
        if self.oauth_scope:
            return self.oauth_scope
        if self.backend == "graph":
            return "https://graph.microsoft.com/.default"
        return "https://outlook.office365.com/.default"

    @property
    def uses_oauth(self) -> bool:
        return self.backend == "graph" or (self.backend == "smtp" and self.auth_mode == "oauth2")

    def validate(self, errors: list[str]) -> None:
        if self.backend not in self.BACKENDS:
            errors.append("delivery.backend: " + one_of(self.backend, self.BACKENDS))
        elif self.backend == "smtp" and not self.url.startswith(("smtp://", "smtps://")):
            errors.append("delivery.url: must start with smtp:// or smtps:// for the smtp backend")
        if self.starttls not in STARTTLS_MODES:
            errors.append(
                "delivery.starttls: "
                + one_of(
                    self.starttls,
                    STARTTLS_MODES,
                    'must be "" (required, except on loopback), required, opportunistic or none',
                )
            )
        if why := address_problem(self.from_):
            errors.append(f"delivery.from: {self.from_!r} is not a mail address: {why}")
        if self.auth not in ("", "password", "oauth2", "none"):
            errors.append(
                "delivery.auth: "
                + one_of(self.auth, ("password", "oauth2", "none"), "must be password, oauth2 or none")
            )
        if self.backend == "smtp" and self.auth_mode == "password" and not self.username:
            errors.append('delivery.username: needed for auth = "password"')
        if self.backend == "smtp" and self.auth_mode == "oauth2" and not self.username:
            errors.append('delivery.username: needed for auth = "oauth2" (the mailbox the token may send as)')
        if self.uses_oauth:
            why = "the graph backend" if self.backend == "graph" else 'auth = "oauth2"'
            if not self.tenant:
                errors.append(f"delivery.tenant: needed for {why} (the directory (tenant) ID or domain)")
            if not self.client_id:
                errors.append(f"delivery.client_id: needed for {why} (the app registration's application ID)")
            if bool(self.client_secret) == bool(self.client_certificate):
                errors.append(
                    f"delivery.client_secret: {why} needs exactly one of client_secret "
                    "(in secrets.toml) or client_certificate"
                )
            if not self.authority.startswith("https://"):
                errors.append("delivery.authority: must be an https:// URL")
            if any(c in self.tenant for c in "/?#@ "):
                errors.append("delivery.tenant: must be a tenant ID or domain, not a URL")
        if self.backend == "graph":
            if not self.graph_url.startswith("https://"):
                errors.append("delivery.graph_url: must be an https:// URL")
            if self.max_message_bytes > self.GRAPH_MAX_BYTES:
                errors.append(f"delivery.max_message_bytes: Graph accepts at most {self.GRAPH_MAX_BYTES} bytes")
        if self.client_secret_expires:
            try:
                datetime.date.fromisoformat(self.client_secret_expires)
            except ValueError:
                errors.append(
                    "delivery.client_secret_expires: must be a date, YYYY-MM-DD (the secret's "
                    "Expires column in Entra ID)"
                )
        if bool(self.tls_client_key) and not self.tls_client_cert:
            errors.append("delivery.tls_client_key: given without delivery.tls_client_cert")
        if not 1 <= self.direct_port <= 65535:
            errors.append("delivery.direct_port: must be a port number")
        if not 1 <= self.dns_port <= 65535:
            errors.append("delivery.dns_port: must be a port number")
        for server in self.dns_servers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                errors.append(f"delivery.dns_servers: {server!r} is not an IP address")
        if not 0.1 <= self.retry_initial <= self.retry_max:
            errors.append("delivery.retry_initial: must be >= 0.1 and <= delivery.retry_max")
        if not 5 <= self.timeout <= 600:
            errors.append("delivery.timeout: must be between 5 and 600")
        if self.admin and (why := address_problem(self.admin)):
            errors.append(f"delivery.admin: {self.admin!r} is not a mail address: {why}")
        if self.max_message_bytes < 64 * 1024:
            errors.append("delivery.max_message_bytes: must be at least 65536")

    def secrets(self) -> list[str]:
        """Values that must never appear in a log, a record or a reply shown to anyone."""
        return [s for s in (self.password, self.client_secret) if s]

    def scrub(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, "********")
        return text


# -- routing rules ([[routing.rules]], see appliance/routing/router.py) -------------------------
ROUTE_FORMATS = ("tiff", "pdf", "both")
ROUTE_TIFF = ("tiff-f", "profile-s")
#: what a rule's ``subject`` template may name; anything else is a load-time error
SUBJECT_FIELDS = ("caller", "called", "tsi", "pages", "line", "date")


def subject_fields(template: str, known: tuple[str, ...] = SUBJECT_FIELDS) -> list[str]:
    """The placeholders a subject template names; ValueError for a malformed one, so the owner
    learns of it at load time, not when a fax arrives. ``known``: the placeholders allowed."""
    import string

    names: list[str] = []
    for _text, fname, spec, conv in string.Formatter().parse(template):
        if fname is None:
            continue
        if fname not in known:
            hint = did_you_mean(fname, known).replace("'", "")
            raise ValueError(
                f"unknown placeholder {{{fname}}} (known: " + ", ".join(f"{{{f}}}" for f in known) + ")" + hint
            )
        if spec or conv:
            raise ValueError(f"placeholder {{{fname}}}: no format spec or conversion allowed")
        names.append(fname)
    return names


@dataclass
class RouteRuleConfig:
    """One ``[[routing.rules]]`` entry: every match field given must match; the first rule wins.

    Regexes are searched (anchor them with ^...$ for a whole match) and compiled at load time,
    so a typo is reported naming the rule rather than failing on the first fax.
    """

    name: str = ""
    # -- match (all optional) --
    called: str = ""
    called_prefix: str = ""
    called_pattern: str = ""
    #: exact or a glob: "modem:*", "sip:pbx-*"
    line: str = ""
    caller: str = ""
    caller_prefix: str = ""
    #: regex on the sender's TSI, case-insensitive
    tsi: str = ""
    #: true: referred by Exchange UM; false: not referred; a string: regex on the UM recipient
    um_recipient: bool | str | None = None
    # -- actions --
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    #: deliver to the address Exchange UM named (before ``to``)
    use_um_recipient: bool = False
    format: str = "tiff"
    #: "" = "tiff-f", or "profile-s" for an Exchange UM referral (UM partner mode's own format)
    tiff: str = ""
    #: "" = delivery's own subject; else a template with SUBJECT_FIELDS placeholders
    subject: str = ""

    @staticmethod
    def label(index: int, values: dict[str, Any]) -> str:
        """How errors name a rule: by its name, else by its 1-based position."""
        name = values.get("name")
        return f"routing rule {name!r}" if isinstance(name, str) and name else f"routing rule {index + 1}"

    def validate(self, label: str, errors: list[str]) -> None:
        import re

        for key in ("called", "called_prefix", "caller", "caller_prefix"):
            value = getattr(self, key)
            if value and not any(c.isdigit() for c in value):
                errors.append(f"{label}.{key}: {value!r} has no digits")
        patterns = [("called_pattern", self.called_pattern, 0), ("tsi", self.tsi, re.IGNORECASE)]
        if isinstance(self.um_recipient, str):
            if not self.um_recipient:
                errors.append(f"{label}.um_recipient: empty; use true or a pattern")
            patterns.append(("um_recipient", self.um_recipient, re.IGNORECASE))
        for key, pattern, flags in patterns:
            if pattern:
                try:
                    re.compile(pattern, flags)
                except (re.error, OverflowError, RecursionError) as e:  # a{99999999999}, ((((...
                    errors.append(f"{label}.{key}: bad regex {pattern!r}: {e}")
        if self.use_um_recipient and self.um_recipient in (None, False):
            errors.append(f"{label}.use_um_recipient: needs um_recipient = true or a pattern")
        if not self.to and not self.use_um_recipient:
            errors.append(f"{label}.to: missing (a list of addresses, or use_um_recipient = true)")
        for key in ("to", "cc"):
            for addr in getattr(self, key):
                if why := address_problem(addr):
                    errors.append(f"{label}.{key}: {addr!r} is not a mail address: {why}")
        if self.format not in ROUTE_FORMATS:
            errors.append(
                f"{label}.format: {self.format!r}: must be one of "
                + ", ".join(ROUTE_FORMATS)
                + did_you_mean(self.format, ROUTE_FORMATS)
            )
        if self.tiff and self.tiff not in ROUTE_TIFF:
            errors.append(
                f"{label}.tiff: {self.tiff!r}: must be one of "
                + ", ".join(ROUTE_TIFF)
                + did_you_mean(self.tiff, ROUTE_TIFF)
            )
        try:
            subject_fields(self.subject)
        except ValueError as e:
            errors.append(f"{label}.subject: {e}")


# -- end routing rules ------------------------------------------------------------------------


_DOMAIN_RE = re.compile(r"(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")


def mail_domain(addr: str) -> str:
    """The domain of a mail address as accepted_domains compares it: lower case, no final dot."""
    return addr.rpartition("@")[2].strip().rstrip(".").lower()


@dataclass
class RoutingConfig:
    """Ordered rules, then called number -> recipient, else the default.

    Every address a fax can go to must be in ``accepted_domains``: a rule, the called table or the
    default outside them is a load-time error, and a recipient named at call time (Exchange UM's)
    or by a resend outside them is refused.  Matching is exact and case-insensitive: a subdomain
    is accepted only when it is listed itself (Exchange's own accepted domains work the same way).
    """

    default: str = "faxes@localhost"
    #: the only mail domains faxes may be sent to, e.g. ["contoso.com"]; empty = the domain of `default`
    accepted_domains: list[str] = field(default_factory=list)
    called: dict[str, str] = field(default_factory=dict)
    rules: list[RouteRuleConfig] = field(default_factory=list)

    def domains(self) -> list[str]:
        """The accepted domains in force (lower case): the list, else the default's domain."""
        if self.accepted_domains:
            return [d.strip().rstrip(".").lower() for d in self.accepted_domains]
        return [mail_domain(self.default)] if "@" in self.default else []

    def refusal(self, addr: str) -> str | None:
        """Why a fax may not be sent to ``addr`` (naming the address and the setting), or None."""
        if "@" in addr and mail_domain(addr) in self.domains():
            return None
        where = (
            ", ".join(self.domains())
            if self.accepted_domains
            else f"not set, so only the domain of routing.default: {', '.join(self.domains()) or 'none'}"
        )
        return f"{addr!r} is outside routing.accepted_domains ({where})"

    def validate(self, errors: list[str]) -> None:
        for i, domain in enumerate(self.accepted_domains):
            d = domain.strip().rstrip(".").lower()
            if "@" in d:
                errors.append(f"routing.accepted_domains[{i}]: {domain!r}: write the domain alone, e.g. contoso.com")
            elif not _DOMAIN_RE.fullmatch(d):
                errors.append(
                    f"routing.accepted_domains[{i}]: {domain!r} is not a domain name (no "
                    "wildcards: list each subdomain itself; IDNs in their xn-- form)"
                )
            elif why := domain_problem(d):
                errors.append(f"routing.accepted_domains[{i}]: {domain!r} is not a domain name: {why}")
        addresses = [("default", self.default)] + [(f"called.{k}", v) for k, v in self.called.items()]
        for key, addr in addresses:
            if why := address_problem(addr):
                errors.append(f"routing.{key}: {addr!r} is not a mail address: {why}")
            elif why := self.refusal(addr):
                errors.append(f"routing.{key}: {why}")
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            label = RouteRuleConfig.label(i, {"name": rule.name})
            if rule.name and rule.name in seen:
                errors.append(f"{label}: the name is used twice")
            seen.add(rule.name)
            rule.validate(label, errors)
            for key in ("to", "cc"):
                for addr in getattr(rule, key):
                    if address_problem(addr) is None and (why := self.refusal(addr)):
                        errors.append(f"{label}.{key}: {why}")


MODEM_CLASSES = ("1", "1.0", "2", "2.0")
MODEM_FLOW = ("rtscts", "xonxoff", "none")
MODEM_SPEEDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800)


@dataclass
class ModemConfig:
    """Serial fax modems (appliance/modem): which devices, how to talk to them, when to answer."""

    #: device paths: /dev/serial/by-id/... (stable across re-plugging), /dev/ttyUSB0, a virtual link
    devices: list[str] = field(default_factory=list)
    #: the first class the modem offers wins; Class 1 runs our own T.30 (ECM, full trace)
    class_preference: list[str] = field(default_factory=lambda: ["1.0", "1", "2.0", "2"])
    #: rings before answering
    rings: int = 2
    #: extra AT commands sent after the modem's own init (each without "\r", e.g. "ATM0")
    init: list[str] = field(default_factory=list)
    #: our CSI on modem calls; "" = fax.ident
    ident: str = ""
    #: ask the modem for caller ID (NMBR/NAME/NDID) between the rings
    caller_id: bool = True
    #: serial speed between us and the modem, baud
    speed: int = 115200
    #: "rtscts" (hardware), "xonxoff" (software) or "none"
    flow_control: str = "rtscts"
    #: put any serial modem that is plugged in into service, not only the listed devices
    auto_adopt: bool = False
    ecm: bool = True

    def validate(self, errors: list[str]) -> None:
        seen: set[str] = set()
        for i, dev in enumerate(self.devices):
            if not dev.startswith("/") or any(c in dev for c in "\0\r\n"):
                errors.append(f"modem.devices[{i}]: {dev!r} is not an absolute device path")
            elif dev in seen:
                errors.append(f"modem.devices[{i}]: {dev!r} is listed twice")
            seen.add(dev)
        bad = [c for c in self.class_preference if c not in MODEM_CLASSES]
        if bad or not self.class_preference:
            errors.append(
                f"modem.class_preference: each entry one of {', '.join(MODEM_CLASSES)}"
                + (
                    f", not {', '.join(map(repr, bad))}" + did_you_mean(bad[0], MODEM_CLASSES)
                    if bad
                    else " (at least one)"
                )
            )
        elif len(set(self.class_preference)) != len(self.class_preference):
            errors.append("modem.class_preference: a class is listed twice")
        if not 1 <= self.rings <= 10:
            errors.append("modem.rings: must be between 1 and 10")
        for i, cmd in enumerate(self.init):
            if not cmd.upper().startswith("AT") or len(cmd) > 60 or any(not 0x20 <= ord(c) <= 0x7E for c in cmd):
                errors.append(
                    f"modem.init[{i}]: {cmd!r} must be one AT command of printable ASCII, at most 60 characters"
                )
        if len(self.ident) > 20 or any(c not in "0123456789 +" for c in self.ident):
            errors.append("modem.ident: at most 20 characters of digits, spaces and '+'")
        if self.speed not in MODEM_SPEEDS:
            errors.append(f"modem.speed: must be one of {', '.join(map(str, MODEM_SPEEDS))}")
        if self.flow_control not in MODEM_FLOW:
            errors.append(
                "modem.flow_control: " + one_of(self.flow_control, MODEM_FLOW, "must be rtscts, xonxoff or none")
            )


#: the kinds of number a route may forbid (appliance/outbound/numbers.py says how a number's kind
#: is known); emergency numbers are refused on every route whether listed or not
OUTBOUND_KINDS = ("emergency", "premium", "international", "national", "local")
NUMBER_FORMATS = ("e164", "international", "national", "local")
OUTBOUND_RESOLUTIONS = ("fine", "standard")
OUTBOUND_REPORTS = ("always", "failure", "never")
#: the placeholders of the transmit header line
HEADER_FIELDS = ("ident", "date", "time", "page", "pages", "name")
_ROUTE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
#: a modem line's name: its device's base name in calls/modem_line.py short_name's alphabet
_LINE_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: what {number} is filled with to check a route's SIP URI template (the longest digits it gets)
_SAMPLE_NUMBER = "+123456789012345"


def _digits_problem(value: str, lo: int, hi: int) -> str | None:
    """Why ``value`` is not lo..hi ASCII digits, or None."""
    if not value.isascii() or not value.isdigit() or not lo <= len(value) <= hi:
        return f"{value!r} must be {lo}-{hi} digits" if lo != hi else f"{value!r} must be {lo} digits"
    return None


@dataclass
class OutboundRouteConfig:
    """One ``[[outbound.routes]]`` entry: which numbers (a regex searched in the E.164 number) go
    out which way; the first route that matches and does not forbid the number wins."""

    name: str = ""
    match: str = ""
    #: "sip:{number}@pbx.example.com[:port][;transport=tcp|tls]", "modem:<device or line>" or "modem:any"
    via: str = ""
    #: what {number} and the dialled digits are: e164, national, international or local
    number_format: str = "e164"
    #: an outside-line prefix dialled first ("9")
    dial_prefix: str = ""
    #: off | accept | request, as on receive
    t38: str = "accept"
    #: kinds of number this route refuses (premium, international, ...)
    forbid: list[str] = field(default_factory=list)
    #: seconds between attempts after a busy, unanswered or failed call; its length is the number of retries
    retries: list[int] = field(default_factory=lambda: [120, 300, 600])
    #: simultaneous calls on this route
    max_calls: int = 1

    @property
    def kind(self) -> str:
        """The way out ``via`` names: "sip" (sips: too) or "modem" (else what it starts with, refused at load)."""
        kind = self.via.partition(":")[0].lower()
        return "sip" if kind == "sips" else kind

    @property
    def target(self) -> str:
        """What follows "modem:" (a device path, a line name or "any"); the URI template for SIP."""
        return self.via.partition(":")[2] if self.kind == "modem" else self.via

    def sip_uri(self, dial: str) -> str:
        """The Request-URI for one call: the template with {number} filled in (never format(),
        so no other braces are ever read)."""
        return self.via.replace("{number}", dial)

    def validate(self, prefix: str, errors: list[str]) -> None:
        if not self.name:
            errors.append(f"{prefix}.name: missing (each route needs a name: the queue and the reports use it)")
        elif not _ROUTE_NAME_RE.fullmatch(self.name):
            errors.append(
                f"{prefix}.name: {self.name!r}: letters, digits, '.', '_' and '-', at most 32, starting with a "
                "letter or digit"
            )
        if not self.match:
            errors.append(
                f'{prefix}.match: missing (a regex on the E.164 number, e.g. "^\\\\+1"; "." for every number)'
            )
        else:
            try:
                re.compile(self.match)
            except (re.error, OverflowError, RecursionError) as e:
                errors.append(f"{prefix}.match: bad regex {self.match!r}: {e}")
        self._validate_via(prefix, errors)
        if self.number_format not in NUMBER_FORMATS:
            errors.append(f"{prefix}.number_format: " + one_of(self.number_format, NUMBER_FORMATS))
        elif self.number_format == "e164" and self.kind == "modem":
            errors.append(
                f"{prefix}.number_format: a modem cannot dial '+': use international, national or local "
                "on a modem route"
            )
        allowed = "0123456789*" + ("," if self.kind == "modem" else "")
        if len(self.dial_prefix) > 8 or any(c not in allowed for c in self.dial_prefix):
            errors.append(
                f"{prefix}.dial_prefix: {self.dial_prefix!r}: at most 8 of digits and '*'"
                + (" (',' for a pause)" if self.kind == "modem" else "")
            )
        if self.t38 not in T38_MODES:
            errors.append(f"{prefix}.t38: " + one_of(self.t38, T38_MODES, "must be off, accept or request"))
        for i, kind in enumerate(self.forbid):
            if kind not in OUTBOUND_KINDS:
                errors.append(f"{prefix}.forbid[{i}]: " + one_of(kind, OUTBOUND_KINDS))
        if len(self.retries) > 10:
            errors.append(f"{prefix}.retries: at most 10 retries, not {len(self.retries)}")
        bad = [seconds for seconds in self.retries if not 10 <= seconds <= 86400]
        if bad:
            errors.append(f"{prefix}.retries: each between 10 and 86400 seconds, not {bad[0]}")
        if not 1 <= self.max_calls <= 32:
            errors.append(f"{prefix}.max_calls: must be between 1 and 32")

    def _validate_via(self, prefix: str, errors: list[str]) -> None:
        if self.kind == "modem":
            target = self.target
            device = target.startswith("/") and len(target) <= 255 and all(c.isprintable() and c != " " for c in target)
            if not (target == "any" or device or _LINE_NAME_RE.fullmatch(target)):
                errors.append(
                    f"{prefix}.via: {self.via!r}: after 'modem:' a device path (/dev/ttyUSB0), a line name "
                    "(ttyUSB0) or 'any'"
                )
            return
        if self.kind != "sip":
            errors.append(
                f"{prefix}.via: {self.via!r}: must be a SIP URI with {{number}} (sip:{{number}}@pbx.example.com) "
                "or modem:<line> or modem:any"
            )
            return
        if (
            self.via.count("{number}") != 1
            or self.via.replace("{number}", "").count("{")
            or "}" in self.via.replace("{number}", "")
        ):
            errors.append(
                f"{prefix}.via: {self.via!r}: needs {{number}} once, where the number goes "
                "(sip:{number}@pbx.example.com), and no other braces"
            )
            return
        from appliance.sip.errors import SipParseError
        from appliance.sip.uri import SipUri  # the config module stays importable without the SIP package

        try:
            uri = SipUri.parse(self.sip_uri(_SAMPLE_NUMBER))
            if uri.scheme not in ("sip", "sips") or uri.transport not in SIP_TRANSPORTS:
                raise SipParseError("scheme")
        except SipParseError:
            errors.append(
                f"{prefix}.via: {self.via!r} is not a SIP URI once {{number}} is filled in "
                "(sip:{number}@host[:port][;transport=udp|tcp|tls])"
            )
            return
        if uri.user is None or "{number}" not in self.via.partition("@")[0]:
            errors.append(f"{prefix}.via: {self.via!r}: {{number}} belongs in the user part, before the '@'")


@dataclass
class OutboundConfig:
    """Sending faxes (appliance/outbound): the ways in, the header line, numbers and routes."""

    enabled: bool = False
    #: our TSI; "" = fax.ident
    ident: str = ""
    #: the transmit header line on every page; "" = none
    header: str = "{ident} {date} {time} page {page}/{pages}"
    #: the sender's name for the header ({name}) and cover page
    name: str = ""
    #: "fine" (204x196 dpi) or "standard" (204x98)
    resolution: str = "fine"
    country_code: str = ""
    area_code: str = ""
    international_prefix: str = "00"
    national_prefix: str = "0"
    max_pages: int = 50
    #: all the files of one fax together, bytes
    max_bytes: int = 20_000_000
    #: mail to fax: addresses the SMTP listener binds ("0.0.0.0:25"); empty = no listener
    smtp_listen: list[str] = field(default_factory=list)
    #: mail to <number>@domain is a fax to <number>
    domain: str = ""
    #: sender addresses (globs) allowed, in addition to authentication
    allowed_senders: list[str] = field(default_factory=list)
    #: connectors (IPs or networks) that may submit without SMTP AUTH: Exchange's send connector
    trusted_relays: list[str] = field(default_factory=list)
    #: Exchange Online: the shared mailbox watched through Graph; "" = none
    graph_mailbox: str = ""
    graph_poll_seconds: int = 60
    #: the report to the sender: always, failure (only when it failed) or never
    report: str = "always"
    routes: list[OutboundRouteConfig] = field(default_factory=list)

    def route(self, name: str) -> OutboundRouteConfig | None:
        """The route called ``name`` (a queued job keeps only the name), or None."""
        return next((r for r in self.routes if r.name == name), None)

    def validate(self, errors: list[str]) -> None:
        p = "outbound"
        if len(self.ident) > 20 or any(c not in "0123456789 +" for c in self.ident):
            errors.append(f"{p}.ident: at most 20 characters of digits, spaces and '+'")
        if len(self.header) > 100 or any(not c.isprintable() for c in self.header):
            errors.append(f"{p}.header: at most 100 printable characters")
        else:
            try:
                subject_fields(self.header, HEADER_FIELDS)
            except ValueError as e:
                errors.append(f"{p}.header: {e}")
        if len(self.name) > 60 or any(not c.isprintable() for c in self.name):
            errors.append(f"{p}.name: at most 60 printable characters")
        if self.resolution not in OUTBOUND_RESOLUTIONS:
            errors.append(f"{p}.resolution: " + one_of(self.resolution, OUTBOUND_RESOLUTIONS))
        self._validate_numbering(errors)
        if not 1 <= self.max_pages <= 1000:
            errors.append(f"{p}.max_pages: must be between 1 and 1000")
        if not 10_000 <= self.max_bytes <= 200_000_000:
            errors.append(f"{p}.max_bytes: must be between 10000 and 200000000 (200 MB)")
        self._validate_mail(errors)
        if self.report not in OUTBOUND_REPORTS:
            errors.append(f"{p}.report: " + one_of(self.report, OUTBOUND_REPORTS))
        names: set[str] = set()
        for i, route in enumerate(self.routes):
            route.validate(f"{p}.routes[{i}]", errors)
            if route.name and route.name in names:
                errors.append(f"{p}.routes[{i}].name: {route.name!r} is used twice")
            names.add(route.name)
            geographic = [k for k in route.forbid if k in ("international", "national", "local")]
            if geographic and not self.country_code:
                errors.append(
                    f"{p}.routes[{i}].forbid: {geographic[0]!r} needs outbound.country_code (which country is ours)"
                )
            if route.number_format in ("international", "national", "local") and not self.international_prefix:
                errors.append(
                    f"{p}.routes[{i}].number_format: {route.number_format!r} needs outbound.international_prefix "
                    "(for numbers abroad)"
                )
            if route.number_format in ("national", "local") and not self.country_code:
                errors.append(f"{p}.routes[{i}].number_format: {route.number_format!r} needs outbound.country_code")
        if self.enabled and not self.routes:
            errors.append(
                f"{p}.routes: sending is enabled but there is no route out: add an [[outbound.routes]] entry "
                '(name, match = "^\\\\+", via = "sip:{number}@pbx.example.com" or "modem:any")'
            )

    def check_ways_out(self, sip: SipConfig, modem: ModemConfig, errors: list[str]) -> None:
        """Each route's way out must exist in the other sections: a modem route's line among
        modem.devices (unless modems are adopted as plugged in), a SIP route's transport among
        sip.listen's (calls go out from the listener of their transport, as registrations do)."""
        from appliance.sip.uri import SipUri

        transports = {item.partition(":")[0].lower() for item in sip.listen}
        names = {os.path.basename(d.rstrip("/")) for d in modem.devices}
        for i, route in enumerate(self.routes):
            key = f"outbound.routes[{i}].via"
            malformed: list[str] = []
            route._validate_via(key, malformed)
            if malformed:
                continue  # validate says what is wrong with it
            if route.kind == "modem" and not modem.auto_adopt:
                target = route.target
                if not modem.devices:
                    errors.append(f"{key}: {route.via!r}: no modem is configured (modem.devices, or modem.auto_adopt)")
                elif target.startswith("/") and target not in modem.devices:
                    errors.append(f"{key}: {target!r} is not one of modem.devices")
                elif not target.startswith("/") and target != "any" and target not in names:
                    errors.append(
                        f"{key}: no modem line {target!r} among modem.devices (lines: {', '.join(sorted(names))})"
                    )
            elif route.kind == "sip":
                transport = SipUri.parse(route.sip_uri(_SAMPLE_NUMBER)).transport
                if transport not in transports:
                    errors.append(f"{key}: a {transport} call needs a {transport} listener in sip.listen")

    def _validate_numbering(self, errors: list[str]) -> None:
        p = "outbound"
        if self.country_code:
            if why := _digits_problem(self.country_code, 1, 3):
                errors.append(f"{p}.country_code: {why} (1, 44, 49, ...; no + or 00)")
            elif self.country_code.startswith("0"):
                errors.append(f"{p}.country_code: {self.country_code!r}: no country code starts with 0")
            elif any(known != self.country_code and known.startswith(self.country_code) for known in _KNOWN_CODES):
                errors.append(
                    f"{p}.country_code: {self.country_code!r} is only the start of a country code (1, 44, 49, ...)"
                )
        if self.area_code:
            if why := _digits_problem(self.area_code, 1, 6):
                errors.append(f"{p}.area_code: {why}, without the trunk prefix (30 for Berlin, not 030)")
            elif not self.country_code:
                errors.append(f"{p}.area_code: needs outbound.country_code")
            elif self.national_prefix and self.area_code.startswith(self.national_prefix) and self.country_code != "1":
                errors.append(
                    f"{p}.area_code: {self.area_code!r}: write it without the trunk prefix "
                    f"{self.national_prefix!r} ({self.area_code[len(self.national_prefix) :]!r})"
                )
            elif self.country_code == "1" and len(self.area_code) != 3:
                errors.append(f"{p}.area_code: {self.area_code!r}: NANP area codes have 3 digits")
        if self.international_prefix and (why := _digits_problem(self.international_prefix, 1, 4)):
            errors.append(f"{p}.international_prefix: {why} (00, or 011 in the NANP)")
        if self.national_prefix and (why := _digits_problem(self.national_prefix, 1, 2)):
            errors.append(f'{p}.national_prefix: {why} (0, or 1 in the NANP; "" where there is none)')
        if self.international_prefix and self.international_prefix == self.national_prefix:
            errors.append(f"{p}.national_prefix: must differ from outbound.international_prefix")

    def _validate_mail(self, errors: list[str]) -> None:
        p = "outbound"
        seen: set[tuple[str, int]] = set()
        for i, item in enumerate(self.smtp_listen):
            try:
                host, port = parse_hostport(item, 25)
                ipaddress.ip_address(host)
            except ValueError as e:
                errors.append(f"{p}.smtp_listen[{i}]: {item!r}: {e} (e.g. 0.0.0.0:25)")
                continue
            if (host, port) in seen:
                errors.append(f"{p}.smtp_listen[{i}]: {item!r} is listed twice")
            seen.add((host, port))
        if self.domain:
            d = self.domain.strip().rstrip(".").lower()
            if "@" in d:
                errors.append(f"{p}.domain: {self.domain!r}: write the domain alone, e.g. fax.example.com")
            elif not _DOMAIN_RE.fullmatch(d) or domain_problem(d):
                errors.append(f"{p}.domain: {self.domain!r} is not a domain name (IDNs in their xn-- form)")
        elif self.smtp_listen:
            errors.append(f"{p}.domain: the mail-to-fax listener (smtp_listen) needs the domain mail is sent to")
        for i, glob in enumerate(self.allowed_senders):
            local, at, domain = glob.rpartition("@")
            sample = glob.replace("*", "a").replace("?", "a")
            if not at or not local or not domain or address_problem(sample) is not None:
                errors.append(
                    f"{p}.allowed_senders[{i}]: {glob!r} is not an address or a glob of one "
                    "(*@example.com, fax-*@example.com; * and ? only)"
                )
        for i, relay in enumerate(self.trusted_relays):
            try:
                ipaddress.ip_network(relay, strict=False)
            except ValueError:
                errors.append(f"{p}.trusted_relays[{i}]: {relay!r} is not an IP address or network (10.0.0.0/8)")
        if self.graph_mailbox and (why := address_problem(self.graph_mailbox)):
            errors.append(f"{p}.graph_mailbox: {self.graph_mailbox!r} is not a mail address: {why}")
        if not 10 <= self.graph_poll_seconds <= 3600:
            errors.append(f"{p}.graph_poll_seconds: must be between 10 and 3600")


#: country codes the number tables know (appliance/outbound/numbers.py); a configured code must not
#: be a mere start of one ("4" for "49")
_KNOWN_CODES = ("1", "31", "33", "41", "43", "44", "49")


@dataclass
class WebConfig:
    listen: str = "127.0.0.1:8080"
    enabled: bool = True
    #: the web process's own state: admin password hash, session key, generated certificate
    state_dir: str = "web"
    #: serve HTTPS (a certificate is generated on first start unless cert_file/key_file are set)
    https: bool = True
    cert_file: str = ""
    key_file: str = ""
    #: a login lasts this long without use
    session_hours: int = 12
    #: the first-start wizard has been completed (set by its last step)
    setup_done: bool = False

    def validate(self, errors: list[str]) -> None:
        try:
            parse_hostport(self.listen, 8080)
        except ValueError as e:
            errors.append(f"web.listen: {self.listen!r}: {e}")
        if not self.state_dir:
            errors.append("web.state_dir: must not be empty")
        if bool(self.cert_file) != bool(self.key_file):
            errors.append("web.cert_file: give both cert_file and key_file, or neither")
        if not 1 <= self.session_hours <= 24 * 30:
            errors.append("web.session_hours: must be between 1 and 720")


@dataclass
class SystemConfig:
    """The box itself: set by the first-start wizard and the settings page."""

    hostname: str = ""
    #: an IANA zone such as "Europe/Berlin"; empty = the system's
    timezone: str = ""
    #: the daemon's control socket (status, reload, wake delivery) for the web process
    control_socket: str = "faxbridge.sock"
    #: faxes older than this many days are purged with their images; 0 = keep forever
    retention_days: int = 0
    #: SCHED_RR priority of the daemon's event loop, which carries every call's media (1-50;
    #: 0 = normal scheduling). Needs root or the unit's LimitRTPRIO; see appliance/rtsched.py
    realtime_priority: int = 10

    def validate(self, errors: list[str]) -> None:
        if self.hostname and not re.fullmatch(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", self.hostname):
            errors.append("system.hostname: letters, digits and '-' only, at most 63, not starting or ending with '-'")
        if self.timezone:
            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                hint = did_you_mean(self.timezone, zoneinfo.available_timezones())
                errors.append(
                    f"system.timezone: {self.timezone!r} is not a known time zone" + (hint or " (e.g. Europe/Berlin)")
                )
        if not self.control_socket:
            errors.append("system.control_socket: must not be empty")
        if not 0 <= self.retention_days <= 36500:
            errors.append("system.retention_days: must be between 0 (keep forever) and 36500")
        if not 0 <= self.realtime_priority <= 50:
            errors.append("system.realtime_priority: must be between 0 (normal scheduling) and 50")


@dataclass
class Config:
    sip: SipConfig = field(default_factory=SipConfig)
    fax: FaxConfig = field(default_factory=FaxConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    web: WebConfig = field(default_factory=WebConfig)
    modem: ModemConfig = field(default_factory=ModemConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    #: the state directory: every relative path is resolved against it (never the file's directory)
    base_dir: Path = field(default_factory=default_state_dir, repr=False)
    #: the file this configuration was loaded from (None: embedded defaults); what the web edits
    source: Path | None = field(default=None, repr=False, compare=False)

    def path(self, p: str) -> Path:
        """Resolve a configured path: absolute as it is, relative in the state directory."""
        q = Path(p)
        return q if q.is_absolute() else (self.base_dir / q)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: Path | None = None) -> Config:
        """Build and check a configuration; ConfigError lists every problem at once.

        A value of the wrong type is reported and its default stands in, so the checks of every
        other value (ranges, choices, addresses) still run; checks that would only repeat a
        reported key are left out."""
        errors: list[str] = []
        sections: dict[str, Any] = {}
        hints = _hints(cls)
        names = [k for k in hints if k not in ("base_dir", "source")]
        for key, value in data.items():
            if key not in names:
                errors.append(f"{key}: unknown section{did_you_mean(key, names)}")
                continue
            if not isinstance(value, dict):
                errors.append(f"{key}: must be a table")
                continue
            sections[key] = _build_section(hints[key], value, key, errors)
        cfg = cls(
            **{k: v for k, v in sections.items() if v is not None},
            base_dir=base_dir if base_dir is not None else default_state_dir(),
        )
        reported = {_error_key(e) for e in errors}
        checks: list[str] = []
        for f in dataclasses.fields(cfg):
            section = getattr(cfg, f.name)
            if hasattr(section, "validate"):
                section.validate(checks)
        cfg.sip.check_files(cfg.path, checks)
        cfg.outbound.check_ways_out(cfg.sip, cfg.modem, checks)
        errors += [e for e in checks if _error_key(e) not in reported]
        if errors:
            raise ConfigError(errors)
        return cfg

    @classmethod
    def load(cls, path: str | os.PathLike[str], state_dir: Path | None = None) -> Config:
        """The file at ``path`` (with secrets.toml beside it); relative paths in it resolve in
        ``state_dir`` (default: $FAXBRIDGE_STATE_DIR, else ./var), wherever the file is."""
        p = Path(path)
        data = _read_toml(p)
        secrets = p.with_name("secrets.toml")
        if secrets.exists():
            _check_secret_mode(secrets)
            extra = _read_toml(secrets)
            errors: list[str] = []
            for section, values in extra.items():
                if isinstance(values, dict) and isinstance(data.get(section, {}), dict):
                    _merge_secrets(data.setdefault(section, {}), values, section, errors)
            if errors:
                raise ConfigError([f"{secrets}: {e}" for e in errors])
        cfg = cls.from_dict(data, base_dir=(state_dir if state_dir is not None else default_state_dir()).absolute())
        cfg.source = p.resolve()
        return cfg

    def relative_paths(self) -> list[tuple[str, str]]:
        """(key, value) of every configured path that is relative, so resolved in the state directory."""
        keys = [
            "spool.dir",
            "web.state_dir",
            "system.control_socket",
            "delivery.archive",
            "delivery.ca_file",
            "delivery.client_certificate",
            "delivery.tls_client_cert",
            "delivery.tls_client_key",
            "sip.tls_cert",
            "sip.tls_key",
            "sip.tls_ca",
            "web.cert_file",
            "web.key_file",
        ]
        if self.delivery.backend == "maildir":
            keys.append("delivery.url")
        out = []
        for key in keys:
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            if value and not Path(value).is_absolute():
                out.append((key, value))
        return out

    def path_warnings(self) -> list[str]:
        """Relative paths that look written for the old rule (relative to the configuration file,
        before decision 0013): said at start-up and by check-config, never an error, so a box keeps
        receiving while its owner fixes the file."""
        out = []
        old_base = self.source.parent if self.source is not None else None
        for key, value in self.relative_paths():
            here = self.path(value)
            first = Path(value).parts[0]
            if first == self.base_dir.name:
                out.append(
                    f"{key}: {value!r} means {here} (relative paths are relative to the state "
                    f"directory {self.base_dir}); drop the leading '{first}/' if that is not meant"
                )
            elif (
                old_base is not None and old_base != self.base_dir and not here.exists() and (old_base / value).exists()
            ):
                out.append(
                    f"{key}: {value!r} means {here}, which does not exist (relative paths are relative "
                    f"to the state directory {self.base_dir}, not to the configuration file); "
                    f"{old_base / value} exists: give its absolute path or move it"
                )
        return out


def _error_key(error: str) -> str:
    """'sip.rtp_ports: must ...' -> 'sip.rtp_ports' (the key a message is about)."""
    return error.split(": ", 1)[0]


def _read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables, or ConfigError naming the file and what is wrong with it."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text (byte {e.start})"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None


def config_file(cfg: Config) -> Path:
    """The file to edit and reload: the one ``cfg`` came from, else faxbridge.toml in the state
    directory (where the web UI writes it and where ``faxbridge`` looks without --config)."""
    return cfg.source if cfg.source is not None else (cfg.base_dir / CONFIG_NAME).resolve()


def _check_secret_mode(path: Path) -> None:
    """Refuse a secrets file others can read: the passwords in it would not be secret."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError([f"{path}: mode {mode:04o} lets other users read the passwords; fix with: chmod 600 {path}"])


def _merge_secrets(section: dict[str, Any], secret: dict[str, Any], prefix: str, errors: list[str]) -> None:
    """Secret values over the main file's; an array of tables ([[sip.registrations]]) is merged
    entry by entry through each entry's `name`, so passwords can live apart from the rest."""
    for key, value in secret.items():
        current = section.get(key)
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            entries = current if isinstance(current, list) else []
            by_name = {e["name"]: e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)}
            for i, item in enumerate(value):
                name = item.get("name")
                target = by_name.get(name) if isinstance(name, str) and name else None
                if target is None:
                    errors.append(f"{prefix}.{key}[{i}].name: no entry named {item.get('name')!r} in the main file")
                else:
                    target.update(item)
        else:
            section[key] = value


def _dataclass_item(hint: Any) -> type | None:
    """X for list[X] when X is a config dataclass (an array of tables)."""
    if get_origin(hint) is list:
        (item,) = get_args(hint)
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return item
    return None


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a config dataclass; resolving them is most of a load's cost,
    so each class is resolved once."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def _build_section(cls: type, values: dict[str, Any], prefix: str, errors: list[str]) -> Any:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        attr = "from_" if key == "from" else key
        if attr not in hints:
            errors.append(f"{prefix}.{key}: unknown key{_key_hint(hints, key, prefix)}")
            continue
        item_cls = _dataclass_item(hints[attr])
        if item_cls is not None:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                errors.append(f"{prefix}.{key}: expected an array of tables ([[{prefix}.{key}]])")
                continue
            # an item class may name its entries itself (routing rules: by their name)
            label = getattr(item_cls, "label", None)
            built = [
                _build_section(item_cls, v, label(i, v) if callable(label) else f"{prefix}.{key}[{i}]", errors)
                for i, v in enumerate(value)
            ]
            kwargs[attr] = [b for b in built if b is not None]
            continue
        if not _type_ok(hints[attr], value):
            errors.append(f"{prefix}.{key}: expected {_type_name(hints[attr])}, got {type(value).__name__}")
            continue
        kwargs[attr] = value
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - guarded by the checks above
        errors.append(f"{prefix}: {e}")
        return None


def _key_hint(hints: dict[str, Any], key: str, prefix: str) -> str:
    """ " (did you mean 'listen'?)" for a misspelt key; for a key of another section (ident under
    [sip]), where it belongs."""
    known = ["from" if k == "from_" else k for k in hints]
    hint = did_you_mean(key, known)
    if hint or "." in prefix or "[" in prefix or " " in prefix:
        return hint
    homes = [
        name
        for name, cls in _hints(Config).items()
        if isinstance(cls, type)
        and dataclasses.is_dataclass(cls)
        and ("from_" if key == "from" else key) in _hints(cls)
    ]
    return f" (it belongs in {' or '.join(f'[{h}]' for h in homes)})" if homes else ""


def _type_ok(hint: Any, value: Any) -> bool:
    origin = get_origin(hint)
    if origin is list:
        (item,) = get_args(hint)
        return isinstance(value, list) and all(_type_ok(item, v) for v in value)
    if origin is dict:
        k, v = get_args(hint)
        return isinstance(value, dict) and all(_type_ok(k, a) and _type_ok(v, b) for a, b in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is list:
        return f"a list of {_type_name(get_args(hint)[0])}"
    if origin is dict:
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(hint, str(hint))
