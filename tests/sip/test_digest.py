"""Digest authentication: RFC 7616 §3.9.1 vectors, challenge parsing, our answers, server checks."""
from __future__ import annotations

import random

import pytest

from appliance.sip.digest import (
    Challenge, DigestClient, DigestServer, VerifyResult, build_authorization, parse_auth_params,
    parse_challenge, parse_challenges, response_digest,
)
from appliance.sip.message import SipRequest, SipResponse

# RFC 7616 §3.9.1: the "Mufasa" example
REALM = "http-auth@example.org"
NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


@pytest.mark.parametrize("algorithm,expected", [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_mufasa_vectors(algorithm: str, expected: str) -> None:
    assert response_digest(algorithm, "Mufasa", REALM, "Circle of Life", "GET", "/dir/index.html",
                           NONCE, "00000001", CNONCE, "auth") == expected
    ch = parse_challenge(f'Digest realm="{REALM}", qop="auth, auth-int", algorithm={algorithm}, '
                         f'nonce="{NONCE}", opaque="{OPAQUE}"')
    value = build_authorization(ch, "Mufasa", "Circle of Life", "GET", "/dir/index.html", 1, CNONCE)
    params = parse_auth_params(value.partition(" ")[2])
    assert params["response"] == expected and params["nc"] == "00000001" and params["qop"] == "auth"
    assert params["opaque"] == OPAQUE and params["algorithm"] == algorithm


def test_rfc2069_no_qop_for_old_servers() -> None:
    ch = parse_challenge('Digest realm="pbx", nonce="abc"')
    assert ch.algorithm == "MD5" and ch.qop == () and ch.supported
    value = build_authorization(ch, "u", "p", "REGISTER", "sip:pbx.example", 1, "ignored")
    params = parse_auth_params(value.partition(" ")[2])
    assert "qop" not in params and "cnonce" not in params and "nc" not in params
    assert params["response"] == response_digest("MD5", "u", "pbx", "p", "REGISTER", "sip:pbx.example", "abc")


def test_sess_variants_differ_and_parse() -> None:
    plain = response_digest("SHA-256", "u", "r", "p", "INVITE", "sip:x", "n", "00000001", "c", "auth")
    sess = response_digest("SHA-256-sess", "u", "r", "p", "INVITE", "sip:x", "n", "00000001", "c", "auth")
    assert plain != sess and len(sess) == 64
    assert parse_challenge('Digest realm="r", nonce="n", algorithm=MD5-sess').algorithm == "MD5-SESS"


def test_challenges_best_first_unknown_skipped_stale_and_proxy() -> None:
    resp = SipResponse(401, "Unauthorized", [
        ("WWW-Authenticate", 'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"'),
        ("WWW-Authenticate", 'Digest realm="r", nonce="n1", algorithm=SHA-512-256, qop="auth"'),
        ("WWW-Authenticate", 'Basic realm="r"'),
        ("WWW-Authenticate", 'Digest realm="r", nonce="n1", algorithm=SHA-256, qop="auth", stale=TRUE'),
        ("WWW-Authenticate", 'Digest realm="r", nonce="x", qop="auth-int"'),
        ("WWW-Authenticate", 'Digest garbage'),
    ])
    found = parse_challenges(resp.headers)
    assert [c.algorithm for c in found] == ["SHA-256", "MD5"]
    assert found[0].stale and not found[1].stale
    proxy = parse_challenges(SipResponse(407, "Proxy Authentication Required", [
        ("Proxy-Authenticate", 'Digest realm="p, with comma", nonce="n\\"q"')]).headers)
    assert proxy[0].proxy and proxy[0].header == "Proxy-Authorization"
    assert proxy[0].realm == "p, with comma" and proxy[0].nonce == 'n"q'


def test_client_counts_nc_per_nonce_and_hides_the_password() -> None:
    client = DigestClient("u", "secret", rng=random.Random(1))
    challenge = SipResponse(401, "Unauthorized", [("WWW-Authenticate", 'Digest realm="r", nonce="n", qop="auth"')])
    (name, first), = client.authorize(challenge, "REGISTER", "sip:pbx.example")
    assert name == "Authorization"
    assert parse_auth_params(first.partition(" ")[2])["nc"] == "00000001"
    (_, second), = client.authorize(challenge, "REGISTER", "sip:pbx.example")
    assert parse_auth_params(second.partition(" ")[2])["nc"] == "00000002"
    cnonces = [parse_auth_params(v.partition(" ")[2])["cnonce"] for v in (first, second)]
    assert cnonces[0] != cnonces[1]  # a fresh cnonce each time, drawn from the injected source
    again = DigestClient("u", "secret", rng=random.Random(1)).authorize(challenge, "REGISTER", "sip:pbx.example")
    assert parse_auth_params(again[0][1].partition(" ")[2])["cnonce"] == cnonces[0]
    assert "secret" not in repr(client) and "secret" not in first
    assert client.authorize(SipResponse(401, "Unauthorized", [("WWW-Authenticate", 'Basic realm="x"')]),
                            "REGISTER", "sip:pbx.example") == []


NOW = 1_700_000_000.0


def _answer(server_value: str, method: str = "INVITE", password: str = "pw", nc: int = 1) -> str:
    ch = parse_challenge(server_value)
    return build_authorization(ch, "gw", password, method, "sip:100@fax", nc, "c0ffee")


def test_server_accepts_then_refuses_replay_and_wrong_password() -> None:
    server = DigestServer("faxbridge", rng=random.Random(1))
    value = server.challenge(NOW)
    assert "algorithm=SHA-256" in value and 'qop="auth"' in value
    good = _answer(value)
    assert server.verify(good, "INVITE", "gw", "pw", NOW) == VerifyResult.OK
    assert server.verify(good, "INVITE", "gw", "pw", NOW) == VerifyResult.FAILED  # same nc again: replay
    assert server.verify(_answer(value, nc=2), "INVITE", "gw", "pw", NOW) == VerifyResult.OK
    assert server.verify(_answer(value, password="nope"), "INVITE", "gw", "pw", NOW) == VerifyResult.FAILED
    assert server.verify(_answer(value), "BYE", "gw", "pw", NOW) == VerifyResult.FAILED  # method bound
    assert server.verify(None, "INVITE", "gw", "pw", NOW) == VerifyResult.MISSING
    assert server.verify("Basic Zm9vOmJhcg==", "INVITE", "gw", "pw", NOW) == VerifyResult.MISSING
    assert server.verify('Digest username="gw", realm="faxbridge", nonce="forged", uri="sip:x", response="0"',
                         "INVITE", "gw", "pw", NOW) == VerifyResult.FAILED


def test_server_nonce_expiry_is_stale_and_md5_fallback_works() -> None:
    now = 1_700_000_000.0
    server = DigestServer("faxbridge", lifetime=60, rng=random.Random(1))
    sha, md5 = server.challenges(now)
    assert "MD5" in md5 and "SHA-256" in sha
    answer = _answer(md5)
    assert server.verify(answer, "INVITE", "gw", "pw", now + 59) == VerifyResult.OK
    assert server.verify(_answer(md5, nc=2), "INVITE", "gw", "pw", now + 61) == VerifyResult.STALE
    assert "stale=true" in server.challenge(now, stale=True)
    other = DigestServer("faxbridge", rng=random.Random(2))  # another key: our nonces are not its nonces
    assert other.verify(_answer(other.challenge(now)), "INVITE", "gw", "pw", now) == VerifyResult.OK
    assert server.verify(_answer(other.challenge(now)), "INVITE", "gw", "pw", now) == VerifyResult.FAILED


def test_server_key_comes_from_the_injected_random_source() -> None:
    now = 1_700_000_000.0
    same = [DigestServer("faxbridge", rng=random.Random(7)).nonce(now) for _ in range(2)]
    assert same[0] == same[1]
    assert DigestServer("faxbridge", rng=random.Random(8)).nonce(now) != same[0]
    assert DigestServer("faxbridge").nonce(now) != DigestServer("faxbridge").nonce(now)  # SystemRandom


def test_server_without_qop_allows_each_nonce_once() -> None:
    server = DigestServer("faxbridge")
    nonce = parse_challenge(server.challenge(NOW)).nonce
    old = build_authorization(Challenge("faxbridge", nonce), "gw", "pw", "INVITE", "sip:x")
    assert server.verify(old, "INVITE", "gw", "pw", NOW) == VerifyResult.OK
    assert server.verify(old, "INVITE", "gw", "pw", NOW) == VerifyResult.FAILED
