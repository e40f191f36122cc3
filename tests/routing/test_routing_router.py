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
