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


# -- routing.accepted_domains and [[sip.peers]] exchange_um (issue 10, finding 3) -----------------
ACCEPTED = '''
[routing]
default = "faxes@contoso.com"
accepted_domains = ["contoso.com", "Fabrikam.COM."]
[routing.called]
"5551000" = "sales@fabrikam.com"

[[routing.rules]]
name = "sales"
called = "5552000"
to = ["sales@contoso.com"]
cc = ["boss@FABRIKAM.com"]
'''


def test_accepted_domains_default_is_the_default_mailboxs_domain():
    cfg = Config.from_dict({"routing": {"default": "Faxes@Contoso.COM"}})
    assert cfg.routing.accepted_domains == [] and cfg.routing.domains() == ["contoso.com"]
    assert Config.from_dict({}).routing.domains() == ["localhost"]  # the embedded default: faxes@localhost


def test_addresses_inside_accepted_domains_load(tmp_path):
    p = tmp_path / "faxbridge.toml"
    p.write_text(ACCEPTED)
    cfg = Config.load(p)
    assert cfg.routing.domains() == ["contoso.com", "fabrikam.com"]


@pytest.mark.parametrize("routing,expect", [
    ({"default": "faxes@contoso.com", "called": {"5551000": "sales@fabrikam.com"}},
     "routing.called.5551000: 'sales@fabrikam.com' is outside routing.accepted_domains (not set, so only "
     "the domain of routing.default: contoso.com)"),
    ({"default": "faxes@contoso.com", "rules": [{"name": "sales", "called": "1", "to": ["s@fabrikam.com"]}]},
     "routing rule 'sales'.to: 's@fabrikam.com' is outside routing.accepted_domains"),
    ({"default": "faxes@contoso.com", "rules": [{"called": "1", "to": ["s@contoso.com"], "cc": ["b@evil.example"]}]},
     "routing rule 1.cc: 'b@evil.example' is outside routing.accepted_domains"),
    ({"default": "faxes@fabrikam.com", "accepted_domains": ["contoso.com"]},
     "routing.default: 'faxes@fabrikam.com' is outside routing.accepted_domains (contoso.com)"),
    ({"default": "faxes@mail.contoso.com", "accepted_domains": ["contoso.com"]},  # exact: no subdomains
     "routing.default: 'faxes@mail.contoso.com' is outside routing.accepted_domains (contoso.com)"),
    ({"default": "faxes@contoso.com", "accepted_domains": ["contoso.com", "*.contoso.com"]},
     "routing.accepted_domains[1]: '*.contoso.com' is not a domain name"),
    ({"default": "faxes@contoso.com", "accepted_domains": ["@contoso.com"]},
     "routing.accepted_domains[0]: '@contoso.com': write the domain alone"),
    ({"default": "faxes@contoso.com", "accepted_domains": "contoso.com"},
     "routing.accepted_domains: expected a list of a string, got str"),
])
def test_address_outside_accepted_domains_is_a_config_error_naming_the_key(routing, expect):
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"routing": routing})
    assert any(err.startswith(expect) for err in e.value.errors), e.value.errors


def test_check_config_refuses_a_rule_outside_accepted_domains(tmp_path, capsys):
    from appliance.cli import main

    p = tmp_path / "faxbridge.toml"
    p.write_text(ACCEPTED.replace('"Fabrikam.COM."', '"example.org"'))
    assert main(["check-config", str(p)]) == 1
    err = capsys.readouterr().err
    assert ("error: routing.called.5551000: 'sales@fabrikam.com' is outside routing.accepted_domains "
            "(contoso.com, example.org)") in err
    assert "error: routing rule 'sales'.cc: 'boss@FABRIKAM.com' is outside routing.accepted_domains" in err
    p.write_text(ACCEPTED)
    assert main(["check-config", str(p)]) == 0


def test_the_daemon_does_not_start_on_a_default_outside_accepted_domains(tmp_path):
    import subprocess
    import sys

    p = tmp_path / "faxbridge.toml"
    p.write_text('[routing]\ndefault = "faxes@gmail.com"\naccepted_domains = ["contoso.com"]\n'
                 '[web]\nenabled = false\n')
    out = subprocess.run([sys.executable, "-m", "appliance", "run", "--config", str(p)], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode != 0
    assert "routing.default: 'faxes@gmail.com' is outside routing.accepted_domains (contoso.com)" in out.stderr


def test_peer_exchange_um_defaults_to_false():
    cfg = Config.from_dict({"sip": {"peers": [{"name": "gw", "match": "10.0.0.5"},
                                              {"name": "um-gw", "match": "10.0.0.6", "exchange_um": True}]}})
    assert [p.exchange_um for p in cfg.sip.peers] == [False, True]
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"sip": {"peers": [{"name": "gw", "match": "10.0.0.5", "exchange_um": "yes"}]}})
    assert e.value.errors == ["sip.peers[0].exchange_um: expected true or false, got str"]
