"""[[routing.rules]] validation: every error names the rule (its name, else "rule N")."""

from __future__ import annotations

import pytest

from appliance.config import Config, ConfigError


def errors_for(rule: dict, *, before: int = 0) -> list[str]:
    rules = [{"to": ["ok@x.test"]}] * before + [rule]
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"routing": {"default": "faxes@x.test", "rules": rules}})
    return e.value.errors


@pytest.mark.parametrize("rule,expect", [
    ({"name": "bad-re", "called_pattern": "555(", "to": ["a@x.test"]},
     "routing rule 'bad-re'.called_pattern: bad regex"),
    ({"name": "bad-tsi", "tsi": "[acme", "to": ["a@x.test"]}, "routing rule 'bad-tsi'.tsi: bad regex"),
    ({"name": "bad-um", "um_recipient": "*@x", "to": ["a@x.test"]}, "routing rule 'bad-um'.um_recipient: bad regex"),
    ({"name": "subj", "subject": "Fax {sender}", "to": ["a@x.test"]},
     "routing rule 'subj'.subject: unknown placeholder {sender}"),
    ({"name": "subj2", "subject": "Fax {pages:>3}", "to": ["a@x.test"]}, "routing rule 'subj2'.subject:"),
    ({"name": "subj3", "subject": "Fax {tsi", "to": ["a@x.test"]}, "routing rule 'subj3'.subject:"),
    ({"name": "no-to", "called": "1"}, "routing rule 'no-to'.to: missing"),
    ({"name": "addr", "to": ["Bob <bob@x.test>"]}, "routing rule 'addr'.to: 'Bob <bob@x.test>' is not a mail address"),
    ({"name": "addr-cc", "to": ["a@x.test"], "cc": ["nobody"]}, "routing rule 'addr-cc'.cc: 'nobody'"),
    ({"name": "typo", "calld": "1", "to": ["a@x.test"]}, "routing rule 'typo'.calld: unknown key"),
    ({"name": "fmt", "format": "png", "to": ["a@x.test"]}, "routing rule 'fmt'.format: 'png': must be one of"),
    ({"name": "tiff", "tiff": "class-f", "to": ["a@x.test"]}, "routing rule 'tiff'.tiff: 'class-f'"),
    ({"name": "type", "to": "a@x.test"}, "routing rule 'type'.to: expected a list of a string, got str"),
    ({"name": "use-um", "use_um_recipient": True}, "routing rule 'use-um'.use_um_recipient: needs um_recipient"),
    ({"name": "digits", "called_prefix": "abc", "to": ["a@x.test"]}, "routing rule 'digits'.called_prefix:"),
])
def test_error_names_the_rule(rule, expect):
    errs = errors_for(rule)
    assert any(e.startswith(expect) for e in errs), errs


def test_unnamed_rule_is_named_by_position():
    errs = errors_for({"called_pattern": "(", "to": ["a@x.test"]}, before=2)
    assert errs and all(e.startswith("routing rule 3.called_pattern: bad regex") for e in errs), errs
    errs = errors_for({"colour": "red", "to": ["a@x.test"]}, before=1)
    assert errs == ["routing rule 2.colour: unknown key"]


def test_duplicate_name():
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"routing": {"default": "faxes@x.test",
                                      "rules": [{"name": "a", "to": ["a@x.test"]}, {"name": "a", "to": ["b@x.test"]}]}})
    assert e.value.errors == ["routing rule 'a': the name is used twice"]


def test_rules_must_be_tables():
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"routing": {"rules": ["a@x.test"]}})
    assert e.value.errors == ["routing.rules: expected an array of tables ([[routing.rules]])"]


def test_good_rules_load_from_toml(tmp_path):
    p = tmp_path / "faxbridge.toml"
    p.write_text('''
[routing]
default = "faxes@example.com"
called = { "5552000" = "legacy@example.com" }

[[routing.rules]]
name = "sales"
called_prefix = "555"
line = "modem:*"
tsi = "^acme"
um_recipient = false
to = ["sales@example.com"]
cc = ["boss@example.com"]
format = "both"
tiff = "profile-s"
subject = "Fax from {caller} ({tsi}), {pages} pages on {line} at {date} to {called}"

[[routing.rules]]
um_recipient = "@example\\\\.com$"
use_um_recipient = true
''')
    r = Config.load(p).routing
    assert [x.name for x in r.rules] == ["sales", ""]
    assert (r.rules[0].format, r.rules[0].tiff, r.rules[0].um_recipient) == ("both", "profile-s", False)
    assert r.rules[1].um_recipient == "@example\\.com$" and r.rules[1].to == []
    assert r.called == {"5552000": "legacy@example.com"}


def test_every_problem_is_reported_at_once():
    errs = errors_for({"name": "many", "called_pattern": "(", "format": "x", "subject": "{nope}"})
    assert len(errs) == 4 and all(e.startswith("routing rule 'many'.") for e in errs), errs
