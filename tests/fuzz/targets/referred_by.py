"""Referred-By and the Exchange UM context (appliance/sip/callinfo.py parse_exchange_referral).

Input: the Referred-By value (UTF-8, as the message parser hands it over).  Contract: the parser
never raises; with a referral, the recipient is "" or one plain mail address, context_raw is ""
or bounded base64 (it is copied into a mail header), the context has at most MAX_CONTEXT_KEYS
keys and bounded values free of control characters.  Carried in a real INVITE, the call facts
the user agent reads (caller, called, diversion, referral) come out the same way, without raising.
"""
from __future__ import annotations

import re

from appliance.sip.callinfo import (MAX_CONTEXT, MAX_CONTEXT_KEYS, MAX_CONTEXT_VALUE, incoming_call,
                                    parse_exchange_referral)
from appliance.sip.events import Local
from appliance.sip.message import SipParseError, SipRequest, parse_message

MAX_LEN = 2048
DICTS = ("referred_by", "sip", "_text")
_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INVITE = (b"INVITE sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bK1\r\n"
           b"From: <sip:200@192.0.2.50>;tag=1\r\nTo: <sip:100@192.0.2.1>\r\nCall-ID: c1\r\n"
           b"CSeq: 1 INVITE\r\nReferred-By: %s\r\nContent-Length: 0\r\n\r\n")


def _check(value: str) -> None:
    ref = parse_exchange_referral(value)
    if ref is None:
        return
    assert ref.recipient == "" or _PLAIN.fullmatch(ref.recipient), ref.recipient
    assert len(ref.context_raw) <= MAX_CONTEXT and _BASE64.fullmatch(ref.context_raw), ref.context_raw
    assert len(ref.context) <= MAX_CONTEXT_KEYS
    for key, val in ref.context.items():
        assert key and not _CONTROL.search(key) and not _CONTROL.search(val), (key, val)
        assert len(val) <= MAX_CONTEXT_VALUE
    assert all(isinstance(n, str) for n in ref.notes)


def TestOneInput(data: bytes) -> None:
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    _check(value)
    try:
        req = parse_message(_INVITE % data)
    except SipParseError:
        return
    assert isinstance(req, SipRequest)
    call = incoming_call(req, None, ("192.0.2.50", 5060), Local("udp", "192.0.2.1", 5060))
    assert call.exchange_um == parse_exchange_referral(req.headers.get("Referred-By") or "")
    if call.exchange_um is not None:
        _check(req.headers.get("Referred-By") or "")
