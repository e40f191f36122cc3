"""Send one message over SMTP with smtplib (blocking: the daemon runs it in an executor).

Errors are sorted into the two kinds the queue needs (``errors.py``): ``TemporaryDeliveryError``
(try again later: 4xx, network trouble, a TLS handshake that may succeed next time) and
``PermanentDeliveryError`` (5xx, a certificate we must not trust).  Messages carry the server's
code and text and never the credentials.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import urlsplit

from appliance.config import DeliveryConfig
from appliance.delivery.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from appliance.tlskeys import EncryptedKey, load_chain

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


def parse_url(url: str) -> tuple[str, str, int]:
    """'smtp://host:587' -> ('smtp', 'host', 587); IPv6 hosts in brackets."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise PermanentDeliveryError(f"delivery.url {url!r} is not smtp://host[:port] or smtps://host[:port]")
    return scheme, parts.hostname, parts.port or DEFAULT_PORTS[scheme]


def tls_context(cfg: DeliveryConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not cfg.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.tls_client_cert:  # a certificate-matched relay or partner connector knows us by it
        try:
            load_chain(ctx, cfg.tls_client_cert, cfg.tls_client_key)
        except EncryptedKey as e:
            raise TemporaryDeliveryError(
                f"delivery.tls_client_key {cfg.tls_client_key or cfg.tls_client_cert}: {e}"
            ) from None
        except (OSError, ssl.SSLError) as e:
            raise TemporaryDeliveryError(
                f"delivery.tls_client_cert {cfg.tls_client_cert}: cannot load "
                f"the certificate/key: {getattr(e, 'strerror', None) or e}"
            ) from None
    return ctx


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def send_smtp(cfg: DeliveryConfig, msg: EmailMessage, recipient: str) -> str:
    """Deliver ``msg`` to one recipient; return the server's reply to the end of DATA."""
    scheme, host, port = parse_url(cfg.url)
    return run_session(cfg, scheme, host, port, msg, recipient)


def run_session(
    cfg: DeliveryConfig,
    scheme: str,
    host: str,
    port: int,
    msg: EmailMessage,
    recipient: str,
    *,
    address: str | None = None,
) -> str:
    """One SMTP session with errors sorted into temporary/permanent; shared with direct.py.

    ``address`` connects there instead of resolving ``host`` (the direct backend resolves MX
    hosts itself, with its own DNS servers) while TLS still verifies the name ``host``.
    """
    where = f"{scheme}://{host}:{port}" + (f" [{address}]" if address else "")
    try:
        return _send(cfg, scheme, host, port, msg, recipient, address)
    except DeliveryError:
        raise
    except smtplib.SMTPRecipientsRefused as e:
        code, text = next(iter(e.recipients.values()))
        raise _from_reply(code, text, f"{where}: recipient {recipient} refused", cfg) from None
    except smtplib.SMTPResponseException as e:  # sender refused, data error, auth failure, ...
        raise _from_reply(e.smtp_code, e.smtp_error, where, cfg) from None
    except smtplib.SMTPServerDisconnected as e:
        raise TemporaryDeliveryError(_scrub(f"{where}: server disconnected: {e}", cfg)) from None
    except smtplib.SMTPNotSupportedError as e:
        raise PermanentDeliveryError(_scrub(f"{where}: {e}", cfg)) from None
    except smtplib.SMTPException as e:  # e.g. no AUTH mechanism in common
        raise PermanentDeliveryError(_scrub(f"{where}: {e}", cfg)) from None
    except ssl.SSLCertVerificationError as e:
        raise PermanentDeliveryError(f"{where}: TLS certificate not trusted: {e.verify_message}") from None
    except ssl.SSLError as e:
        raise TemporaryDeliveryError(f"{where}: TLS handshake failed: {e.reason or e}") from None
    except TimeoutError:
        raise TemporaryDeliveryError(f"{where}: timed out after {cfg.timeout} s") from None
    except OSError as e:  # refused, unreachable, DNS failure
        raise TemporaryDeliveryError(f"{where}: cannot connect: {e.strerror or e}") from None


def _send(
    cfg: DeliveryConfig,
    scheme: str,
    host: str,
    port: int,
    msg: EmailMessage,
    recipient: str,
    address: str | None = None,
) -> str:
    ctx = tls_context(cfg)
    client: smtplib.SMTP
    if scheme == "smtps":
        client = smtplib.SMTP_SSL(host, port, timeout=cfg.timeout, context=ctx)
    elif address:
        client = smtplib.SMTP(timeout=cfg.timeout)
        client._host = host  # type: ignore[attr-defined]  # the name STARTTLS verifies
        try:
            code, text = client.connect(address, port)
            if code != 220:  # as SMTP(host, port) does
                raise smtplib.SMTPConnectError(code, text)
        except BaseException:
            client.close()
            raise
    else:
        client = smtplib.SMTP(host, port, timeout=cfg.timeout)
    with client:
        client.ehlo()
        secure = scheme == "smtps"
        policy = cfg.starttls_for(host, _peer(client))
        if not secure and policy != "none":
            if client.has_extn("starttls"):
                client.starttls(context=ctx)
                client.ehlo()
                secure = True
            elif policy == "required":
                # possibly a downgrade on the path: wait rather than send in clear
                raise TemporaryDeliveryError(_not_offered(cfg, f"{scheme}://{host}:{port}"))
        mode = cfg.auth_mode
        if mode != "none":
            if not secure and not is_loopback(host):
                raise TemporaryDeliveryError(f"{scheme}://{host}:{port}: not sending credentials without TLS")
            if mode == "oauth2":
                _xoauth2(client, cfg)
            else:
                client.login(cfg.username, cfg.password)
        data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
        code, text = client.mail(cfg.from_)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, text, cfg.from_)
        code, text = client.rcpt(recipient)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({recipient: (code, text)})
        code, text = client.data(data)
        if code != 250:
            raise smtplib.SMTPDataError(code, text)
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            pass  # the message is accepted; a rude goodbye changes nothing
        return f"{code} {_text(text)}"


