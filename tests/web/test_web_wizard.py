"""The first-start wizard: from an empty box (no configuration file, no password) to a valid
configuration file, step by step through the real forms; its test buttons."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from flask.testing import FlaskClient
from webauth import PASSWORD, csrf, setup_code

from appliance.config import Config, config_file
from appliance.web.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "delivery"))
import smtp_harness  # noqa: E402

# the real SMTP server fixtures of the delivery tests
ca = smtp_harness.ca
smtp_server = smtp_harness.smtp_server

SECRET = "wizard-Secret-123"


def _post(client: FlaskClient, url: str, data: dict) -> object:
    return client.post(url, data={"csrf_token": csrf(client), **data})


def _where(r: object) -> str:
    return r.headers["Location"]  # type: ignore[attr-defined]


def test_wizard_from_an_empty_box_to_a_valid_configuration(anon_client: FlaskClient, config: Config) -> None:
    client = anon_client
    path = config_file(config)
    assert not path.exists()
    # the lead's first step: the password, then on to the wizard
    r = _post(client, "/setup", {"password": PASSWORD, "confirm": PASSWORD, "setup_code": setup_code(client)})
    assert r.status_code == 302 and _where(r).endswith("/setup/system")

    page = client.get("/setup/system").get_data(as_text=True)
    assert "Name and time zone" in page and 'aria-current="step"' in page
    r = _post(client, "/setup/system", {"system.hostname": "bad name!", "system.timezone": "Mars/Olympus"})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    hostname = html[html.index('name="system.hostname"'):html.index('name="system.timezone"')]
    timezone = html[html.index('name="system.timezone"'):html.index("Save and continue")]
    assert "letters, digits and &#39;-&#39; only" in hostname  # beside its field, once, without the key
    assert "&#39;Mars/Olympus&#39; is not a known time zone" in timezone
    assert html.count("is not a known time zone") == 1 and "system.timezone:" not in html
    assert "Please correct the 2 fields marked below." in html
    assert not path.exists()  # nothing written
    r = _post(client, "/setup/system", {"system.hostname": "faxdesk", "system.timezone": "Europe/Berlin"})
    assert r.status_code == 302 and _where(r).endswith("/setup/lines")

    r = _post(client, "/setup/lines", {"modem.devices": "", "fax.ident": "+49 30 1234567", "peers-count": "1",
                                       "peers-0-_origin": "", "peers-0-name": "pbx", "peers-0-match": "10.0.0.5",
                                       "peers-0-transport": "", "peers-0-t38": "request", "peers-0-username": "",
                                       "peers-0-t38_max_datagram": "0"})
    assert r.status_code == 302 and _where(r).endswith("/setup/delivery"), r.get_data(as_text=True)

    page = client.get("/setup/delivery").get_data(as_text=True)
    for title in ("Exchange Online (Microsoft 365), signed in as an app", "Exchange Online through a connector",
                  "Exchange Server in the building", "Another mail server (SMTP)"):
        assert title in page
    r = _post(client, "/setup/delivery", {"kind": "smtp", "action": "save",
                                          "delivery.url": "smtp://mail.example.com:587",
                                          "delivery.from": "fax@example.com", "delivery.username": "fax",
                                          "delivery.password": SECRET, "test_to": ""})
    assert r.status_code == 302 and _where(r).endswith("/setup/mailbox"), r.get_data(as_text=True)

    r = _post(client, "/setup/mailbox", {"routing.default": "not-an-address", "delivery.admin": ""})
    html = r.get_data(as_text=True)
    block = html[html.index('name="routing.default"'):html.index('name="delivery.admin"')]
    assert r.status_code == 400 and "&#39;not-an-address&#39;" in block  # beside its field
    assert html.count("&#39;not-an-address&#39;") == 1 and "routing.default:" not in html  # once
    # a half-written address: its own error only, not one about a domain made from it
    r = _post(client, "/setup/mailbox", {"routing.default": "sales@", "delivery.admin": ""})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and html.count('class="field-error"') == 1, html
    assert "domain" not in html[html.index('id="form-errors"'):html.index("</div>", html.index('id="form-errors"'))]
    r = _post(client, "/setup/mailbox", {"routing.default": "faxes@example.com", "delivery.admin": "it@example.com"})
    assert r.status_code == 302 and _where(r).endswith("/setup/done")

    page = client.get("/setup/done").get_data(as_text=True)
    assert "faxdesk" in page and "faxes@example.com" in page and SECRET not in page
    r = _post(client, "/setup/done", {})
    assert r.status_code == 302

    cfg = Config.load(path)
    assert (cfg.system.hostname, cfg.system.timezone) == ("faxdesk", "Europe/Berlin")
    assert cfg.fax.ident == "+49 30 1234567"
    assert [(p.name, p.match, p.t38) for p in cfg.sip.peers] == [("pbx", "10.0.0.5", "request")]
    assert (cfg.delivery.backend, cfg.delivery.url, cfg.delivery.from_) == ("smtp", "smtp://mail.example.com:587",
                                                                            "fax@example.com")
    assert cfg.delivery.password == SECRET and SECRET not in path.read_text()
    assert stat.S_IMODE(path.with_name("secrets.toml").stat().st_mode) == 0o600
    assert cfg.routing.default == "faxes@example.com" and cfg.delivery.admin == "it@example.com"
    assert cfg.web.setup_done is True
    # the new file keeps the running box's spool where it was (both relative to the state directory)
    assert cfg.path(cfg.spool.dir).resolve() == config.path(config.spool.dir).resolve()


def test_wizard_pages_need_a_login_once_the_password_is_set(anon_client: FlaskClient) -> None:
    from webauth import store_for

    store_for(anon_client).set_password(PASSWORD)
    for url in ("/setup/system", "/setup/lines", "/setup/delivery", "/setup/mailbox", "/setup/done"):
        r = anon_client.get(url)
        assert r.status_code == 302 and "/login" in _where(r), url


def test_exchange_online_oauth_choice_fills_delivery_as_the_readme_says(admin_client: FlaskClient,
                                                                         config: Config) -> None:
    r = _post(admin_client, "/setup/delivery", {
        "kind": "o365-oauth", "action": "save", "via": "smtp", "delivery.from": "fax@contoso.com",
        "delivery.tenant": "contoso.onmicrosoft.com", "delivery.client_id": "00000000-0000-0000-0000-000000000001",
        "delivery.client_secret": SECRET, "test_to": ""})
    assert r.status_code == 302, r.get_data(as_text=True)
    d = Config.load(config_file(config)).delivery
    assert (d.backend, d.url, d.starttls, d.auth, d.username, d.from_) == (
        "smtp", "smtp://smtp.office365.com:587", "required", "oauth2", "fax@contoso.com", "fax@contoso.com")
    assert d.client_secret == SECRET and d.tenant == "contoso.onmicrosoft.com"
    # the page opens that choice again next time, the secret shown only as "set"
    page = admin_client.get("/setup/delivery").get_data(as_text=True)
    assert '<details class="choice" open id="kind-o365-oauth">' in page and SECRET not in page

    # a missing client ID is named; nothing changes
    before = config_file(config).read_text()
    r = _post(admin_client, "/setup/delivery", {
        "kind": "o365-oauth", "action": "save", "via": "graph", "delivery.from": "fax@contoso.com",
        "delivery.tenant": "contoso.onmicrosoft.com", "delivery.client_id": "", "test_to": ""})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and html.count("needed for the graph backend") == 1
    assert "delivery.client_id:" not in html
    assert config_file(config).read_text() == before


def test_wizard_test_message_button_sends_with_the_unsaved_settings(admin_client: FlaskClient, config: Config,
                                                                      smtp_server) -> None:
    server = smtp_server()
    r = _post(admin_client, "/setup/delivery", {
        "kind": "smtp", "action": "test", "delivery.url": f"smtp://127.0.0.1:{server.port}",
        "delivery.from": "fax@example.com", "delivery.username": "", "test_to": "me@example.com"})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert "It works" in r.get_data(as_text=True)
    assert [m["to"] for m in server.handler.messages] == [["me@example.com"]]
    assert not config_file(config).exists()  # a test saves nothing


def test_test_fax_and_probe_say_plainly_that_the_daemon_is_down(admin_client: FlaskClient) -> None:
    r = _post(admin_client, "/setup/test-fax", {})
    assert r.status_code == 503
    page = r.get_data(as_text=True)
    assert "fax service is not running, so it cannot send a test fax now" in page
    assert 'id="test-fax-fix"' in page and 'href="/system"' in page  # where to fix it, one click away
    assert "/tmp/" not in page and "No such file" not in page  # no socket paths or errno words
    r = _post(admin_client, "/settings/modem/probe", {"device": "/dev/ttyUSB7", "back": "/setup/lines"})
    assert r.status_code == 302 and _where(r).endswith("/setup/lines")
    page = admin_client.get("/setup/lines").get_data(as_text=True)
    assert "Probe of /dev/ttyUSB7: The fax service is not running, so it cannot do this now" in page


def test_the_wizard_answers_with_the_real_daemon(tmp_path: Path) -> None:
    """probe-modem and test-fax-status through a real control socket and the real commands."""
    import shutil

    from tests.control.harness import serve_appliance, short_dir
    from webauth import login

    from appliance.daemon import Appliance

    sock_dir = short_dir()
    box = tmp_path / "faxbridge.toml"
    box.write_text(f'[spool]\ndir = "spool"\n[system]\ncontrol_socket = "{sock_dir}/ctl.sock"\n')
    appliance = Appliance(Config.load(box))
    try:
        with serve_appliance(sock_dir / "ctl.sock", appliance):
            client = create_app(Config.load(box)).test_client()
            login(client)
            missing = "/dev/ttyUSB93"  # no such modem here
            _post(client, "/settings/modem/probe", {"device": missing, "back": "/settings/modem"})
            page = client.get("/settings/modem").get_data(as_text=True)
            assert f"Probe of {missing}: There is no device" in page
            page = client.get("/setup/test-fax/t999").get_data(as_text=True)
            assert "This test fax is no longer known" in page and "Send it again" in page
    finally:
        appliance.spool.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_changing_the_choice_leaves_no_oauth_sign_in_behind(admin_client: FlaskClient, config: Config) -> None:
    _post(admin_client, "/setup/delivery", {
        "kind": "o365-oauth", "action": "save", "via": "smtp", "delivery.from": "fax@contoso.com",
        "delivery.tenant": "contoso.onmicrosoft.com", "delivery.client_id": "00000000-0000-0000-0000-000000000001",
        "delivery.client_secret": SECRET, "test_to": ""})
    r = _post(admin_client, "/setup/delivery", {
        "kind": "smtp", "action": "save", "delivery.url": "smtp://relay.example.com:25",
        "delivery.from": "fax@example.com", "delivery.username": "", "test_to": ""})
    assert r.status_code == 302, r.get_data(as_text=True)
    d = Config.load(config_file(config)).delivery
    assert (d.backend, d.url, d.auth_mode, d.starttls) == ("smtp", "smtp://relay.example.com:25", "none", "")
    assert d.starttls_for("relay.example.com") == "required"  # the default: not on this box


def test_use_it_adds_a_detected_modem_and_nothing_else(admin_client: FlaskClient, config: Config, tmp_path: Path,
                                                         monkeypatch) -> None:
    import appliance.web.modems as modems

    dev = tmp_path / "dev"
    (dev / "serial" / "by-id").mkdir(parents=True)
    (dev / "ttyUSB0").touch()
    (dev / "serial" / "by-id" / "usb-Zoom_3095-if00").symlink_to("../../ttyUSB0")
    monkeypatch.setattr(modems, "DEV", dev)
    link = str(dev / "serial" / "by-id" / "usb-Zoom_3095-if00")
    page = admin_client.get("/setup/lines").get_data(as_text=True)
    assert link in page and ">Use it</button>" in page
    r = _post(admin_client, "/setup/lines/use", {"device": link})
    assert r.status_code == 302
    assert Config.load(config_file(config)).modem.devices == [link]
    assert "in use</span>" in admin_client.get("/setup/lines").get_data(as_text=True)
    _post(admin_client, "/setup/lines/use", {"device": "/etc/passwd"})
    assert Config.load(config_file(config)).modem.devices == [link]


def _field(html: str, name: str) -> str:
    """The one <input> named ``name`` inside the open choice's form (or the page)."""
    import re

    m = re.search(r'<input[^>]*name="%s"[^>]*>' % re.escape(name), html)
    assert m, name
    return m.group(0)


