"""TLS contexts for SIP listeners and our outgoing connections (TLS 1.2 or newer only).

We advertise `sip:host:port;transport=tls`, not `sips:`: a sips: Contact/Request-URI promises TLS
on every hop to the end (RFC 5630), which gateways and Exchange UM (FaxServerURI
"sip:fax.example:5061;transport=tls") neither send nor expect, and several reject sips: outright.
TLS here protects our hop; that is what the deployments ask for.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from appliance.tlskeys import load_chain


@dataclass
class TlsSettings:
    """PEM paths (the application's [sip] tls_* settings); `verify_client` requires and checks
    client certificates against `ca`."""

    cert: str = ""
    key: str = ""
    ca: str = ""
    verify_client: bool = False

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        load_chain(ctx, self.cert, self.key)
        if self.verify_client:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.ca)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server (host name or IP in its certificate) against `ca` or the system
        store; presents our certificate too, for peers that require client certificates."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert and self.key:
            load_chain(ctx, self.cert, self.key)
        return ctx