def _peer(client: smtplib.SMTP) -> str | None:
    """The address the session is connected to (what decides whether mail leaves the box)."""
    try:
        return str(client.sock.getpeername()[0]) if client.sock else None
    except OSError:
        return None


def _not_offered(cfg: DeliveryConfig, where: str) -> str:
    why = (
        'delivery.starttls is "required"'
        if cfg.starttls
        else 'delivery.starttls is not set, which means "required" for a server that is not on this box'
    )
    return (
        f"{where}: STARTTLS required but not offered: {why}, so the fax is not sent in clear (the "
        "server may lack TLS, or something on the way removed its offer). Enable STARTTLS on the "
        'server; only if the network to it is trusted, set delivery.starttls = "opportunistic"'
    )


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64): user and bearer token, ^A separated."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def _xoauth2(client: smtplib.SMTP, cfg: DeliveryConfig) -> None:
    """AUTH XOAUTH2 with a client-credentials token; one retry with a fresh token, because
    Exchange answers an expired or revoked token with the same 535 as a wrong mailbox."""
    from appliance.delivery import oauth  # MSAL is loaded only by a box that signs in

    if "xoauth2" not in client.esmtp_features.get("auth", "").lower().split():
        raise PermanentDeliveryError(
            f"{cfg.url}: the server does not offer AUTH XOAUTH2 (offers: "
            f"{client.esmtp_features.get('auth', 'none').strip() or 'none'}); OAuth2 needs "
            "smtp.office365.com:587, or set delivery.auth to password or none"
        )
    for attempt in (1, 2):
        response = xoauth2_string(cfg.username, oauth.get_token(cfg))
        try:
            # on failure Exchange may send a 334 challenge first; answering it empty ends the exchange
            client.auth(
                "XOAUTH2",
                lambda challenge=None, response=response: response if challenge is None else "",
                initial_response_ok=True,
            )
            return
        except smtplib.SMTPAuthenticationError:
            if attempt == 2:
                raise
            oauth.forget_token(cfg)


def _text(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _scrub(text: str, cfg: DeliveryConfig) -> str:
    """Remove the secrets from anything a server or library echoed back."""
    return cfg.scrub(text)


def _from_reply(code: int, text: bytes | str, where: str, cfg: DeliveryConfig) -> DeliveryError:
    reply = _scrub(f"{code} {_text(text)}".strip(), cfg)
    message = f"{reply} ({where})"
    if 400 <= code < 500 or code == -1:
        return TemporaryDeliveryError(message)
    return PermanentDeliveryError(message)