def test_where_faxes_go_shows_examples_not_the_built_in_maildir(admin_client: FlaskClient, config: Config) -> None:
    """A fresh box delivers into the embedded Maildir; the mail server field of "Another mail
    server" must not say "var/Maildir" (nor the sender "fax@localhost"): empty, with an example."""
    page = admin_client.get("/setup/delivery").get_data(as_text=True)
    smtp = page[page.index('id="kind-smtp"'):]
    server = _field(smtp, "delivery.url")
    assert 'value=""' in server and 'placeholder="smtp://mail.example.com:587"' in server
    assert "Maildir" not in smtp and "fax@localhost" not in page
    assert 'value=""' in _field(smtp, "delivery.from")
    # a file that names its Maildir explicitly shows no server either; a mail server it names is shown
    config_file(config).write_text('[delivery]\nbackend = "maildir"\nurl = "Maildir"\n')
    smtp = admin_client.get("/setup/delivery").get_data(as_text=True).split('id="kind-smtp"')[1]
    assert 'value=""' in _field(smtp, "delivery.url") and "Maildir" not in smtp
    config_file(config).write_text('[delivery]\nbackend = "smtp"\nurl = "smtp://relay.example.com:587"\n'
                                   'from = "fax@example.com"\n')
    smtp = admin_client.get("/setup/delivery").get_data(as_text=True).split('id="kind-smtp"')[1]
    assert 'value="smtp://relay.example.com:587"' in _field(smtp, "delivery.url")
    assert 'value="fax@example.com"' in _field(smtp, "delivery.from")


