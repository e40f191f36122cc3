"""[delivery] for Exchange: every backend's keys validated, errors naming the key, and the README's
examples loading as written."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from appliance.config import Config, ConfigError

APP = {"tenant": "contoso.onmicrosoft.com", "client_id": "3f1c8a7e-0000-4000-8000-00000000fa11",
       "client_secret": "s3cret"}


def errors(delivery: dict) -> str:
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"delivery": delivery})
    return "\n".join(e.value.errors)


@pytest.mark.parametrize("delivery, expected", [
    ({"backend": "exchange"}, "delivery.backend: must be one of smtp, direct, graph, maildir"),
    ({"backend": "smtp", "url": "smtp://h:587", "auth": "kerberos"}, "delivery.auth: must be"),
    ({"backend": "smtp", "url": "smtp://h:587", "auth": "password"}, "delivery.username: needed"),
    ({"backend": "smtp", "url": "smtp://h:587", "auth": "oauth2", **APP}, "delivery.username: needed for auth"),
    ({"backend": "smtp", "url": "smtp://h:587", "auth": "oauth2", "username": "f@x.test",
      "client_id": "c", "client_secret": "s"}, "delivery.tenant: needed"),
    ({"backend": "graph", "tenant": "t", "client_secret": "s"}, "delivery.client_id: needed for the graph"),
    ({"backend": "graph", "tenant": "t", "client_id": "c"}, "exactly one of client_secret"),
    ({"backend": "graph", **APP, "client_certificate": "/x.pem"}, "exactly one of client_secret"),
    ({"backend": "graph", **APP, "tenant": "https://login.microsoftonline.com/x"}, "delivery.tenant: must be"),
    ({"backend": "graph", **APP, "authority": "http://login.test"}, "delivery.authority: must be an https"),
    ({"backend": "graph", **APP, "graph_url": "http://graph.test"}, "delivery.graph_url: must be an https"),
    ({"backend": "graph", **APP, "max_message_bytes": 200 * 1024 * 1024}, "Graph accepts at most"),
    ({"tls_client_key": "/k.pem"}, "delivery.tls_client_key: given without"),
    ({"backend": "direct", "dns_servers": ["dns.example"]}, "delivery.dns_servers: 'dns.example' is not an IP"),
    ({"backend": "direct", "direct_port": 0}, "delivery.direct_port: must be a port"),
])
def test_errors_name_the_key(delivery: dict, expected: str) -> None:
    assert expected in errors(delivery)


def test_secret_never_in_an_error() -> None:
    text = errors({"backend": "graph", **APP, "client_id": "", "client_secret": "TOP-SECRET-42"})
    assert "TOP-SECRET-42" not in text


def test_good_backends_load() -> None:
    smtp = Config.from_dict({"delivery": {"backend": "smtp", "url": "smtp://smtp.office365.com:587",
                                         "auth": "oauth2", "username": "fax@x.test", **APP}}).delivery
    assert smtp.uses_oauth and smtp.scope == "https://outlook.office365.com/.default"
    graph = Config.from_dict({"delivery": {"backend": "graph", **APP}}).delivery
    assert graph.uses_oauth and graph.scope == "https://graph.microsoft.com/.default"
    plain = Config.from_dict({"delivery": {"backend": "smtp", "url": "smtp://h:25", "username": "u"}}).delivery
    assert plain.auth_mode == "password" and not plain.uses_oauth
    direct = Config.from_dict({"delivery": {"backend": "direct", "dns_servers": ["127.0.0.1", "::1"]}}).delivery
    assert direct.auth_mode == "none"


def _readme_delivery_examples() -> list[dict]:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Into Exchange"):text.index("## Commands")]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    return [tomllib.loads(b)["delivery"] for b in blocks if b.startswith("[delivery]")]


def test_the_readme_exchange_examples_load() -> None:
    examples = _readme_delivery_examples()
    assert len(examples) >= 4
    for delivery in examples:
        if delivery.get("auth") == "oauth2" or delivery.get("backend") == "graph":
            delivery.setdefault("client_secret", "from secrets.toml")
        if delivery.get("tls_client_cert"):
            delivery.pop("tls_client_cert")  # a path on the appliance, not here
        delivery.pop("ca_file", None)
        if "backend" in delivery:
            Config.from_dict({"delivery": delivery})
