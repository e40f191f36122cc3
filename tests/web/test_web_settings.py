"""Settings pages: the file keeps its comments and order, bad input is named and writes nothing,
secrets go to secrets.toml (0600) and never into a page, backup and restore, the routing "which
rule" box, and a save applied by a real daemon over its control socket."""

from __future__ import annotations

import re
import shutil
import stat
import sys
from pathlib import Path
from typing import Iterator

import pytest
from flask.testing import FlaskClient
from webauth import PASSWORD, csrf, login

from appliance.config import Config
from appliance.web.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "delivery"))
import smtp_harness  # noqa: E402

# the real SMTP server fixtures of the delivery tests
ca = smtp_harness.ca
smtp_server = smtp_harness.smtp_server

BOX_TOML = """# Faxbridge at the front desk
# (hand-written; the web UI must keep this)

[spool]
dir = "spool"   # beside this file

[fax]
ident = "+49 30 1234"  # our CSI

[delivery]
# the office relay
backend = "maildir"
url = "Maildir"

[routing]
default = "faxes@example.com"  # everyone

[[routing.rules]]
name = "sales"          # the sales line
called = "5551000"
to = ["sales@example.com"]

[system]
retention_days = 30
"""

SECRET = "Zz9-very-secret-pw"


def _post(client: FlaskClient, url: str, data: dict, **kw) -> object:
    return client.post(url, data={"csrf_token": csrf(client), **data}, **kw)


def _system(**over: str) -> dict:
    data = {"system.hostname": "", "system.timezone": "", "system.retention_days": "30", "delivery.admin": ""}
    data.update(over)
    return data


def _delivery(**over: str) -> dict:
    data = {"delivery.backend": "maildir", "delivery.url": "Maildir", "delivery.from": "fax@localhost",
            "delivery.starttls": "opportunistic", "delivery.auth": "", "delivery.username": "",
            "delivery.password": "", "delivery.tenant": "", "delivery.client_id": "",
            "delivery.client_secret": "", "delivery.client_certificate": "", "delivery.ca_file": "",
            "delivery.verify_tls": "1", "delivery.tls_client_cert": "", "delivery.tls_client_key": "",
            "delivery.archive": ""}
    data.update(over)
    return data


def test_save_changes_only_the_edited_line_keeping_comments_and_order(web: FlaskClient, box: Path) -> None:
    r = _post(web, "/settings/system", _system(**{"system.retention_days": "90", "system.hostname": "faxdesk"}))
    assert r.status_code == 302, r.get_data(as_text=True)
    want = BOX_TOML.replace("retention_days = 30", 'retention_days = 90\nhostname = "faxdesk"')
    assert box.read_text() == want
    page = web.get("/settings/system").get_data(as_text=True)
    assert "The fax service is not running" in page  # saved all the same; used when it starts
    assert 'value="faxdesk"' in page


def test_rules_editor_keeps_the_rule_and_its_comment(web: FlaskClient, box: Path) -> None:
    page = web.get("/settings/routing").get_data(as_text=True)
    assert 'name="rules-count" value="2"' in page  # the rule, and a blank row to add one
    form = {"routing.default": "faxes@example.com", "routing.called": "", "rules-count": "2",
            "rules-0-_origin": "0", "rules-0-name": "sales", "rules-0-called": "5551000",
            "rules-0-to": "sales@example.com, boss@example.com", "rules-0-format": "tiff", "rules-0-tiff": "",
            "rules-1-_origin": "", "rules-1-format": "tiff", "rules-1-tiff": ""}
    r = _post(web, "/settings/routing", form)
    assert r.status_code == 302, r.get_data(as_text=True)
    assert box.read_text() == BOX_TOML.replace('to = ["sales@example.com"]',
                                               'to = ["sales@example.com", "boss@example.com"]')


def test_a_row_origin_in_other_digits_is_a_new_row_not_a_crash(web: FlaskClient, box: Path) -> None:
    # found by fuzzing (web_settings_form): "\u00b2".isdigit() is true, then int() raised: a 500
    form = {"routing.default": "faxes@example.com", "routing.called": "", "rules-count": "1",
            "rules-0-_origin": "\u00b2", "rules-0-name": "sales", "rules-0-called": "5551000",
            "rules-0-to": "sales@example.com", "rules-0-format": "tiff", "rules-0-tiff": ""}
    r = _post(web, "/settings/routing", form)
    assert r.status_code == 302, r.get_data(as_text=True)
    assert 'name = "sales"' in box.read_text() and 'called = "5551000"' in box.read_text()


