"""Direct send: deliver to the recipient domain's MX hosts, as an MTA would (blocking).

For a site without a submission account or relay connector: Exchange Online accepts mail for
its own domains at the MX (``<tenant>.mail.protection.outlook.com``) unless the tenant rejects
Direct Send (550 5.7.68, see advice.py).

Where to connect comes from DNS only, through dnspython so ``delivery.dns_servers`` can name
the resolvers (else the system's):

* MX records, tried in preference order, equal preferences in random order (RFC 5321 5.1);
  each MX host's A records, then AAAA, are resolved with the same resolvers;
* no MX records at all (the name exists, but has none): the domain itself is the implicit MX
  (RFC 5321 5.1), i.e. its A/AAAA records, looked up in DNS; no A/AAAA either: no mail;
* a null MX (``0 .``, RFC 7505), or a domain that does not exist (NXDOMAIN): permanent;
* DNS timeouts and SERVFAIL: temporary (the queue retries).

Each MX address gets one SMTP session (smtp.run_session: EHLO, STARTTLS per delivery.starttls,
which unless set is "required": an MX host is not on this box; TLS 1.2+, the client certificate
if configured, never AUTH).  A temporary failure moves on to
the next address; a permanent reply (5xx, an untrusted certificate) ends the attempt at once,
since every MX of a domain speaks for the same mailboxes.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence
from email.message import EmailMessage

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from appliance.config import DeliveryConfig
from appliance.delivery import smtp
from appliance.delivery.errors import PermanentDeliveryError, TemporaryDeliveryError


def send_direct(cfg: DeliveryConfig, msg: EmailMessage, recipient: str, rng: random.Random | None = None) -> str:
    """Deliver ``msg`` to the MX of ``recipient``'s domain; return the accepting server's reply."""
    domain = recipient.rpartition("@")[2].strip().rstrip(".")
    if not domain or "@" not in recipient:
        raise PermanentDeliveryError(f"recipient {recipient!r} has no domain to look up the MX of")
    resolver = make_resolver(cfg)
    hosts = mx_hosts(resolver, domain, rng or random.Random())
    session_cfg = _no_auth(cfg)
    failures: list[str] = []
    for host in hosts:
        try:
            addresses = host_addresses(resolver, host)
        except TemporaryDeliveryError as e:
            failures.append(str(e))
            continue
        if not addresses:
            failures.append(f"MX host {host} has no A/AAAA record")
            continue
        for address in addresses:
            try:
                return smtp.run_session(session_cfg, "smtp", host, cfg.direct_port, msg, recipient, address=address)
            except TemporaryDeliveryError as e:
                failures.append(str(e))
    raise TemporaryDeliveryError(_summary(domain, failures))


def make_resolver(cfg: DeliveryConfig) -> dns.resolver.Resolver:
    """delivery.dns_servers (on delivery.dns_port) when set, else /etc/resolv.conf."""
    if cfg.dns_servers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = list(cfg.dns_servers)
        resolver.port = cfg.dns_port
    else:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise TemporaryDeliveryError(
                "no DNS servers: /etc/resolv.conf names none; set delivery.dns_servers"
            ) from None
    # one attempt gets delivery.timeout for its lookups, like for the SMTP conversation
    resolver.lifetime = float(cfg.timeout)
    resolver.timeout = max(1.0, cfg.timeout / 3)
    return resolver


def mx_hosts(resolver: dns.resolver.Resolver, domain: str, rng: random.Random) -> list[str]:
    """The hosts to try for ``domain``, best first; raises the permanent/temporary DNS errors."""
    try:
        name = dns.name.from_text(domain)
    except dns.exception.DNSException as e:
        raise PermanentDeliveryError(f"recipient domain {domain!r} is not a valid domain name: {e}") from None
    try:
        answer = resolver.resolve(name, dns.rdatatype.MX, search=False)
    except dns.resolver.NXDOMAIN:
        raise PermanentDeliveryError(
            f"recipient domain {domain} does not exist (DNS: NXDOMAIN): no MX to deliver to"
        ) from None
    except dns.resolver.NoAnswer:
        # RFC 5321 5.1: no MX at all -> the domain's own address records are the implicit MX
        if host_addresses(resolver, domain):
            return [domain]
        raise PermanentDeliveryError(
            f"recipient domain {domain} has no MX and no A/AAAA record: it cannot receive mail"
        ) from None
    except dns.exception.DNSException as e:
        raise _dns_temporary(domain, "MX", e) from None
    records = [(r.preference, r.exchange) for r in answer]
    usable = [(pref, host) for pref, host in records if host != dns.name.root]
    if not usable:
        raise PermanentDeliveryError(f"recipient domain {domain} has a null MX (RFC 7505): it accepts no mail")
    return order_mx([(pref, host.to_text(omit_final_dot=True)) for pref, host in usable], rng)


def order_mx(records: Iterable[tuple[int, str]], rng: random.Random) -> list[str]:
    """Lowest preference first; equal preferences shuffled so load spreads (RFC 5321 5.1)."""
    keyed = [(pref, rng.random(), host) for pref, host in records]
    seen: set[str] = set()
    ordered = []
    for _, _, host in sorted(keyed):
        if host.lower() not in seen:
            seen.add(host.lower())
            ordered.append(host)
    return ordered


def host_addresses(resolver: dns.resolver.Resolver, host: str) -> list[str]:
    """IPv4 then IPv6 addresses of an MX host, from DNS (never the system's host lookup)."""
    addresses: list[str] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = resolver.resolve(dns.name.from_text(host), rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as e:
            if addresses:
                break  # IPv4 answered: a failing AAAA lookup need not stop delivery
            raise _dns_temporary(host, dns.rdatatype.to_text(rdtype), e) from None
        addresses.extend(r.address for r in answer)
    return addresses


def mx_description(cfg: DeliveryConfig, recipient: str) -> str:
    """What ``faxbridge test-delivery`` prints as the destination: 'MX of example.com, port 25'."""
    domain = recipient.rpartition("@")[2] or "?"
    servers = f", DNS {', '.join(cfg.dns_servers)}" if cfg.dns_servers else ""
    return f"MX of {domain}, port {cfg.direct_port}{servers}"


def _no_auth(cfg: DeliveryConfig) -> DeliveryConfig:
    """An MX takes mail for its own domains without AUTH: never offer credentials to one."""
    return dataclasses.replace(cfg, auth="none", username="", password="")


def _dns_temporary(name: str, rdtype: str, e: dns.exception.DNSException) -> TemporaryDeliveryError:
    if isinstance(e, dns.exception.Timeout):
        why = "no answer from the DNS servers (timed out)"
    elif isinstance(e, dns.resolver.NoNameservers):
        why = "the DNS servers failed to answer (SERVFAIL or refused)"
    else:
        why = f"DNS error: {e}"
    return TemporaryDeliveryError(f"DNS lookup of {rdtype} for {name} failed: {why}")


def _summary(domain: str, failures: Sequence[str]) -> str:
    """One line for the queue: a server's reply first (advice.py reads its code), then the rest."""
    replies = [f for f in failures if f[:3].isdigit()]
    others = [f for f in failures if not f[:3].isdigit()]
    if others:
        replies.append(f"no MX host of {domain} accepted the message: " + "; ".join(others))
    return "; ".join(replies) or f"no MX host of {domain} to try"
