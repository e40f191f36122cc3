"""Settings and wizard for who may name a recipient (issue 10, finding 3): a peer's exchange_um
switch and routing.accepted_domains, edited through the real forms into the real file, refusals
shown on the page in the configuration's own words, nothing written when refused."""

from __future__ import annotations

import re
from pathlib import Path

from flask.testing import FlaskClient
from webauth import csrf

from appliance.config import Config, config_file

BOX_TOML = """# front desk
[spool]
dir = "spool"

[delivery]
backend = "maildir"
url = "Maildir"

[routing]
default = "faxes@contoso.com"

[[routing.rules]]
name = "sales"
called = "5551000"
to = ["sales@contoso.com"]

[[sip.peers]]
name = "ht802"
match = "192.0.2.20"
"""


def _post(client: FlaskClient, url: str, data: dict) -> object:
    return client.post(url, data={"csrf_token": csrf(client), **data})


def _routing(**over: str) -> dict[str, str]:
    form = {"routing.default": "faxes@contoso.com", "routing.accepted_domains": "", "routing.called": "",
            "rules-count": "2", "rules-0-_origin": "0", "rules-0-name": "sales", "rules-0-called": "5551000",
            "rules-0-to": "sales@contoso.com", "rules-0-format": "tiff", "rules-0-tiff": "",
            "rules-1-_origin": "", "rules-1-format": "tiff", "rules-1-tiff": ""}
    form.update(over)
    return form


def _block(html: str, name: str, next_name: str) -> str:
    """The page from one field's input to the next one's: what is shown beside that field."""
    return html[html.index(f'name="{name}"'):html.index(f'name="{next_name}"')]


def test_routing_page_edits_accepted_domains(web: FlaskClient, box: Path) -> None:
    page = web.get("/settings/routing").get_data(as_text=True)
    assert 'name="routing.accepted_domains"' in page and "Accepted domains" in page
    r = _post(web, "/settings/routing", _routing(**{
        "routing.accepted_domains": "contoso.com\nFabrikam.com", "rules-0-to": "sales@contoso.com, desk@fabrikam.com"}))
    assert r.status_code == 302, r.get_data(as_text=True)
    cfg = Config.load(box)
    assert cfg.routing.accepted_domains == ["contoso.com", "Fabrikam.com"]
    assert cfg.routing.rules[0].to == ["sales@contoso.com", "desk@fabrikam.com"]
    assert 'accepted_domains = ["contoso.com", "Fabrikam.com"]' in box.read_text()
    assert "contoso.com\nFabrikam.com</textarea>" in web.get("/settings/routing").get_data(as_text=True)


def test_a_rule_outside_accepted_domains_is_refused_beside_its_field(web: FlaskClient, box: Path) -> None:
    r = _post(web, "/settings/routing", _routing(**{"rules-0-to": "sales@contoso.com, eve@gmail.com"}))
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    words = ("&#39;eve@gmail.com&#39; is outside \u201cAccepted domains\u201d "
             "(not set, so only the domain of \u201cDefault mailbox\u201d: contoso.com)")
    assert words in _block(html, "rules-0-to", "rules-0-cc")  # beside the rule's To field, in the page's words
    assert html.count("is outside") == 1  # once: the summary at the top only points at the field
    assert "Not saved.</strong> Please correct the field marked below." in html
    assert box.read_text() == BOX_TOML


def test_a_default_or_number_outside_accepted_domains_is_refused(web: FlaskClient, box: Path) -> None:
    r = _post(web, "/settings/routing", _routing(**{"routing.accepted_domains": "contoso.com",
                                                    "routing.default": "faxes@fabrikam.com"}))
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert ("&#39;faxes@fabrikam.com&#39; is outside \u201cAccepted domains\u201d (contoso.com)"
            in _block(html, "routing.default", "routing.accepted_domains"))
    r = _post(web, "/settings/routing", _routing(**{"routing.called": "5552000 = billing@fabrikam.com"}))
    assert r.status_code == 400
    assert ("5552000: &#39;billing@fabrikam.com&#39; is outside \u201cAccepted domains\u201d"
            in _block(r.get_data(as_text=True), "routing.called", "rules-count"))
    r = _post(web, "/settings/routing", _routing(**{"routing.accepted_domains": "*.contoso.com"}))
    assert r.status_code == 400
    assert ("&#39;*.contoso.com&#39; is not a domain name"
            in _block(r.get_data(as_text=True), "routing.accepted_domains", "routing.called"))
    assert box.read_text() == BOX_TOML