def test_invalid_input_is_named_beside_its_field_and_nothing_is_written(web: FlaskClient, box: Path) -> None:
    r = _post(web, "/settings/delivery", _delivery(**{"delivery.backend": "smtp", "delivery.url": "mail.example.com",
                                                      "delivery.password": SECRET}))
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    # beside the field: inside the url field's block, before the next field
    block = html[html.index('name="delivery.url"'):html.index('name="delivery.from"')]
    assert "must start with smtp:// or smtps://" in block
    # once, in the page's words: no config key, and the summary at the top only points at it
    assert html.count("must start with smtp:// or smtps://") == 1 and "delivery.url:" not in html
    assert "Not saved.</strong> Please correct the field marked below." in html
    assert SECRET not in html
    assert box.read_text() == BOX_TOML
    assert not (box.parent / "secrets.toml").exists()
    r = _post(web, "/settings/system", _system(**{"system.retention_days": "many"}))
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "must be a whole number" in html[html.index('name="system.retention_days"'):]
    assert "system.retention_days" not in html.replace('name="system.retention_days"', "").replace(
        'id="f-system.retention_days"', "").replace('for="f-system.retention_days"', "")
    assert box.read_text() == BOX_TOML


def test_secrets_go_to_secrets_toml_and_never_into_a_page(web: FlaskClient, box: Path) -> None:
    r = _post(web, "/settings/delivery", _delivery(**{
        "delivery.backend": "smtp", "delivery.url": "smtp://127.0.0.1:2525", "delivery.from": "fax@example.com",
        "delivery.username": "fax@example.com", "delivery.password": SECRET}))
    assert r.status_code == 302, r.get_data(as_text=True)
    peer_pw = "peer-" + SECRET
    sip = {"sip.listen": "udp:127.0.0.1:5060", "sip.public_address": "", "sip.rtp_ports": "40000-40999",
           "sip.tls_cert": "", "sip.tls_key": "", "sip.tls_ca": "", "peers-count": "1",
           "peers-0-_origin": "", "peers-0-name": "gw1", "peers-0-match": "192.0.2.10", "peers-0-transport": "",
           "peers-0-t38": "request", "peers-0-username": "gw", "peers-0-password": peer_pw,
           "peers-0-t38_max_datagram": "0", "regs-count": "0"}
    r = _post(web, "/settings/sip", sip)
    assert r.status_code == 302, r.get_data(as_text=True)
    secrets = box.parent / "secrets.toml"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert SECRET in secrets.read_text() and peer_pw in secrets.read_text()
    assert SECRET not in box.read_text() and peer_pw not in box.read_text()
    cfg = Config.load(box)
    assert cfg.delivery.password == SECRET and cfg.sip.peers[0].password == peer_pw

    # left empty, the secret is kept; the page says "set" and never shows it
    r = _post(web, "/settings/delivery", _delivery(**{
        "delivery.backend": "smtp", "delivery.url": "smtp://127.0.0.1:2526", "delivery.from": "fax@example.com",
        "delivery.username": "fax@example.com"}))
    assert r.status_code == 302
    assert Config.load(box).delivery.password == SECRET
    pages = ["/settings/system", "/settings/sip", "/settings/modem", "/settings/routing", "/settings/delivery",
             "/settings/backup", "/settings/backup/config.toml", "/setup/system", "/setup/lines",
             "/setup/delivery", "/setup/mailbox", "/setup/done"]
    for url in pages:
        body = web.get(url, follow_redirects=True).get_data(as_text=True)
        assert SECRET not in body and peer_pw not in body, url
    assert ">set</span>" in web.get("/settings/delivery").get_data(as_text=True)
    # a failed save echoes the form, never a typed secret
    r = _post(web, "/settings/delivery", _delivery(**{"delivery.backend": "smtp", "delivery.url": "x",
                                                      "delivery.client_secret": "typed-" + SECRET}))
    assert r.status_code == 400 and SECRET not in r.get_data(as_text=True)


def test_the_plain_backup_has_no_secret_and_its_restore_keeps_them(web: FlaskClient, box: Path) -> None:
    """The readable download leaves secrets out (they leave the box only encrypted: test_web_backup.py);
    restoring it keeps the secrets the box has."""
    _post(web, "/settings/delivery", _delivery(**{
        "delivery.backend": "smtp", "delivery.url": "smtp://127.0.0.1:2525", "delivery.from": "fax@example.com",
        "delivery.username": "fax@example.com", "delivery.password": SECRET}))
    plain = web.get("/settings/backup/config.toml")
    assert plain.status_code == 200 and "attachment" in plain.headers["Content-Disposition"]
    assert SECRET not in plain.get_data(as_text=True) and "# the office relay" in plain.get_data(as_text=True)
    backup = plain.get_data().replace(b"retention_days = 30", b"retention_days = 45")
    r = _post(web, "/settings/restore", {"file": (__import__("io").BytesIO(backup), "backup.toml")},
              content_type="multipart/form-data")
    assert r.status_code == 302, r.get_data(as_text=True)
    assert SECRET not in box.read_text() and "# the office relay" in box.read_text()
    assert Config.load(box).delivery.password == SECRET and Config.load(box).system.retention_days == 45


