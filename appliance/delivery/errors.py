"""The two kinds of failed delivery the queue tells apart, shared by every backend.

``TemporaryDeliveryError``: try again later (4xx, network trouble, a token endpoint out of reach,
a TLS handshake that may succeed next time). ``PermanentDeliveryError``: no retry can fix it (5xx,
a certificate we must not trust, a wrong client secret).  str() is what the queue records and the
web UI shows, so a message carries the server's code and text and never the credentials.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A delivery attempt failed; str() is what the queue records and the web UI shows."""


class TemporaryDeliveryError(DeliveryError):
    pass


class PermanentDeliveryError(DeliveryError):
    pass
