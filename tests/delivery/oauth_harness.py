"""A real HTTPS token endpoint on 127.0.0.1 shaped like Entra ID's v2.0 endpoint.

It serves the tenant's discovery document and ``/oauth2/v2.0/token`` for the client-credentials
grant, with a client secret or a signed certificate assertion (RFC 7523, checked against the
registered certificate), and answers failures with the AADSTS errors Entra ID gives.  The tokens
it issues are random strings it remembers with their scope and expiry, so the SMTP and Graph
test servers can check a bearer token exactly as Exchange would.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import trustme
from cryptography import x509

from appliance.config import DeliveryConfig
from appliance.delivery import oauth
from tests.budgets import LOADED

SMTP_SCOPE = "https://outlook.office365.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@dataclass
class Issued:
    scope: str
    expires: float


@dataclass
class TokenAuthority:
    """The state of the fake tenant: one app registration and the tokens issued to it."""

    tenant: str = "contoso.onmicrosoft.com"
    client_id: str = "3f1c8a7e-0000-4000-8000-00000000fa11"
    client_secret: str = field(default_factory=lambda: "sec~" + secrets.token_urlsafe(24))
    #: PEM of the certificate registered for the app (assertions must be signed by its key)
    certificate_pem: bytes = b""
    #: seconds a new token is valid (Entra ID: about 3600)
    lifetime: int = 3599
    secret_expired: bool = False
    tokens: dict[str, Issued] = field(default_factory=dict)
    #: every token request: (grant kind, scope)
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: answer the next token requests with this status (e.g. 503) before behaving
    fail_next: list[int] = field(default_factory=list)
    base: str = ""

    def check(self, token: str, scope: str) -> str | None:
        """None when ``token`` is valid for ``scope`` now, else why not (Exchange's words)."""
        issued = self.tokens.get(token)
        if issued is None:
            return "invalid token"
        if issued.scope != scope:
            return f"token is for {issued.scope}, not {scope}"
        if issued.expires <= time.time():
            return "Lifetime validation failed, the token is expired."
        return None

    def expire_all(self) -> None:
        for issued in self.tokens.values():
            issued.expires = 0.0

    # -- the endpoint's logic --------------------------------------------------------------

    def discovery(self, tenant: str) -> tuple[int, dict[str, Any]]:
        if tenant != self.tenant:
            return 400, {"error": "invalid_tenant",
                         "error_description": f"AADSTS90002: Tenant '{tenant}' not found."}
        return 200, {"token_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/token",
                     "authorization_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/authorize",
                     "issuer": f"{self.base}/{tenant}/v2.0",
                     "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"]}

    def token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.fail_next:
            return self.fail_next.pop(0), {"error": "temporarily_unavailable",
                                           "error_description": "AADSTS50196: try again"}
        if tenant != self.tenant:
            return 400, _err("invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return 400, _err("unsupported_grant_type", "AADSTS70003: grant type not supported")
        if form.get("client_id") != self.client_id:
            return 400, _err("unauthorized_client", f"AADSTS700016: Application with identifier "
                             f"'{form.get('client_id')}' was not found in the directory.")
        scope = form.get("scope", "")
        if scope not in (SMTP_SCOPE, GRAPH_SCOPE):
            return 400, _err("invalid_scope", f"AADSTS70011: The provided value for scope {scope} is not valid.")
        if "client_assertion" in form:
            why = self._bad_assertion(form, f"{self.base}/{tenant}/oauth2/v2.0/token")
            if why:
                return 401, _err("invalid_client", f"AADSTS700027: Client assertion failed signature "
                                 f"validation. {why}")
            kind = "certificate"
        elif "client_secret" in form:
            if form["client_secret"] != self.client_secret:
                return 401, _err("invalid_client", "AADSTS7000215: Invalid client secret provided. "
                                 "Ensure the secret being sent in the request is the client secret value, "
                                 "not the client secret ID.")
            if self.secret_expired:
                return 401, _err("invalid_client", "AADSTS7000222: The provided client secret keys "
                                 f"for app '{self.client_id}' are expired.")
            kind = "secret"
        else:
            return 401, _err("invalid_client", "AADSTS7000218: The request body must contain "
                             "client_assertion or client_secret.")
        token = secrets.token_urlsafe(32)
        self.tokens[token] = Issued(scope, time.time() + self.lifetime)
        self.requests.append((kind, scope))
        return 200, {"token_type": "Bearer", "expires_in": self.lifetime,
                     "ext_expires_in": self.lifetime, "access_token": token}

    def _bad_assertion(self, form: dict[str, str], audience: str) -> str | None:
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return "wrong client_assertion_type"
        if not self.certificate_pem:
            return "no certificate registered"
        key = x509.load_pem_x509_certificate(self.certificate_pem).public_key()
        try:
            claims = jwt.decode(form["client_assertion"], key, algorithms=["RS256", "PS256"],
                                audience=audience)
        except jwt.PyJWTError as e:
            return str(e)
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            return "iss/sub are not the client id"
        return None


def _err(error: str, description: str) -> dict[str, Any]:
    codes = [int(c) for c in re.findall(r"AADSTS(\d+)", description)]
    return {"error": error, "error_description": description, "error_codes": codes}


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        if status >= 500:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            self._reply(*self.server.authority.discovery(parts[0]))
        else:
            self._reply(404, {"error": "not_found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            self._reply(*self.server.authority.token(parts[0], form))
        else:
            self._reply(404, {"error": "not_found"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    authority: TokenAuthority


@dataclass
class TokenServer:
    """The running endpoint: put ``authority`` and ``ca_file`` in the config under test."""

    authority_state: TokenAuthority
    ca: trustme.CA
    ca_file: str
    httpd: _Server
    #: PEM file with the app's certificate and key (for client_certificate)
    client_certificate: str

    @property
    def authority(self) -> str:
        return self.authority_state.base

    @property
    def tenant(self) -> str:
        return self.authority_state.tenant

    @property
    def client_id(self) -> str:
        return self.authority_state.client_id

    @property
    def client_secret(self) -> str:
        return self.authority_state.client_secret

    def check(self, token: str, scope: str) -> str | None:
        return self.authority_state.check(token, scope)

    def expire_all(self) -> None:
        self.authority_state.expire_all()

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.authority_state.requests


def https_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture
def token_server(ca: trustme.CA, ca_file: str, tmp_path: Path) -> Iterator[TokenServer]:
    app_cert = trustme.CA().issue_cert("faxbridge-app", key_type=trustme.KeyType.RSA)  # Entra ID wants RSA
    cert_path = tmp_path / "app.pem"
    cert_path.write_bytes(app_cert.private_key_pem.bytes() + b"".join(c.bytes() for c in app_cert.cert_chain_pems[:1]))
    state = TokenAuthority(certificate_pem=app_cert.cert_chain_pems[0].bytes())
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.authority = state
    httpd.socket = https_context(ca).wrap_socket(httpd.socket, server_side=True)
    state.base = f"https://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    oauth.reset()
    try:
        yield TokenServer(state, ca, ca_file, httpd, str(cert_path))
    finally:
        httpd.shutdown()
        httpd.server_close()
        oauth.reset()


def oauth_cfg(server: TokenServer, **overrides: Any) -> DeliveryConfig:
    """A delivery config whose app registration is ``server``'s (client secret by default)."""
    base: dict[str, Any] = dict(backend="smtp", auth="oauth2", url="smtp://127.0.0.1:25",
                                from_="fax@contoso.com", username="fax@contoso.com",
                                tenant=server.tenant, client_id=server.client_id,
                                client_secret=server.client_secret, authority=server.authority,
                                ca_file=server.ca_file, timeout=LOADED, starttls="none")
    base.update(overrides)
    return DeliveryConfig(**base)
