"""Digest challenges as our client reads them (appliance/sip/digest.py: WWW-/Proxy-Authenticate).

Input: lines, each one header value; a line starting with "P " is a Proxy-Authenticate.  They
arrive in a 401 that our message parser read (so only what it lets through).  Contract: parse_challenges never raises and returns only supported challenges, best first; our
answer to them is a header the server-side parser reads back with the realm, nonce, opaque and
algorithm of the challenge, and the resent request serialises and parses.
"""
from __future__ import annotations

import random

from appliance.sip.digest import PREFERENCE, DigestClient, parse_auth_params, parse_challenges
from appliance.sip.message import SipParseError, SipRequest, SipResponse, parse_message

MAX_LEN = 2048
DICTS = ("digest", "_text")
_REQUEST = (b"REGISTER sip:pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
            b"From: <sip:fax@pbx.example>;tag=1\r\nTo: <sip:fax@pbx.example>\r\nCall-ID: c1\r\n"
            b"CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n")
_RESPONSE = (b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
             b"From: <sip:fax@pbx.example>;tag=1\r\nTo: <sip:fax@pbx.example>;tag=2\r\nCall-ID: c1\r\n"
             b"CSeq: 1 REGISTER\r\n%s\r\nContent-Length: 0\r\n\r\n")


def TestOneInput(data: bytes) -> None:
    lines = [(b"Proxy-Authenticate: " + line[2:]) if line.startswith(b"P ") else b"WWW-Authenticate: " + line
             for line in data.split(b"\n")]
    try:
        response = parse_message(_RESPONSE % b"\r\n".join(lines))
    except SipParseError:
        return
    assert isinstance(response, SipResponse)
    headers = response.headers
    found = parse_challenges(headers)
    assert all(c.supported for c in found)
    ranks = [PREFERENCE.index(c.algorithm) for c in found]
    assert ranks == sorted(ranks)
    client = DigestClient("fax", "secret", rng=random.Random(0))
    answers = client.authorize(response, "REGISTER", "sip:pbx.example")
    by_realm = {(c.proxy, c.realm): c for c in reversed(found)}
    assert len(answers) == len(by_realm)
    for (name, value), challenge in zip(answers, [c for c in found if by_realm.get((c.proxy, c.realm)) is c]):
        assert name == challenge.header
        assert value.startswith("Digest ")
        params = parse_auth_params(value[len("Digest "):])
        assert params["realm"] == challenge.realm and params["nonce"] == challenge.nonce, (params, challenge)
        assert params["algorithm"] == challenge.algorithm and params.get("opaque") == challenge.opaque
        assert params["username"] == "fax" and "secret" not in value
    request = parse_message(_REQUEST)
    assert isinstance(request, SipRequest)
    for name, value in answers:  # what UserAgent.resend_request adds to the resent request
        request.headers.add(name, value)
    reparsed = parse_message(bytes(request))
    sent = reparsed.headers.get_all("Authorization") + reparsed.headers.get_all("Proxy-Authorization")
    assert sorted(sent) == sorted(value for _, value in answers)
