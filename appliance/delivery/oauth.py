"""Access tokens for Exchange Online: the OAuth2 client-credentials flow through MSAL.

Exchange Online is retiring password authentication for SMTP submission; an appliance has no
user to sign in, so it proves itself as an app registration (a client secret or a certificate)
and receives a bearer token for a scope (SMTP: ``https://outlook.office365.com/.default``, Graph:
``https://graph.microsoft.com/.default``).  One MSAL application per (authority, tenant, client,
scope) lives for the process: MSAL keeps the token in its cache and asks for a new one when the
cached one is within five minutes of expiry, so a long fax queue never sends an expired token.

Failures become the queue's two kinds: AADSTS errors (wrong secret, expired secret, unknown
tenant, certificate not registered) are permanent and keep the AADSTS code so ``advice.py`` can
say what to change; a token endpoint that cannot be reached is temporary.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from pathlib import Path
from typing import Any

import jwt
import msal
import requests
from msal.exceptions import MsalServiceError

from appliance.config import DeliveryConfig
from appliance.delivery.errors import PermanentDeliveryError, TemporaryDeliveryError

log = logging.getLogger("faxbridge.delivery.oauth")

_KEY_BLOCK = re.compile(rb"-----BEGIN ((?:RSA |EC )?PRIVATE KEY)-----.+?-----END \1-----", re.S)
_apps: dict[tuple[str, ...], msal.ConfidentialClientApplication] = {}
_lock = threading.Lock()

#: token-endpoint errors that no retry can fix (RFC 6749 5.2 plus Entra ID's own)
_PERMANENT = {
    "invalid_client",
    "unauthorized_client",
    "invalid_request",
    "invalid_scope",
    "invalid_grant",
    "unsupported_grant_type",
    "invalid_resource",
}


def _key(cfg: DeliveryConfig) -> tuple[str, ...]:
    return (
        cfg.authority.rstrip("/"),
        cfg.tenant,
        cfg.client_id,
        cfg.scope,
        cfg.client_certificate,
        hashlib.sha256(cfg.client_secret.encode()).hexdigest(),
        cfg.ca_file,
        str(cfg.verify_tls),
    )


def certificate_credential(path: str) -> dict[str, str]:
    """MSAL's certificate credential from one PEM file holding the certificate and its key
    (the certificate whose public part is uploaded to the app registration)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        pem = Path(path).read_bytes()
    except OSError as e:
        raise PermanentDeliveryError(f"delivery.client_certificate {path}: cannot read: {e.strerror}") from None
    if b"PRIVATE KEY-----" not in pem or b"BEGIN CERTIFICATE" not in pem:
        raise PermanentDeliveryError(
            f"delivery.client_certificate {path}: needs the certificate and its private key in one PEM file"
        )
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise PermanentDeliveryError(f"delivery.client_certificate {path}: not a PEM certificate: {e}") from None
    key = _KEY_BLOCK.search(pem)
    if key is None:
        raise PermanentDeliveryError(f"delivery.client_certificate {path}: no PEM private key block")
    # without a thumbprint MSAL signs the assertion with the certificate's SHA-256 thumbprint
    return {"private_key": key.group(0).decode(), "public_certificate": cert.public_bytes(Encoding.PEM).decode()}


def _app(cfg: DeliveryConfig) -> msal.ConfidentialClientApplication:
    key = _key(cfg)
    with _lock:
        app = _apps.get(key)
        if app is None:
            credential: Any = (
                certificate_credential(cfg.client_certificate) if cfg.client_certificate else cfg.client_secret
            )
            try:
                app = msal.ConfidentialClientApplication(
                    cfg.client_id,
                    client_credential=credential,
                    authority=f"{cfg.authority.rstrip('/')}/{cfg.tenant}",
                    # the tenant's own discovery document is enough; no lookup of known clouds
                    instance_discovery=False,
                    http_client=http_session(cfg),
                )
            except ValueError as e:  # tenant discovery answered 400: unknown tenant
                raise _discovery_error(cfg, e) from None
            except requests.RequestException as e:
                raise TemporaryDeliveryError(f"token endpoint {cfg.authority}: cannot connect: {_short(e)}") from None
            _apps[key] = app
        return app


class _Session(requests.Session):
    """A session whose CA file and timeout hold for every request.

    requests lets REQUESTS_CA_BUNDLE (set on many systems) override a session's ``verify``;
    the configured ``delivery.ca_file`` must win, so it is passed on each request."""

    def __init__(self, verify: bool | str, timeout: float):
        super().__init__()
        self.verify = verify
        self.timeout = timeout

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, *args, **kwargs)


def http_session(cfg: DeliveryConfig) -> requests.Session:
    """An HTTPS session for the token endpoint and Graph: delivery.ca_file, TLS checks, timeout."""
    verify: bool | str = (cfg.ca_file or True) if cfg.verify_tls else False
    return _Session(verify, cfg.timeout)


def get_token(cfg: DeliveryConfig) -> str:
    """A bearer token for ``cfg.scope``: the cached one, or a new one when it nears expiry."""
    app = _app(cfg)
    try:
        result = app.acquire_token_for_client(scopes=[cfg.scope])
    except requests.RequestException as e:
        raise TemporaryDeliveryError(f"token endpoint {cfg.authority}: cannot connect: {_short(e)}") from None
    except MsalServiceError as e:  # an HTTP 5xx (or other non-OAuth) answer
        raise TemporaryDeliveryError(f"token endpoint {cfg.authority}: {_short(e)}") from None
    except jwt.InvalidKeyError:
        raise PermanentDeliveryError(
            f"delivery.client_certificate {cfg.client_certificate}: the key must "
            "be RSA (Entra ID signs and checks assertions with RS256/PS256)"
        ) from None
    except ValueError as e:  # MSAL raises this when the endpoint's answer is not JSON
        raise TemporaryDeliveryError(f"token endpoint {cfg.authority}: bad answer: {_short(e)}") from None
    token = result.get("access_token") if isinstance(result, dict) else None
    if token:
        if result.get("token_source") == "identity_provider":
            log.info(
                "new token for %s (client %s), valid %s s", cfg.scope, cfg.client_id, result.get("expires_in", "?")
            )
        return str(token)
    error = str(result.get("error", "no token")) if isinstance(result, dict) else "no token"
    description = cfg.scrub(" ".join(str(result.get("error_description", "")).split()))[:400]
    text = f"token endpoint refused client {cfg.client_id}: {error}: {description}"
    if error in _PERMANENT or "AADSTS" in description:
        raise PermanentDeliveryError(text)
    raise TemporaryDeliveryError(text)


def forget_token(cfg: DeliveryConfig) -> None:
    """Drop the cached token (the server called it expired or revoked): the next call fetches one."""
    with _lock:
        app = _apps.get(_key(cfg))
        if app is None:
            return
        cache = app.token_cache
        for access_token in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(access_token)


def reset() -> None:
    """Forget every application and token (configuration reloaded)."""
    with _lock:
        _apps.clear()


def _discovery_error(cfg: DeliveryConfig, e: Exception) -> PermanentDeliveryError:
    text = str(e)
    if "AADSTS" not in text:
        text = f"AADSTS90002: tenant {cfg.tenant!r} not found ({_short(e)})"
    return PermanentDeliveryError(f"token endpoint {cfg.authority}: {text}")


def _short(e: Exception) -> str:
    return " ".join(str(e).split())[:300]
