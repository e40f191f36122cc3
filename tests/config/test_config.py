"""Configuration: strict, every error names its key."""

from __future__ import annotations

import pytest

from appliance.config import Config, ConfigError


def test_embedded_defaults_are_valid_and_on_loopback():
    cfg = Config.from_dict({})
    assert [(l.transport, l.host, l.port) for l in cfg.sip.listeners()] == [
        ("udp", "127.0.0.1", 5060), ("tcp", "127.0.0.1", 5060)]
    assert cfg.web.listen.startswith("127.0.0.1:")
    assert cfg.delivery.backend == "maildir"


def test_issue_example_loads(tmp_path):
    f = tmp_path / "faxbridge.toml"
    f.write_text("""
[sip]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
rtp_ports = [40000, 40999]
[spool]
dir = "var/spool"
[delivery]
backend = "smtp"
url = "smtp://127.0.0.1:2525"
from = "fax@example.test"
[routing]
default = "faxes@example.test"
[routing.called]
"5551000" = "sales@example.test"
[web]
listen = "127.0.0.1:8080"
""")
    cfg = Config.load(f)
    assert cfg.delivery.from_ == "fax@example.test"
    assert cfg.routing.called == {"5551000": "sales@example.test"}
    assert cfg.path(cfg.spool.dir) == tmp_path / "var/spool"


@pytest.mark.parametrize("data,expected", [
    ({"sip": {"listn": []}}, "sip.listn: unknown key"),
    ({"sipp": {}}, "sipp: unknown section"),
    ({"sip": {"rtp_ports": [5, 4]}}, "sip.rtp_ports"),
    ({"sip": {"listen": ["sctp:127.0.0.1:5060"]}}, "sip.listen"),
    ({"sip": {"listen": ["udp:nonsense"]}}, "sip.listen"),
    ({"sip": {"rtp_ports": "40000"}}, "sip.rtp_ports: expected a list of an integer"),
    ({"delivery": {"backend": "fax"}}, "delivery.backend"),
    ({"delivery": {"backend": "smtp", "url": "http://x"}}, "delivery.url"),
    ({"delivery": {"from": "a@b\r\nBcc: x@y"}}, "delivery.from"),
    ({"delivery": {"timeout": True}}, "delivery.timeout: expected an integer"),
    ({"routing": {"called": {"5551000": "not-an-address"}}}, "routing.called.5551000"),
    ({"routing": {"default": 5}}, "routing.default: expected a string"),
    ({"fax": {"ident": "x" * 21}}, "fax.ident"),
    ({"fax": {"no_signal_timeout": 0}}, "fax.no_signal_timeout"),
    ({"web": {"listen": "127.0.0.1:99999"}}, "web.listen"),
    ({"spool": []}, "spool: must be a table"),
])
def test_errors_name_the_key(data, expected):
    with pytest.raises(ConfigError) as e:
        Config.from_dict(data)
    assert any(expected in err for err in e.value.errors), e.value.errors


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"sip": {"a": 1}, "web": {"b": 2}})
    assert len(e.value.errors) == 2


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[sip\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load(tmp_path / "missing.toml")


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    # found by the fuzz target config_load: UnicodeDecodeError escaped Config.load (the daemon
    # would stop with a traceback instead of naming the file)
    main = tmp_path / "faxbridge.toml"
    main.write_bytes(b'[delivery]\nfrom = "fax@con\x8foso.com"\n')
    with pytest.raises(ConfigError, match=r"faxbridge.toml: not UTF-8 text \(byte 26\)"):
        Config.load(main)
    main.write_text('[delivery]\nbackend = "smtp"\nurl = "smtp://127.0.0.1:25"\n')
    secrets = tmp_path / "secrets.toml"
    secrets.write_bytes(b'[delivery]\npassword = "s\xfdcret"\n')
    secrets.chmod(0o600)
    with pytest.raises(ConfigError, match="secrets.toml: not UTF-8 text"):
        Config.load(main)


# Found by fuzzing (config_load): each of these escaped from_dict/load as a traceback.
@pytest.mark.parametrize("data,expected", [
    ({"sip": {"tls_cert": "a" * 300}}, "sip.tls_cert: "),  # OSError: file name too long
    ({"routing": {"rules": [{"to": ["a@example.com"], "tsi": "a{99999999999}"}]}}, "tsi: bad regex"),  # OverflowError
    ({"routing": {"rules": [{"to": ["a@example.com"], "called_pattern": "(" * 1000 + ")" * 1000}]}},
     "called_pattern: bad regex"),  # RecursionError
])
def test_values_that_crashed_validation_are_config_errors(data, expected):
    with pytest.raises(ConfigError) as e:
        Config.from_dict(data)
    assert any(expected in err for err in e.value.errors), e.value.errors


@pytest.mark.parametrize("main,secret", [
    ('[[sip.registrations]]\nname = ["pbx"]\n', '[[sip.registrations]]\nname = "pbx"\npassword = "p"\n'),
    ('[[sip.registrations]]\nname = "pbx"\n', '[[sip.registrations]]\nname = ["pbx"]\npassword = "p"\n'),
])
def test_secrets_merged_by_a_name_that_is_not_a_string_is_a_config_error(tmp_path, main, secret):
    (tmp_path / "faxbridge.toml").write_text(main)
    (tmp_path / "secrets.toml").write_text(secret)
    (tmp_path / "secrets.toml").chmod(0o600)
    with pytest.raises(ConfigError):  # was TypeError: unhashable type: 'list'
        Config.load(tmp_path / "faxbridge.toml")


def test_secrets_file_overrides(tmp_path):
    (tmp_path / "faxbridge.toml").write_text('[delivery]\nbackend="smtp"\nurl="smtp://127.0.0.1:25"\n')
    (tmp_path / "secrets.toml").write_text('[delivery]\nusername="u"\npassword="p"\n')
    (tmp_path / "secrets.toml").chmod(0o600)
    cfg = Config.load(tmp_path / "faxbridge.toml")
    assert (cfg.delivery.username, cfg.delivery.password) == ("u", "p")


def test_check_config_command_names_keys(tmp_path, capsys):
    from appliance.cli import main
    f = tmp_path / "c.toml"
    f.write_text('[sip]\nlisten = ["udp:127.0.0.1:5060"]\nbogus = 1\n')
    assert main(["check-config", str(f)]) == 1
    assert "sip.bogus: unknown key" in capsys.readouterr().err
    f.write_text('[sip]\nlisten = ["udp:127.0.0.1:5060"]\n')
    assert main(["check-config", str(f)]) == 0
