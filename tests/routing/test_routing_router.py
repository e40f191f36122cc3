"""Routing by called number, with digit normalisation and the default."""

from __future__ import annotations

import pytest

from appliance.config import RoutingConfig
from appliance.routing.router import RouteDecision, number_digits, route

CFG = RoutingConfig(default="faxes@example.com",
                    called={"5551000": "sales@example.com", "+49 30 1234-5": "berlin@example.com"})


@pytest.mark.parametrize("called", ["5551000", "555-1000", "tel:5551000", "sip:5551000@10.0.0.1;user=phone",
                                    "sips:555.1000@gw.example", " 5551000 "])
def test_called_number_spellings_match(called: str):
    assert route(CFG, called_number=called) == RouteDecision(["sales@example.com"], "called 5551000")


def test_configured_key_with_punctuation_matches_plain_digits():
    assert route(CFG, called_number="+493012345") == RouteDecision(["berlin@example.com"], "called +49 30 1234-5")


def test_exact_key_wins_over_normalised_one():
    cfg = RoutingConfig(default="d@x", called={"5551000": "digits@x", "555-1000": "exact@x"})
    assert route(cfg, called_number="555-1000") == RouteDecision(["exact@x"], "called 555-1000")
    assert route(cfg, called_number="5551000") == RouteDecision(["digits@x"], "called 5551000")
    assert route(cfg, called_number="tel:555 1000").recipients == ["digits@x"]


@pytest.mark.parametrize("called", ["", "5552000", "15551000", "sip:anonymous@10.5.5.5", "abc"])
def test_default_when_nothing_matches(called: str):
    assert route(CFG, called_number=called, caller_number="5551000", remote_ident="5551000",
                 line="sip:udp:127.0.0.1:5060") == RouteDecision(["faxes@example.com"], "default")


def test_host_digits_are_not_part_of_the_number():
    cfg = RoutingConfig(default="d@x", called={"5551000101": "wrong@x"})
    assert route(cfg, called_number="sip:555@1000.101").rule == "default"


def test_no_default_means_no_recipient():
    assert route(RoutingConfig(default="", called={}), called_number="1") == RouteDecision([], "default")


def test_number_digits():
    assert number_digits("+1 (555) 100-0") == "15551000"
    assert number_digits("tel:+1-555-1000;phone-context=example.com") == "15551000"
    assert number_digits("٥٥٥") == ""  # only ASCII digits count


def test_exchange_um_recipient_wins_over_called_number():
    from appliance.config import RoutingConfig
    from appliance.routing.router import route
    cfg = RoutingConfig(default="d@example.test", accepted_domains=["example.test", "contoso.test"],
                        called={"5551000": "sales@example.test"})
    d = route(cfg, called_number="5551000", um_recipient="bob@contoso.test")
    assert d.recipients == ["bob@contoso.test"] and "Exchange UM" in d.rule
    assert route(cfg, called_number="5551000").recipients == ["sales@example.test"]


def test_um_recipient_outside_accepted_domains_is_refused_and_routing_applies():
    cfg = RoutingConfig(default="faxes@example.test", accepted_domains=["example.test"],
                        called={"5551000": "sales@example.test"})
    d = route(cfg, called_number="5551000", um_recipient="bob@evil.example")
    assert d.recipients == ["sales@example.test"] and d.rule == "called 5551000"
    assert d.tiff == "tiff-f"  # not a UM partner message any more
    assert d.refused == ("'bob@evil.example' is outside routing.accepted_domains (example.test)",)
    assert d.um_refused == "bob@evil.example"
    assert d.as_extra()["refused"] == list(d.refused) and d.as_extra()["um_refused"] == "bob@evil.example"
    assert "refused" not in route(cfg, called_number="5551000").as_extra()  # the usual record is unchanged


@pytest.mark.parametrize("um,accepted", [
    ("bob@example.test", True), ("Bob@EXAMPLE.Test", True),  # case-insensitive
    ("bob@sub.example.test", False),  # exact: a subdomain is accepted only when listed itself
    ("bob@example.test.evil.example", False), ("bob@badexample.test", False),
])
def test_accepted_domains_match_exactly_and_ignore_case(um: str, accepted: bool):
    cfg = RoutingConfig(default="faxes@Example.Test")  # accepted_domains unset: the default's domain
    d = route(cfg, um_recipient=um)
    assert (d.recipients == [um]) is accepted and bool(d.refused) is not accepted
    if not accepted:
        assert d.recipients == ["faxes@Example.Test"]
        assert d.refused == (f"{um!r} is outside routing.accepted_domains (not set, so only the domain of "
                             "routing.default: example.test)",)


def test_unvalidated_config_never_yields_an_address_outside_accepted_domains():
    """Config.load refuses such a rule; a hand-built config still cannot send outside."""
    from appliance.config import RouteRuleConfig

    cfg = RoutingConfig(default="faxes@example.test", accepted_domains=["example.test"],
                        rules=[RouteRuleConfig(name="r", called="1", to=["in@example.test", "out@other.test"],
                                               cc=["cc@other.test"])])
    d = route(cfg, called_number="1")
    assert (d.recipients, d.to, d.cc) == (["in@example.test"], ["in@example.test"], [])
    assert len(d.refused) == 2 and d.um_refused == ""