@pytest.mark.parametrize("content, named", [
    (b"[routing\ndefault = ", "not valid TOML"),
    (b'[routing]\ndefault = "nobody"\n', "routing.default"),
    (b'[delivery]\nbackend = "carrier-pigeon"\n', "delivery.backend"),
    (b"\xff\xfe\x00binary", "not a text file"),
    (b'[web]\nstate_dir = "/tmp/elsewhere"\n', "may not move the web state"),
    # found by fuzzing (config_restore): tomlkit read "3600１" (a fullwidth digit) as a number, the
    # file was written as uploaded, and the daemon's TOML parser refused it at the next start
    ("[fax]\nmax_call_duration = 3600\uff11\n".encode(), "not valid TOML"),
    # found by fuzzing (config_restore): an entry without a name kept its password in the main file
    (b'[[sip.registrations]]\nregistrar = "sip:pbx.example.com"\nuser = "fax"\npassword = "hunter2"\n',
     "needs a name"),
])
def test_restore_of_a_bad_file_is_refused_and_writes_nothing(web: FlaskClient, box: Path, content: bytes,
                                                              named: str) -> None:
    import io

    r = _post(web, "/settings/restore", {"file": (io.BytesIO(content), "bad.toml")},
              content_type="multipart/form-data")
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "Nothing was changed" in html and named in html
    assert box.read_text() == BOX_TOML
    assert not (box.parent / "secrets.toml").exists()


def _rules_form(**probe: str) -> dict:
    form = {"action": "try", "routing.default": "faxes@example.com", "routing.called": "5552000 = billing@example.com",
            "rules-count": "2",
            "rules-0-_origin": "0", "rules-0-name": "sales", "rules-0-called": "5551000",
            "rules-0-to": "sales@example.com", "rules-0-format": "tiff", "rules-0-tiff": "",
            # a new rule, not saved: calls from the bank's fax go to accounting
            "rules-1-_origin": "", "rules-1-name": "bank", "rules-1-tsi": "^BANK", "rules-1-to": "acct@example.com",
            "rules-1-format": "pdf", "rules-1-tiff": ""}
    form.update({f"probe-{k}": v for k, v in probe.items()})
    return form


def test_which_rule_box_tries_the_edited_rules_without_saving(web: FlaskClient, box: Path) -> None:
    def decision(**probe: str) -> str:
        r = _post(web, "/settings/routing", _rules_form(**probe))
        assert r.status_code == 200, r.get_data(as_text=True)
        html = r.get_data(as_text=True)
        m = re.search(r'id="route-decision">(.*?)</div>', html, re.S)
        assert m, html
        return " ".join(re.sub(r"<[^>]+>", "", m.group(1)).split())

    assert "match sales and go to sales@example.com" in decision(called="555-1000")
    assert "match bank and go to acct@example.com" in decision(tsi="bank of x", called="5559999")
    assert "match called 5552000 and go to billing@example.com" in decision(called="5552000")
    assert "match default and go to faxes@example.com" in decision(called="5550000")
    assert box.read_text() == BOX_TOML  # nothing saved
    # a broken rule is named instead of a decision
    bad = _rules_form(called="5551000")
    bad["rules-1-tsi"] = "(unclosed"
    r = _post(web, "/settings/routing", bad)
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    block = html[html.index('name="rules-1-tsi"'):html.index('name="rules-1-um_recipient"')]
    assert "bad regex &#39;(unclosed&#39;" in block and html.count("bad regex") == 1
    assert "routing rule &#39;bank&#39;.tsi" not in html


def test_test_message_reaches_a_real_smtp_server(web: FlaskClient, box: Path, smtp_server) -> None:
    server = smtp_server()
    form = _delivery(**{"delivery.backend": "smtp", "delivery.url": f"smtp://127.0.0.1:{server.port}",
                        "delivery.from": "fax@example.com", "delivery.starttls": "none"})
    r = _post(web, "/settings/delivery/test", {**form, "test_to": "owner@example.com"})
    assert r.status_code == 200, r.get_data(as_text=True)
    html = r.get_data(as_text=True)
    assert "It works: the test message to owner@example.com was accepted" in html
    assert len(server.handler.messages) == 1 and server.handler.messages[0]["to"] == ["owner@example.com"]
    assert b"FAXBRIDGE TEST" in server.handler.messages[0]["data"] or b"Faxbridge test" in server.handler.messages[0]["data"]
    assert box.read_text() == BOX_TOML  # tried, not saved

    server.handler.rcpt_replies["nobody@example.com"] = "550 5.1.1 User unknown"
    r = _post(web, "/settings/delivery/test", {**form, "test_to": "nobody@example.com"})
    html = r.get_data(as_text=True)
    assert "The test message was not accepted" in html and "550 5.1.1" in html
    assert "the recipient address does not exist" in html  # advice.py's words