def test_lines_step_points_at_the_modems_found_where_they_are(admin_client: FlaskClient, tmp_path: Path,
                                                              monkeypatch) -> None:
    from appliance.web import modems

    dev = tmp_path / "dev"
    (dev / "serial" / "by-id").mkdir(parents=True)
    (dev / "ttyUSB0").touch()
    (dev / "serial" / "by-id" / "usb-USRobotics_5637-if00").symlink_to(dev / "ttyUSB0")
    monkeypatch.setattr(modems, "DEV", dev)
    page = admin_client.get("/setup/lines").get_data(as_text=True)
    found, field = page.index("Fax modems found"), page.index('name="modem.devices"')
    assert found < field and "usb-USRobotics_5637-if00" in page[found:field]  # the list is above the field
    help_text = page[field:page.index("</div>", field)]
    assert "found above" in help_text and "below" not in help_text


def test_the_fax_ident_is_on_the_system_page_for_every_box(admin_client: FlaskClient, config: Config) -> None:
    """A SIP-only box sets its fax ident on Settings, System (not only under Modems)."""
    page = admin_client.get("/settings/system").get_data(as_text=True)
    assert 'name="fax.ident"' in page and "This fax machine&#39;s number (ident)" in page
    r = _post(admin_client, "/settings/system", {"system.hostname": "", "system.timezone": "",
                                                 "fax.ident": "+49 30 1234567", "system.retention_days": "0",
                                                 "delivery.admin": ""})
    assert r.status_code == 302, r.get_data(as_text=True)
    assert Config.load(config_file(config)).fax.ident == "+49 30 1234567"
    modems = admin_client.get("/settings/modem").get_data(as_text=True)
    assert 'name="fax.ident"' not in modems and "System page" in modems  # modem.ident's help points there