def test_which_rule_box_shows_a_refused_um_recipient(web: FlaskClient, box: Path) -> None:
    r = _post(web, "/settings/routing", {**_routing(), "action": "try", "probe-called": "5559999",
                                         "probe-um": "ceo@gmail.com"})
    assert r.status_code == 200, r.get_data(as_text=True)
    m = re.search(r'id="route-decision">(.*?)</div>', r.get_data(as_text=True), re.S)
    assert m is not None
    text = " ".join(re.sub(r"<[^>]+>", "", m.group(1)).split())
    assert "match default and go to faxes@contoso.com" in text
    assert ("Refused: &#39;ceo@gmail.com&#39; is outside routing.accepted_domains (not set, so only the domain "
            "of routing.default: contoso.com)") in text
    assert box.read_text() == BOX_TOML


def _sip(**over: str) -> dict[str, str]:
    form = {"sip.listen": "udp:127.0.0.1:5060", "sip.public_address": "", "sip.rtp_ports": "40000-40999",
            "sip.tls_cert": "", "sip.tls_key": "", "sip.tls_ca": "", "peers-count": "2",
            "peers-0-_origin": "0", "peers-0-name": "ht802", "peers-0-match": "192.0.2.20", "peers-0-transport": "",
            "peers-0-t38": "accept", "peers-0-username": "", "peers-0-t38_max_datagram": "0",
            "peers-0-exchange_um-shown": "1",
            "peers-1-_origin": "", "peers-1-name": "", "peers-1-match": "", "peers-1-transport": "",
            "peers-1-t38": "accept", "peers-1-username": "", "peers-1-t38_max_datagram": "0",
            "peers-1-exchange_um-shown": "1", "regs-count": "0"}
    form.update(over)
    return form


def test_sip_page_edits_exchange_um_per_peer(web: FlaskClient, box: Path) -> None:
    page = web.get("/settings/sip").get_data(as_text=True)
    assert 'name="peers-0-exchange_um-shown"' in page and "Exchange UM gateway" in page
    assert 'name="peers-0-exchange_um" value="1" checked' not in page  # off unless set
    r = _post(web, "/settings/sip", _sip(**{
        "peers-1-name": "um-gw", "peers-1-match": "192.0.2.30", "peers-1-exchange_um": "1"}))
    assert r.status_code == 302, r.get_data(as_text=True)
    cfg = Config.load(box)
    assert [(p.name, p.exchange_um) for p in cfg.sip.peers] == [("ht802", False), ("um-gw", True)]
    assert "exchange_um = true" in box.read_text() and box.read_text().count("exchange_um") == 1
    page = web.get("/settings/sip").get_data(as_text=True)
    assert 'name="peers-1-exchange_um" value="1" checked' in page
    # unchecked again: saved as false
    r = _post(web, "/settings/sip", _sip(**{
        "peers-count": "3", "peers-1-_origin": "1", "peers-1-name": "um-gw", "peers-1-match": "192.0.2.30",
        "peers-2-_origin": "", "peers-2-t38": "accept", "peers-2-t38_max_datagram": "0"}))
    assert r.status_code == 302, r.get_data(as_text=True)
    assert [p.exchange_um for p in Config.load(box).sip.peers] == [False, False]


def test_wizard_accepts_the_default_mailboxs_domain(anon_client: FlaskClient, config: Config) -> None:
    from webauth import PASSWORD, setup_code

    client = anon_client
    r = _post(client, "/setup", {"password": PASSWORD, "confirm": PASSWORD, "setup_code": setup_code(client)})
    assert r.status_code == 302
    r = _post(client, "/setup/mailbox", {"routing.default": "Faxes@Contoso.com", "delivery.admin": ""})
    assert r.status_code == 302, r.get_data(as_text=True)
    path = config_file(config)
    cfg = Config.load(path)
    assert cfg.routing.accepted_domains == ["contoso.com"] and 'accepted_domains = ["contoso.com"]' in path.read_text()
    assert "contoso.com (Settings, Routing: accepted domains)" in client.get("/setup/done").get_data(as_text=True)
    # back to the step with another mailbox: its domain is added, the first one kept
    r = _post(client, "/setup/mailbox", {"routing.default": "fax@fabrikam.com", "delivery.admin": ""})
    assert r.status_code == 302, r.get_data(as_text=True)
    assert Config.load(path).routing.accepted_domains == ["contoso.com", "fabrikam.com"]
    # the same domain again: nothing added
    r = _post(client, "/setup/mailbox", {"routing.default": "other@FABRIKAM.com", "delivery.admin": ""})
    assert r.status_code == 302
    assert Config.load(path).routing.accepted_domains == ["contoso.com", "fabrikam.com"]