def test_test_message_to_nothing_says_so(web: FlaskClient) -> None:
    import socket

    with socket.socket() as s:  # a port with no server
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    form = _delivery(**{"delivery.backend": "smtp", "delivery.url": f"smtp://127.0.0.1:{port}",
                        "delivery.from": "fax@example.com", "delivery.starttls": "none"})
    html = _post(web, "/settings/delivery/test", {**form, "test_to": "owner@example.com"}).get_data(as_text=True)
    assert "could not be sent" in html or "not accepted" in html
    assert "nothing answers at delivery.url" in html


def test_every_settings_form_carries_a_csrf_token_and_refuses_without(web: FlaskClient, box: Path) -> None:
    for url in ("/settings/system", "/settings/sip", "/settings/modem", "/settings/routing",
                "/settings/delivery", "/settings/backup"):
        html = web.get(url).get_data(as_text=True)
        assert html.count("<form") == html.count('name="csrf_token"'), url
    r = web.post("/settings/system", data=_system(**{"system.retention_days": "1"}))
    assert r.status_code == 400
    assert box.read_text() == BOX_TOML


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[FlaskClient, object, Path]]:
    """A real Appliance answering on a real control socket, and the web app pointing at it."""
    from tests.control.harness import serve_appliance, short_dir

    from appliance.daemon import Appliance

    sock_dir = short_dir()
    box = tmp_path / "faxbridge.toml"
    box.write_text(BOX_TOML + f'control_socket = "{sock_dir}/ctl.sock"\n')
    appliance = Appliance(Config.load(box))
    try:
        with serve_appliance(sock_dir / "ctl.sock", appliance):
            client = create_app(Config.load(box)).test_client()
            login(client)
            yield client, appliance, box
    finally:
        appliance.spool.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_a_save_is_applied_by_the_running_daemon(live) -> None:
    client, appliance, box = live
    form = {"routing.default": "frontdesk@example.com", "routing.called": "", "rules-count": "1",
            "rules-0-_origin": "0", "rules-0-name": "sales", "rules-0-called": "5551000",
            "rules-0-to": "sales@example.com", "rules-0-format": "tiff", "rules-0-tiff": ""}
    r = _post(client, "/settings/routing", form, follow_redirects=True)
    assert "Saved and applied" in r.get_data(as_text=True)
    assert appliance.cfg.routing.default == "frontdesk@example.com"  # live, no restart

    sip = {"sip.listen": "udp:127.0.0.1:5090", "sip.public_address": "", "sip.rtp_ports": "40000-40999",
           "sip.tls_cert": "", "sip.tls_key": "", "sip.tls_ca": "", "peers-count": "0", "regs-count": "0"}
    r = _post(client, "/settings/sip", sip, follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "except the SIP listeners, which only a restart puts into effect" in page
    assert 'id="restart-needed"' in page  # and the banner says so until the restart


def test_rules_can_be_reordered_by_position(web: FlaskClient, box: Path) -> None:
    form = _rules_form()
    del form["action"]
    form.update({"rules-0-_position": "2", "rules-1-_position": "1"})  # the new rule goes first
    r = _post(web, "/settings/routing", form)
    assert r.status_code == 302, r.get_data(as_text=True)
    assert [rule.name for rule in Config.load(box).routing.rules] == ["bank", "sales"]
    assert "# the sales line" in box.read_text()  # the moved rule keeps its comment
    page = web.get("/settings/routing").get_data(as_text=True)
    assert page.index('value="bank"') < page.index('value="sales"')


def test_an_unchecked_box_is_saved_as_false_and_an_absent_field_is_left_alone(web: FlaskClient, box: Path) -> None:
    page = web.get("/settings/delivery").get_data(as_text=True)
    assert 'name="delivery.verify_tls-shown"' in page and 'name="delivery.verify_tls" value="1" checked' in page
    r = _post(web, "/settings/delivery", {"delivery.verify_tls-shown": "1", "delivery.archive": "archive"})
    assert r.status_code == 302, r.get_data(as_text=True)
    cfg = Config.load(box)
    assert cfg.delivery.verify_tls is False and cfg.delivery.archive == "archive"
    assert cfg.delivery.url == "Maildir"  # not in that form: untouched


def test_a_file_that_is_not_toml_is_reported_not_overwritten(web: FlaskClient, box: Path) -> None:
    box.write_text("[routing\n")
    r = web.get("/settings/routing")
    assert r.status_code == 400 and "not valid TOML" in r.get_data(as_text=True)
    r = _post(web, "/settings/routing", {"routing.default": "x@example.com"})
    assert r.status_code == 400 and box.read_text() == "[routing\n"
