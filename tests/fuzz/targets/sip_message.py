"""SIP messages (appliance/sip/message.py parse_message): one UDP datagram or one framed message.

Contract: parse_message returns a SipRequest or SipResponse, or raises SipParseError with a
status the user agent can answer (400, 505, 513); what parses serialises to bytes that parse
again to the same message (Content-Length aside, which the serialiser always writes last), and
the fields every layer reads (Call-ID, CSeq, top Via, tags) read without raising.
"""
from __future__ import annotations

from appliance.sip.message import SipParseError, SipRequest, SipResponse, parse_message

MAX_LEN = 4096
DICTS = ("sip", "_text")


def _essence(msg: SipRequest | SipResponse) -> tuple:
    start = (msg.method, msg.uri) if isinstance(msg, SipRequest) else (msg.status, msg.reason)
    headers = [(n, v) for n, v in msg.headers if n != "Content-Length"]
    return type(msg), start, headers, msg.body


def TestOneInput(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as e:
        assert e.status in (400, 505, 513), e.status
        assert e.partial is None or isinstance(e.partial, (SipRequest, SipResponse))
        return
    assert isinstance(msg, (SipRequest, SipResponse))
    number, method = msg.cseq
    assert 0 <= number < 2**31 and method
    assert msg.call_id
    msg.via, msg.from_tag, msg.to_tag  # noqa: B018 - the properties parse; they must not raise
    again = parse_message(bytes(msg))
    assert _essence(again) == _essence(msg), (msg, again)
