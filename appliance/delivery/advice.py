"""What to change, for the replies and errors admins actually get from Exchange Online.

A delivery error as the server words it ("535 5.7.139 Authentication unsuccessful") tells an
admin that something is wrong, not what to do.  ``advise`` maps a reply (or an exception) to a
sentence naming the setting to change, and says whether retrying can help: the queue records
both beside the server's own words, and the web UI shows them.  Pure functions, no I/O.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

_REPLY = re.compile(r"^\s*(\d{3})[ -]+(\d\.\d{1,3}\.\d{1,3})?\s*(.*)$", re.S)


@dataclass(frozen=True)
class Advice:
    """``text`` says what to change; ``permanent`` means retrying unchanged cannot succeed."""

    text: str
    permanent: bool


# (code or None, enhanced status or None, substring of the text or None, advice, permanent).
# The first matching row wins, so specific rows come before general ones.
_TABLE: list[tuple[int | None, str | None, str | None, str, bool]] = [
    (
        535,
        "5.7.139",
        "security defaults",
        "SMTP AUTH is blocked by the tenant's Security Defaults: turn them off or use OAuth2 (XOAUTH2) "
        "with an app registration, or use a relay connector",
        True,
    ),
    (
        535,
        "5.7.139",
        None,
        "SMTP AUTH is disabled for this tenant or mailbox: run Set-CASMailbox <mailbox> "
        "-SmtpClientAuthenticationDisabled $false (or Set-TransportConfig "
        "-SmtpClientAuthenticationDisabled $false for the tenant)",
        True,
    ),
    (
        535,
        "5.7.3",
        None,
        "the server rejected the credentials: check delivery.username and the password in "
        "secrets.toml (for OAuth2, the token's user and scope)",
        True,
    ),
    (
        535,
        "5.7.8",
        None,
        "the server rejected the credentials: check delivery.username and the password in secrets.toml",
        True,
    ),
    (
        None,
        "5.7.30",
        None,
        "basic authentication is retired for client submission: switch delivery to OAuth2 "
        "(XOAUTH2) or to a relay connector",
        True,
    ),
    (
        None,
        "5.7.60",
        None,
        "the mailbox may not send as delivery.from: set delivery.from to the authenticated "
        "mailbox's address or grant it Send As for that address",
        True,
    ),
    (
        None,
        "4.7.66",
        None,
        "the server refuses TLS 1.0/1.1: the appliance needs TLS 1.2 (check a TLS-intercepting "
        "proxy or firewall on the path)",
        True,
    ),
    (
        None,
        "5.7.68",
        None,
        "the tenant rejects Direct Send (RejectDirectSend): use SMTP AUTH on smtp.office365.com:587 "
        "or add a partner inbound connector for this appliance's IP or certificate",
        True,
    ),
    (
        None,
        "5.6.211",
        None,
        "the message is bigger than the recipient's limit: raise the mailbox's MaxReceiveSize or "
        "lower delivery.max_message_bytes to match; this fax cannot go this way",
        True,
    ),
    (
        None,
        "5.3.4",
        None,
        "the message is bigger than the server accepts: raise the limit on the server or "
        "mailbox, or lower delivery.max_message_bytes to match; this fax cannot go this way",
        True,
    ),
    (
        None,
        "4.7.500",
        None,
        "Exchange Online is throttling this sender: delivery will retry; if it persists, "
        "spread faxes over more mailboxes or lower the sending rate",
        False,
    ),
    (None, "5.1.1", None, "the recipient address does not exist: fix the routing table entry for it", True),
    # Microsoft Graph (graph backend): "403 ErrorAccessDenied: ... (graph POST /users/...)"
    (
        401,
        None,
        "invalidauthenticationtoken",
        "Graph refused a freshly fetched token: check that delivery.tenant is the mailbox's tenant, "
        "that the token's scope is https://graph.microsoft.com/.default (leave delivery.oauth_scope "
        "empty) and that the appliance's clock is right",
        True,
    ),
    (
        403,
        None,
        "erroraccessdenied",
        "the app may not send as this mailbox: grant the app registration the Microsoft Graph "
        "application permission Mail.Send (and Mail.ReadWrite for faxes over 3 MB, sent as drafts) "
        "with admin consent; if an ApplicationAccessPolicy limits the app, add delivery.from's "
        "mailbox to its group",
        True,
    ),
    (
        None,
        None,
        "errorsendasdenied",
        "the app may not send as delivery.from: set delivery.from to a mailbox the app may send as",
        True,
    ),
    (
        404,
        None,
        "errorinvaliduser",
        "the mailbox in delivery.from does not exist in this tenant: set delivery.from to a licensed "
        "Exchange Online mailbox (or check delivery.tenant)",
        True,
    ),
    (
        404,
        None,
        "mailboxnotenabledforrestapi",
        "delivery.from's mailbox is not an Exchange Online mailbox (inactive, unlicensed or "
        "on-premises): use a licensed cloud mailbox, or the smtp backend",
        True,
    ),
    (
        400,
        None,
        "errorinvalidrecipients",
        "Graph refused the recipient address: fix the routing table entry for it",
        True,
    ),
    (
        413,
        None,
        None,
        "the message is bigger than Graph accepts (150 MB, and the mailbox's MaxSendSize, 35 MB by "
        "default): raise MaxSendSize or lower delivery.max_message_bytes; this fax cannot go this way",
        True,
    ),
    (
        429,
        None,
        None,
        "Microsoft Graph is throttling this app or mailbox: delivery will retry after the time it "
        "named; if it persists, spread faxes over more mailboxes",
        False,
    ),
    *[
        (
            code,
            None,
            "(graph",
            "Graph refused the request: its error code and message say which setting to fix; then use "
            "'faxbridge resend'",
            True,
        )
        for code in (400, 403, 404)
    ],
    *[
        (code, None, "(graph", "Microsoft Graph had a server error: delivery will retry", False)
        for code in (500, 502, 503, 504)
    ],
]

_AADSTS: list[tuple[str, str]] = [
    (
        "AADSTS7000215",
        "the client secret is wrong: copy the secret's Value (not its ID) from the app registration into secrets.toml",
    ),
    (
        "AADSTS7000222",
        "the client secret has expired: create a new one in the app registration and put it in secrets.toml",
    ),
    (
        "AADSTS700027",
        "the certificate assertion was rejected: upload the appliance's "
        "certificate to the app registration, or check its thumbprint and validity",
    ),
    ("AADSTS90002", "the tenant was not found: check the tenant ID or domain in the configuration"),
]


def advise_reply(code: int, enhanced: str | None, text: str) -> Advice:
    """Advice for one SMTP reply; a reply not in the table gets the class's generic advice."""
    low = text.lower()
    for row_code, row_status, needle, advice, permanent in _TABLE:
        if row_code is not None and row_code != code:
            continue
        if row_status is not None and row_status != enhanced and row_status not in text:
            continue
        if needle is not None and needle not in low:
            continue
        return Advice(advice, permanent)
    for aad, advice in _AADSTS:
        if aad in text:
            return Advice(advice, True)
    if 400 <= code < 500:
        return Advice("the server deferred the message: delivery will retry", False)
    if code == 552 or (code == 554 and "size" in low):
        return Advice(
            "the message is too big for the server: lower delivery.max_message_bytes "
            "to the server's limit, or raise the server's limit",
            True,
        )
    if 500 <= code < 600:
        return Advice(
            "the server refused the message for good: read its reply and fix the "
            "named setting, then use 'faxbridge resend'",
            True,
        )
    return Advice("unexpected reply: delivery will retry", False)


