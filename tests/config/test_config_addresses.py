"""Every mail address the configuration holds is checked by one rule (email-validator, no DNS), so
the web UI, check-config and the CLI refuse the same things with the same words."""

from __future__ import annotations

import pytest

from appliance.config import Config, ConfigError, address_problem

HALF = "there must be something after the @-sign"


def errors(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as e:
        Config.from_dict(data)
    return e.value.errors


@pytest.mark.parametrize("data,expected", [
    ({"routing": {"default": "sales@"}}, f"routing.default: 'sales@' is not a mail address: {HALF}"),
    ({"delivery": {"admin": "admin@"}}, f"delivery.admin: 'admin@' is not a mail address: {HALF}"),
    ({"delivery": {"from": "fax@"}}, f"delivery.from: 'fax@' is not a mail address: {HALF}"),
    ({"routing": {"default": "faxes@example.com", "called": {"5551000": "sales@"}}},
     f"routing.called.5551000: 'sales@' is not a mail address: {HALF}"),
    ({"routing": {"default": "faxes@example.com", "rules": [{"name": "desk", "to": ["admin@"]}]}},
     f"routing rule 'desk'.to: 'admin@' is not a mail address: {HALF}"),
    ({"routing": {"default": "faxes@example.com", "rules": [{"to": ["a@example.com"], "cc": ["@example.com"]}]}},
     "routing rule 1.cc: '@example.com' is not a mail address: there must be something before the @-sign"),
    ({"routing": {"default": "sales@example..com"}},
     "routing.default: 'sales@example..com' is not a mail address: an email address cannot have two periods in a row"),
    ({"delivery": {"from": "Fax <fax@example.com>"}}, "delivery.from: 'Fax <fax@example.com>' is not a mail "
                                                      "address: a display name and angle brackets"),
    ({"routing": {"accepted_domains": ["xn--zz.example"], "default": "a@xn--zz.example"}},
     "routing.accepted_domains[0]: 'xn--zz.example' is not a domain name: the domain is not valid IDNA"),
])
def test_a_bad_address_is_refused_naming_the_field_and_what_is_wrong(data: dict, expected: str) -> None:
    errs = errors(data)
    assert any(e.startswith(expected) for e in errs), errs


@pytest.mark.parametrize("addr", ["faxes@localhost", "fax@contoso.local", "desk@example.test", "Desk@Example.COM",
                                  "first.last+fax@sub.example.org", "bob@xn--bcher-kva.example"])
def test_addresses_of_mail_systems_on_a_lan_are_accepted(addr: str) -> None:
    assert address_problem(addr) is None
    domain = addr.rpartition("@")[2].lower()
    cfg = Config.from_dict({"routing": {"default": addr, "accepted_domains": [domain]},
                            "delivery": {"from": addr, "admin": addr}})
    assert cfg.routing.default == addr


@pytest.mark.parametrize("addr,why", [
    ("sales@", HALF), ("admin@", HALF), ("nobody", "an email address must have an @-sign"),
    ("a@b\r\nBcc: x@example.com", "the part after the @-sign contains invalid characters"),
    ("a b@example.com", "the email address contains invalid characters before the @-sign: SPACE"),
    ("jürgen@example.com", "internationalized characters before the @-sign are not supported"),
    ("a@[127.0.0.1]", "a bracketed IP address after the @-sign is not allowed here"),
    ("a@example.invalid", "the part after the @-sign is a special-use or reserved name"),
])
def test_address_problem_says_what_is_wrong(addr: str, why: str) -> None:
    problem = address_problem(addr)
    assert problem is not None and problem.startswith(why), problem
