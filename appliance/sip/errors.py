"""Error classes of the SIP core: whose fault is it (ours or the peer's)."""

from __future__ import annotations

from typing import Any

from appliance import protocol


class SipError(Exception):
    """Base class of every error raised by appliance.sip."""


class LocalProtocolError(SipError, protocol.LocalProtocolError):
    """We (the application) asked for something the protocol forbids, e.g. answering a call twice.

    Also an `appliance.protocol.LocalProtocolError`, which every sans-I/O state machine raises."""


class RemoteProtocolError(SipError):
    """The peer sent something we cannot accept."""


class SipParseError(RemoteProtocolError, ValueError):
    """A message (or URI, Via, name-addr) could not be parsed.

    `reason` is short enough to be a response reason phrase; `partial` holds whatever was parsed so
    far, so that a 400 can still be answered; `status` is the response code to use (400, 505, 513).
    """

    def __init__(self, reason: str, partial: Any = None, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = partial
        self.status = status
