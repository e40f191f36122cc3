"""[sip] TLS, [[sip.peers]] and [[sip.registrations]]: every key checked, errors name the key."""
from __future__ import annotations

import pytest

from appliance.config import Config, ConfigError

PEER = {"name": "gw", "match": "192.0.2.0/24"}
REG = {"name": "pbx", "registrar": "sip:pbx.example:5060;transport=tcp", "user": "fax"}


def _errors(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as e:
        Config.from_dict(data)
    return e.value.errors


def test_full_sip_section_loads(tmp_path):
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    f = tmp_path / "faxbridge.toml"
    f.write_text("""
[sip]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060", "tls:127.0.0.1:5061"]
tls_cert = "cert.pem"
tls_key = "key.pem"
allow_unknown = false
rate_limit = 5
rate_burst = 10

[[sip.peers]]
name = "gateway"
match = "192.0.2.10"
transport = "tls"
t38 = "request"
t38_max_datagram = 400

[[sip.peers]]
name = "lan"
match = "fd00::/8"
username = "gw"
password = "in-main-file"

[[sip.registrations]]
name = "pbx"
registrar = "sip:pbx.example:5060;transport=tcp"
user = "5551000"
auth_user = "fax-auth"
outbound_proxy = "sip:127.0.0.1:5070;transport=udp"
""")
    (tmp_path / "secrets.toml").write_text("""
[[sip.registrations]]
name = "pbx"
password = "from-secrets"
""")
    (tmp_path / "secrets.toml").chmod(0o600)
    cfg = Config.load(f)
    sip = cfg.sip
    assert [(l.transport, l.port) for l in sip.listeners()] == [("udp", 5060), ("tcp", 5060), ("tls", 5061)]
    assert sip.peers[0].t38 == "request" and sip.peers[0].transport == "tls" and sip.peers[0].t38_max_datagram == 400
    assert sip.peers[1].t38 == "accept" and sip.peers[1].password == "in-main-file"
    reg = sip.registrations[0]
    assert reg.password == "from-secrets" and reg.expires == 3600 and reg.auth_user == "fax-auth"
    assert "from-secrets" not in repr(cfg) and "in-main-file" not in repr(cfg)
    assert sip.rate_limit == 5 and sip.rate_burst == 10


def test_secrets_entry_without_match_is_an_error(tmp_path):
    f = tmp_path / "faxbridge.toml"
    f.write_text('[[sip.registrations]]\nname = "pbx"\nregistrar = "sip:127.0.0.1;transport=udp"\nuser = "u"\n')
    (tmp_path / "secrets.toml").write_text('[[sip.registrations]]\nname = "pbz"\npassword = "x"\n')
    (tmp_path / "secrets.toml").chmod(0o600)
    with pytest.raises(ConfigError, match=r"sip.registrations\[0\].name: no entry named 'pbz'"):
        Config.load(f)


def test_tls_listener_default_port_and_files_checked(tmp_path):
    cfg = Config.from_dict({"sip": {"listen": ["tls:127.0.0.1"], "tls_cert": "/etc/hostname", "tls_key": "/etc/hostname"}})
    assert cfg.sip.listeners()[0].port == 5061
    errors = _errors({"sip": {"listen": ["tls:127.0.0.1:5061"], "tls_cert": str(tmp_path / "none.pem"),
                              "tls_key": "/etc/hostname"}})
    assert any(e.startswith("sip.tls_cert: ") and "not a readable file" in e for e in errors), errors


@pytest.mark.parametrize("data,expected", [
    ({"listen": ["tls:127.0.0.1:5061"]}, "sip.tls_cert: a tls listener needs"),
    ({"tls_verify_client": True}, "sip.tls_verify_client: needs sip.tls_ca"),
    ({"tls_verify_client": "yes"}, "sip.tls_verify_client: expected true or false"),
    ({"allow_unknown": 1}, "sip.allow_unknown: expected true or false"),
    ({"rate_limit": 0}, "sip.rate_limit"),
    ({"rate_burst": 0}, "sip.rate_burst"),
    ({"auth_realm": 'a"b'}, "sip.auth_realm"),
    ({"peers": {"name": "x"}}, "sip.peers: expected an array of tables"),
    ({"peers": [PEER, {**PEER, "match": "300.1.1.1"}]}, "sip.peers[1].match: '300.1.1.1' is not"),
    ({"peers": [{**PEER, "name": ""}]}, "sip.peers[0].name: must not be empty"),
    ({"peers": [PEER, PEER]}, "sip.peers[1].name: 'gw' is used twice"),
    ({"peers": [{**PEER, "transport": "sctp"}]}, "sip.peers[0].transport"),
    ({"peers": [{**PEER, "t38": "maybe"}]}, "sip.peers[0].t38: must be off, accept or request"),
    ({"peers": [{**PEER, "username": "u"}]}, "sip.peers[0].password: username and password go together"),
    ({"peers": [{**PEER, "t38_max_datagram": 50}]}, "sip.peers[0].t38_max_datagram"),
    ({"peers": [{**PEER, "t38_max_datagram": "400"}]}, "sip.peers[0].t38_max_datagram: expected an integer"),
    ({"peers": [{**PEER, "mtach": "x"}]}, "sip.peers[0].mtach: unknown key"),
    ({"registrations": [{**REG, "registrar": "http://pbx"}]}, "sip.registrations[0].registrar: 'http://pbx' is not"),
    ({"registrations": [{**REG, "registrar": "sip:pbx;transport=sctp"}]}, "sip.registrations[0].registrar"),
    ({"registrations": [{**REG, "registrar": "sip:pbx;transport=tls"}]},
     "sip.registrations[0].registrar: needs a tls listener"),
    ({"registrations": [{**REG, "outbound_proxy": "nonsense"}]}, "sip.registrations[0].outbound_proxy"),
    ({"registrations": [{**REG, "user": ""}]}, "sip.registrations[0].user"),
    ({"registrations": [{**REG, "user": "a@b"}]}, "sip.registrations[0].user"),
    ({"registrations": [{**REG, "contact_user": "a b"}]}, "sip.registrations[0].contact_user"),
    ({"registrations": [{**REG, "expires": 5}]}, "sip.registrations[0].expires"),
    ({"registrations": [REG, REG]}, "sip.registrations[1].name: 'pbx' is used twice"),
    ({"registrations": [{**REG, "pasword": "x"}]}, "sip.registrations[0].pasword: unknown key"),
])
def test_sip_errors_name_the_key(data, expected):
    errors = _errors({"sip": data})
    assert any(expected in e for e in errors), errors


def test_passwords_never_in_error_messages():
    errors = _errors({"sip": {"peers": [{**PEER, "password": "hunter2", "match": "bad"}],
                              "registrations": [{**REG, "password": "hunter3", "expires": 1}]}})
    assert errors and not any("hunter" in e for e in errors)


@pytest.mark.parametrize("listen,expected", [
    ("udp:127.0.0.1:70000", "sip.listen: 'udp:127.0.0.1:70000': port 70000 is out of range (1-65535)"),
    ("tcp:0.0.0.0:0", "sip.listen: 'tcp:0.0.0.0:0': port 0 is out of range (1-65535)"),
    ("udp:127.0.0.1:50x0", "sip.listen: 'udp:127.0.0.1:50x0': port '50x0' is not a number"),
    ("udp:pbx.example:5060", "sip.listen: 'udp:pbx.example:5060': 'pbx.example' is not an IP address (e.g. 0.0.0.0 "
                             "for all)"),
    ("upd:127.0.0.1:5060", "sip.listen: 'upd:127.0.0.1:5060': transport must be udp, tcp or tls (did you mean 'udp'?)"),
    ("5060", "sip.listen: '5060' is not transport:address:port (e.g. udp:0.0.0.0:5060)"),
])
def test_a_listen_address_error_says_what_is_wrong_with_it(listen: str, expected: str) -> None:
    assert expected in _errors({"sip": {"listen": [listen]}})


@pytest.mark.parametrize("ports,expected", [
    ([50000, 40000], "sip.rtp_ports: the first port, 50000, is above the last, 40000"),
    ([40000, 70000], "sip.rtp_ports: the last port, 70000, is out of range (1024-65535)"),
    ([80, 40999], "sip.rtp_ports: the first port, 80, is out of range (1024-65535)"),
    ([40000], "sip.rtp_ports: needs two ports, the first and the last (got 1)"),
])
def test_an_rtp_range_error_speaks_of_the_first_and_last_port_not_of_a_syntax(ports: list, expected: str) -> None:
    errors = _errors({"sip": {"rtp_ports": ports}})
    assert expected in errors, errors
    assert not any("[first, last]" in e for e in errors)  # the settings page writes it 40000-40999


def test_too_few_rtp_ports_for_max_calls_are_named_as_a_range() -> None:
    errors = _errors({"sip": {"rtp_ports": [40000, 40009], "max_calls": 24}})
    assert ("sip.max_calls: 24 calls need 24 RTP ports (one even port each); the RTP ports from 40000 to 40009 "
            "hold 5") in errors, errors
