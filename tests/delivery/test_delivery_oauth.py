"""Client-credentials tokens from a real HTTPS token endpoint: caching, refresh, failures."""

from __future__ import annotations

import time

import pytest
import trustme
from oauth_harness import GRAPH_SCOPE, SMTP_SCOPE, oauth_cfg

from appliance.delivery import oauth
from appliance.delivery.advice import advise_text
from appliance.delivery.errors import PermanentDeliveryError, TemporaryDeliveryError


def test_secret_token_is_valid_for_the_smtp_scope_and_cached(token_server):
    cfg = oauth_cfg(token_server)
    token = oauth.get_token(cfg)
    assert token_server.check(token, SMTP_SCOPE) is None
    assert oauth.get_token(cfg) == token
    assert token_server.requests == [("secret", SMTP_SCOPE)]


def test_graph_backend_asks_for_the_graph_scope(token_server):
    token = oauth.get_token(oauth_cfg(token_server, backend="graph"))
    assert token_server.check(token, GRAPH_SCOPE) is None
    assert token_server.check(token, SMTP_SCOPE) is not None


def test_token_near_expiry_is_refreshed_before_use(token_server):
    token_server.authority_state.lifetime = 120  # inside MSAL's five-minute refresh margin
    cfg = oauth_cfg(token_server)
    first = oauth.get_token(cfg)
    second = oauth.get_token(cfg)
    assert first != second and len(token_server.requests) == 2


def test_forget_token_fetches_a_new_one(token_server):
    cfg = oauth_cfg(token_server)
    first = oauth.get_token(cfg)
    token_server.expire_all()
    oauth.forget_token(cfg)
    second = oauth.get_token(cfg)
    assert second != first and token_server.check(second, SMTP_SCOPE) is None


def test_certificate_assertion_is_signed_with_the_registered_key(token_server):
    cfg = oauth_cfg(token_server, client_secret="", client_certificate=token_server.client_certificate)
    token = oauth.get_token(cfg)
    assert token_server.check(token, SMTP_SCOPE) is None
    assert token_server.requests == [("certificate", SMTP_SCOPE)]


def test_unregistered_certificate_is_permanent_with_advice(token_server, tmp_path):
    other = trustme.CA().issue_cert("someone-else", key_type=trustme.KeyType.RSA)
    pem = tmp_path / "other.pem"
    pem.write_bytes(other.private_key_pem.bytes() + other.cert_chain_pems[0].bytes())
    with pytest.raises(PermanentDeliveryError) as e:
        oauth.get_token(oauth_cfg(token_server, client_secret="", client_certificate=str(pem)))
    assert "AADSTS700027" in str(e.value)
    assert "certificate" in advise_text(str(e.value)).text


def test_ec_certificate_is_refused_naming_the_key_type(token_server, ca, tmp_path):
    pem = tmp_path / "ec.pem"
    ec = ca.issue_cert("ec-app")
    pem.write_bytes(ec.private_key_pem.bytes() + ec.cert_chain_pems[0].bytes())
    with pytest.raises(PermanentDeliveryError, match="must be RSA"):
        oauth.get_token(oauth_cfg(token_server, client_secret="", client_certificate=str(pem)))


def test_certificate_file_without_key_names_the_key(token_server, ca, tmp_path):
    pem = tmp_path / "cert-only.pem"
    pem.write_bytes(ca.issue_cert("x").cert_chain_pems[0].bytes())
    with pytest.raises(PermanentDeliveryError, match="client_certificate .*private key"):
        oauth.get_token(oauth_cfg(token_server, client_secret="", client_certificate=str(pem)))


@pytest.mark.parametrize("setup, code, words", [
    (lambda s: {"client_secret": "wrong-secret"}, "AADSTS7000215", "Value (not its ID)"),
    (lambda s: setattr(s.authority_state, "secret_expired", True) or {}, "AADSTS7000222", "expired"),
    (lambda s: {"tenant": "nosuch.onmicrosoft.com"}, "AADSTS90002", "tenant"),
])
def test_refusals_are_permanent_with_what_to_change_and_no_secret(token_server, setup, code, words):
    overrides = setup(token_server)
    cfg = oauth_cfg(token_server, **overrides)
    with pytest.raises(PermanentDeliveryError) as e:
        oauth.get_token(cfg)
    text = str(e.value)
    assert code in text and words in advise_text(text).text
    assert cfg.client_secret not in text


def test_endpoint_down_is_temporary(token_server):
    cfg = oauth_cfg(token_server, authority="https://127.0.0.1:9")
    with pytest.raises(TemporaryDeliveryError, match="cannot connect"):
        oauth.get_token(cfg)


def test_endpoint_failing_then_recovering(token_server):
    cfg = oauth_cfg(token_server)
    oauth.get_token(oauth_cfg(token_server, backend="graph"))  # discovery done, app cached
    token_server.authority_state.fail_next = [503]
    with pytest.raises(TemporaryDeliveryError, match="503"):
        oauth.get_token(cfg)
    time.sleep(1.1)  # the endpoint said Retry-After: 1, and MSAL holds back until then
    assert token_server.check(oauth.get_token(cfg), SMTP_SCOPE) is None


def test_untrusted_endpoint_certificate_is_refused(token_server):
    cfg = oauth_cfg(token_server, ca_file="")
    with pytest.raises((TemporaryDeliveryError, PermanentDeliveryError), match="(?i)certificate|ssl"):
        oauth.get_token(cfg)
