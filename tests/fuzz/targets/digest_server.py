"""Authorization headers as our server checks them (appliance/sip/digest.py DigestServer.verify).

Input: one Authorization value.  So that the fuzzer gets past the nonce's HMAC, "@NONCE@" is
replaced by a nonce the server issued and "@RESPONSE@" by the right response for the other
parameters as written.  Contract: verify returns one of the VerifyResult values and never
raises; the same credentials presented twice are never accepted twice (replay).
"""
from __future__ import annotations

from appliance.sip.digest import ALGORITHMS, DigestServer, VerifyResult, parse_auth_params, response_digest
from appliance.sip.errors import SipParseError

MAX_LEN = 1024
DICTS = ("digest", "_text")
_RESULTS = {VerifyResult.OK, VerifyResult.MISSING, VerifyResult.STALE, VerifyResult.FAILED}
_KEY = b"k" * 32


def _expected(text: str) -> str:
    """The response the server would compute for the parameters in `text` (or "" if unreadable)."""
    scheme, _, rest = text.strip().partition(" ")
    try:
        p = parse_auth_params(rest.replace("@RESPONSE@", ""))
    except SipParseError:
        return ""
    algorithm = p.get("algorithm", "MD5").upper()
    if algorithm not in ALGORITHMS:
        return ""
    try:
        return response_digest(algorithm, "fax", "faxbridge", "secret", "INVITE", p.get("uri", ""),
                               p.get("nonce", ""), p.get("nc", ""), p.get("cnonce", ""), p.get("qop", ""))
    except UnicodeEncodeError:  # lone surrogates cannot arrive: the parser decodes strict UTF-8
        return ""


def TestOneInput(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    now = 1_700_000_000.0
    server = DigestServer("faxbridge", key=_KEY)
    text = text.replace("@NONCE@", server.nonce(now))
    if "@RESPONSE@" in text:
        text = text.replace("@RESPONSE@", _expected(text))
    first = server.verify(text, "INVITE", "fax", "secret", now)
    assert first in _RESULTS, first
    second = server.verify(text, "INVITE", "fax", "secret", now + 1)
    assert second in _RESULTS, second
    assert not (first == VerifyResult.OK and second == VerifyResult.OK), "the same credentials were accepted twice"