def test_an_error_about_another_page_is_named_in_words_with_a_link_there(admin_client: FlaskClient,
                                                                         config: Config) -> None:
    """A hand-edited file with a bad default mailbox: saving the System page names it at the top,
    by its label, with a link to the Routing page (where the field is), not as 'routing.default'."""
    config_file(config).write_text('[routing]\ndefault = "nobody"\n')
    r = _post(admin_client, "/settings/system", {"system.hostname": "desk", "system.timezone": "",
                                                 "fax.ident": "", "system.retention_days": "0", "delivery.admin": ""})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    top = html[html.index('id="form-errors"'):html.index("</div>", html.index('id="form-errors"'))]
    assert "Default mailbox:" in top and 'href="/settings/routing"' in top and "Settings, Routing" in top
    assert "routing.default" not in html and html.count("&#39;nobody&#39;") == 1


def test_an_item_of_a_list_field_on_another_page_is_named_by_the_field(admin_client: FlaskClient) -> None:
    """'routing.accepted_domains[0]: ...' on a page without that field: the field's label and a
    link to its page, not the file's index (it read “Accepted domains”[0])."""
    from appliance.web import formerrors

    with admin_client.application.test_request_context():
        placed = formerrors.place(["routing.accepted_domains[0]: 'x_y' is not a domain name"], shown=set())
    (error,) = placed.page
    assert error.text == "Accepted domains: 'x_y' is not a domain name", error
    assert error.where == "Settings, Routing" and error.url == "/settings/routing"
