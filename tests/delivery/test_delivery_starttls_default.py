"""delivery.starttls left out means "required" for any server that is not on this box, and
"opportunistic" for one on loopback (a local relay); an explicit "opportunistic" or "none" still
means what it says. Every server here is a real aiosmtpd on 127.0.0.1: "not on this box" is
played by the direct backend, whose MX host names (from a real DNS server on loopback) are not
loopback names even though they resolve there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import ConfigError, Config, DeliveryConfig
from appliance.delivery.direct import send_direct
from appliance.delivery.smtp import TemporaryDeliveryError, send_smtp
from smtp_harness import smtp_cfg
from test_delivery_direct import LOCAL, RCPT, direct_cfg, dns_server, msg, zone  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]


def _remote(dns_server, port: int, **kw):  # type: ignore[no-untyped-def]
    """A direct-backend configuration whose MX, mx1.one.test, is a server that is not this box."""
    dns = dns_server(zone(one_test={"MX": ["10 mx1.one.test."]}, mx1_one_test={"A": [LOCAL]}))
    return direct_cfg(dns, port, **kw)


def test_a_remote_server_without_starttls_is_refused_by_default(dns_server, smtp_server, msg):
    server = smtp_server(starttls=False, names=("mx1.one.test",))
    cfg = _remote(dns_server, server.port, starttls="")
    with pytest.raises(TemporaryDeliveryError) as e:
        send_direct(cfg, msg, RCPT)
    text = str(e.value)
    assert "mx1.one.test" in text and "STARTTLS required but not offered" in text
    assert "delivery.starttls is not set" in text and 'delivery.starttls = "opportunistic"' in text
    assert server.handler.messages == [] and server.handler.attempted == []  # nothing went in clear


def test_a_remote_server_offering_starttls_gets_it_by_default(dns_server, smtp_server, msg, ca_file):
    server = smtp_server(starttls=True, names=("mx1.one.test",))
    send_direct(_remote(dns_server, server.port, starttls="", ca_file=ca_file), msg, RCPT)
    (m,) = server.handler.messages
    assert m["tls"] is True


def test_an_owner_who_chose_opportunistic_still_sends_in_clear(dns_server, smtp_server, msg):
    server = smtp_server(starttls=False, names=("mx1.one.test",))
    send_direct(_remote(dns_server, server.port, starttls="opportunistic"), msg, RCPT)
    (m,) = server.handler.messages
    assert m["tls"] is False


def test_none_never_starts_tls_even_when_offered(smtp_server, msg, ca_file):
    server = smtp_server(starttls=True)
    send_smtp(smtp_cfg(server.port, starttls="none", ca_file=ca_file), msg, RCPT)
    (m,) = server.handler.messages
    assert m["tls"] is False


@pytest.mark.parametrize("offered", [False, True])
def test_a_relay_on_this_box_is_opportunistic_by_default(smtp_server, msg, ca_file, offered):
    server = smtp_server(starttls=offered)
    for host in ("127.0.0.1", "localhost"):
        cfg = smtp_cfg(server.port, starttls="", ca_file=ca_file)
        cfg.url = f"smtp://{host}:{server.port}"
        if host == "localhost":
            cfg.verify_tls = False  # the certificate names 127.0.0.1
        send_smtp(cfg, msg, RCPT)
    assert [m["tls"] for m in server.handler.messages] == [offered, offered]


@pytest.mark.parametrize("starttls, host, address, effective", [
    ("", "mail.example.com", None, "required"),
    ("", "mail.example.com", "127.0.0.1", "required"),  # a name that resolves to loopback is not "on this box"
    ("", "127.0.0.1", "127.0.0.1", "opportunistic"),
    ("", "localhost", "::1", "opportunistic"),
    ("", "::1", None, "opportunistic"),
    ("", "localhost", "192.0.2.1", "required"),  # localhost that reaches elsewhere
    ("", "10.0.0.25", None, "required"),
    ("opportunistic", "mail.example.com", None, "opportunistic"),
    ("none", "mail.example.com", None, "none"),
    ("required", "127.0.0.1", "127.0.0.1", "required"),
])
def test_the_policy_per_server(starttls: str, host: str, address: str | None, effective: str) -> None:
    assert DeliveryConfig(starttls=starttls).starttls_for(host, address) == effective


def test_the_default_is_empty_and_a_wrong_value_is_named() -> None:
    assert DeliveryConfig().starttls == ""
    with pytest.raises(ConfigError, match=r'delivery\.starttls: must be "" \(required, except on loopback\)'):
        Config.from_dict({"delivery": {"starttls": "sometimes"}})


@pytest.mark.parametrize("delivery, shown", [
    ('backend = "smtp"\nurl = "smtp://mail.example.com:587"',
     "delivery.starttls: required (the default: mail.example.com is not on this box)"),
    ('backend = "smtp"\nurl = "smtp://127.0.0.1:25"',
     "delivery.starttls: opportunistic (the default: 127.0.0.1 is on this box (loopback))"),
    ('backend = "direct"', "delivery.starttls: required (the default: the recipients' MX hosts are not on this box)"),
    ('backend = "smtp"\nurl = "smtp://mail.example.com:587"\nstarttls = "opportunistic"',
     "delivery.starttls: opportunistic (set in delivery.starttls)"),
])
def test_check_config_shows_the_policy_in_effect(tmp_path: Path, delivery: str, shown: str) -> None:
    cfg = tmp_path / "faxbridge.toml"
    cfg.write_text(f'[delivery]\n{delivery}\nfrom = "fax@example.com"\n')
    out = subprocess.run([sys.executable, "-m", "appliance", "check-config", str(cfg)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert shown in out.stdout.splitlines(), out.stdout