def advise_text(reply: str) -> Advice:
    """Advice for an error string as the delivery backends word it ('550 5.7.60 ... (where)')."""
    for aad, advice in _AADSTS:
        if aad in reply:
            return Advice(advice, True)
    m = _REPLY.match(reply)
    if m:
        return advise_reply(int(m.group(1)), m.group(2), m.group(3))
    low = reply.lower()
    if "certificate" in low and ("not trusted" in low or "verify" in low):
        return Advice(
            "the server's TLS certificate is not trusted: set delivery.ca_file to the "
            "CA that signed it, or fix the name in delivery.url to match the certificate",
            True,
        )
    # the direct backend's own findings (DNS, the MX hosts), worded in direct.py
    if "null mx" in low or "no mx and no a" in low or ("domain" in low and "does not exist" in low):
        return Advice(
            "the recipient's domain takes no mail (it does not exist, or says so in DNS): "
            "fix the recipient address in the routing table",
            True,
        )
    if low.startswith("dns lookup") or "no dns servers" in low:
        return Advice(
            "DNS did not answer: check delivery.dns_servers (or the system's resolvers) and "
            "the path to them; delivery will retry",
            False,
        )
    if "no mx host of" in low:
        return Advice(
            "no MX host of the recipient's domain answers on delivery.direct_port: outbound "
            "port 25 is often blocked by the ISP or firewall (then use the smtp backend with "
            "a submission server or relay connector); delivery will retry",
            False,
        )
    if "refused" in low or "cannot connect" in low or "unreachable" in low:
        return Advice(
            "nothing answers at delivery.url: check the host and port, the firewall, and "
            "that the mail server runs; delivery will retry",
            False,
        )
    if "tls" in low or "ssl" in low:
        return Advice(
            "the TLS handshake failed: check that the server offers TLS 1.2 or newer and "
            "that delivery.url's scheme (smtp:// with STARTTLS, smtps://) matches the port",
            False,
        )
    if "timed out" in low:
        return Advice(
            "the server did not answer in time: check the network path and delivery.timeout; delivery will retry", False
        )
    return Advice("delivery will retry", False)


def advise_exception(exc: BaseException) -> Advice:
    """Advice for an exception raised by a delivery attempt."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return advise_text(f"TLS certificate not trusted: {exc.verify_message}")
    if isinstance(exc, ConnectionRefusedError):
        return advise_text("connection refused")
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.strerror:
        return Advice(
            f"the spool or maildir could not be written ({exc.strerror}): free disk space "
            "or fix permissions; delivery will retry",
            False,
        )
    return advise_text(str(exc))


def with_advice(error: str, advice: Advice) -> str:
    """The recorded form: the server's words first, then what to change."""
    return f"{error} -- advice: {advice.text}"
