"""Ordered [[routing.rules]]: a table of calls and the rule and recipients each must reach."""

from __future__ import annotations

import pytest

from appliance.config import Config
from appliance.routing.router import RouteDecision, render_subject, route

RULES = {
    "default": "faxes@example.com",
    "called": {"5552000": "legacy@example.com", "5551000": "legacy-sales@example.com"},
    "rules": [
        {"name": "sales", "called": "555-1000", "to": ["sales@example.com"], "cc": ["boss@example.com"],
         "format": "pdf", "subject": "Fax from {tsi} to {called}"},
        {"name": "spam", "tsi": "^junk ?corp", "to": ["spam@example.com"]},
        {"name": "vip", "caller": "+1 212 555 0199", "to": ["vip@example.com"], "tiff": "profile-s"},
        {"name": "modems", "line": "modem:*", "called_prefix": "4930", "to": ["berlin@example.com"]},
        {"name": "support", "called_pattern": "^555(3|4)\\d{3}$", "to": ["support@example.com"],
         "format": "both"},
        {"name": "ceo-um", "um_recipient": "^ceo@", "use_um_recipient": True, "cc": ["pa@example.com"]},
        {"to": ["london@example.com"], "caller_prefix": "44"},
        # never reached for 5553001: "support" is earlier (rule order)
        {"name": "late", "called": "5553001", "to": ["late@example.com"]},
    ],
}
CFG = Config.from_dict({"routing": RULES}).routing

# called, caller, tsi, line, um -> recipients, rule
TABLE = [
    ("5551000", "", "", "sip:pbx", "", ["sales@example.com", "boss@example.com"], "sales"),  # exact, before table
    ("tel:555 1000", "", "", "", "", ["sales@example.com", "boss@example.com"], "sales"),  # by digits
    ("5559999", "", "JUNKCORP ads", "", "", ["spam@example.com"], "spam"),  # TSI regex, case-insensitive
    ("5551000", "", "Junk Corp", "", "", ["sales@example.com", "boss@example.com"], "sales"),  # order
    ("5559999", "tel:+12125550199", "", "", "", ["vip@example.com"], "vip"),  # caller exact digits
    ("+49 30 1234", "", "", "modem:ttyUSB0", "", ["berlin@example.com"], "modems"),  # glob + prefix
    ("+49 30 1234", "", "", "sip:pbx", "", ["faxes@example.com"], "default"),  # glob does not match
    ("5553001", "", "", "", "", ["support@example.com"], "support"),  # pattern, earlier than "late"
    ("55530011", "", "", "", "", ["faxes@example.com"], "default"),  # anchored pattern: no match
    ("5559999", "+44 20 7946", "", "", "", ["london@example.com"], "rule 7"),  # caller prefix, unnamed
    ("5552000", "", "", "", "", ["legacy@example.com"], "called 5552000"),  # the old called table
    ("5559999", "", "", "", "", ["faxes@example.com"], "default"),
    # UM recipient wins over rules that do not mention UM (even the exact "sales" rule)
    ("5551000", "", "JUNKCORP", "", "bob@example.com", ["bob@example.com"], "Exchange UM msExchUMFaxRecipient"),
    # a rule that matches um_recipient wins over UM
    ("5551000", "", "", "", "CEO@example.com", ["CEO@example.com", "pa@example.com"], "ceo-um"),
    # no UM referral: the UM rule does not match
    ("5559999", "", "ceo@example.com", "", "", ["faxes@example.com"], "default"),
]


@pytest.mark.parametrize("called,caller,tsi,line,um,recipients,rule", TABLE)
def test_table(called, caller, tsi, line, um, recipients, rule):
    d = route(CFG, called_number=called, caller_number=caller, remote_ident=tsi, line=line, um_recipient=um)
    assert (d.recipients, d.rule) == (recipients, rule)


def test_delivery_choices_come_from_the_rule():
    d = route(CFG, called_number="5551000")
    assert d == RouteDecision(["sales@example.com", "boss@example.com"], "sales", ["sales@example.com"],
                              ["boss@example.com"], "pdf", "tiff-f", "Fax from {tsi} to {called}")
    assert d.as_extra() == {"to": ["sales@example.com"], "cc": ["boss@example.com"], "format": "pdf",
                            "tiff": "tiff-f", "subject": "Fax from {tsi} to {called}", "rule": "sales"}
    assert route(CFG, called_number="1", caller_number="12125550199").tiff == "profile-s"
    assert route(CFG, called_number="5554123").format == "both"


def test_table_and_default_deliver_plain_tiff_to_one_address():
    for d in (route(CFG, called_number="5552000"), route(CFG, called_number="1")):
        assert (d.cc, d.format, d.tiff, d.subject) == ([], "tiff", "tiff-f", "")
        assert d.to == d.recipients


def test_duplicates_are_dropped_in_order():
    cfg = Config.from_dict({"routing": {"default": "faxes@x.test", "rules": [
        {"to": ["a@x.test", "b@x.test", "a@x.test"], "cc": ["b@x.test", "c@x.test", "c@x.test"]}]}}).routing
    d = route(cfg)
    assert d.recipients == ["a@x.test", "b@x.test", "c@x.test"]
    assert (d.to, d.cc) == (["a@x.test", "b@x.test"], ["c@x.test"])


def test_um_referral_defaults_to_profile_s_unless_the_rule_says():
    """Delivery honours extra["route"]["tiff"] even for UM, so UM's Profile S default is set here."""
    assert route(CFG, called_number="5551000", um_recipient="bob@example.com").tiff == "profile-s"
    assert route(CFG, um_recipient="ceo@example.com").tiff == "profile-s"  # rule "ceo-um", no tiff
    cfg = Config.from_dict({"routing": {"default": "faxes@x.test", "rules": [
        {"um_recipient": True, "use_um_recipient": True, "tiff": "tiff-f"}]}}).routing
    assert route(cfg, um_recipient="amy@x.test").tiff == "tiff-f"


def test_um_true_and_um_false():
    cfg = Config.from_dict({"routing": {"default": "faxes@x.test", "rules": [
        {"name": "um", "um_recipient": True, "to": ["um-copy@x.test"], "use_um_recipient": True},
        {"name": "not-um", "um_recipient": False, "to": ["direct@x.test"]}]}}).routing
    assert route(cfg, um_recipient="amy@x.test").recipients == ["amy@x.test", "um-copy@x.test"]
    assert route(cfg, um_recipient="amy@x.test").rule == "um"
    assert route(cfg).rule == "not-um"


def test_all_fields_given_must_match():
    cfg = Config.from_dict({"routing": {"default": "d@x.test", "rules": [
        {"name": "both", "called": "100", "line": "modem:ttyS0", "to": ["b@x.test"]}]}}).routing
    assert route(cfg, called_number="100", line="modem:ttyS0").rule == "both"
    assert route(cfg, called_number="100", line="modem:ttyS1").rule == "default"
    assert route(cfg, called_number="101", line="modem:ttyS0").rule == "default"


def test_render_subject():
    assert render_subject("Fax from {tsi} ({pages} p.) on {line}", tsi="ACME\r\nBcc: x", pages=3,
                          line="modem:ttyUSB0") == "Fax from ACME Bcc: x (3 p.) on modem:ttyUSB0"
    assert render_subject("{caller} -> {called}") == "->"
