"""The administrator login, first-start password, sessions, CSRF and login rate limiting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from webauth import PASSWORD, csrf, login, setup_code, store_for

from appliance.config import Config
from appliance.web.app import create_app
from appliance.web.auth import FREE_FAILURES, PUBLIC_ENDPOINTS

ARGS = {"int": 1, "path": "x", "string": "x", "default": "x"}


def every_route(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every rule with every placeholder filled."""
    out = []
    for rule in app.url_map.iter_rules():
        url = rule.rule
        for name, conv in rule._converters.items():
            kind = type(conv).__name__.lower().replace("converter", "")
            url = re.sub(rf"<(?:[^:<>]+:)?{name}>", str(ARGS.get(kind, "x")), url)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, url))
    return out


def test_an_empty_box_leads_every_page_to_setup_and_refuses_the_api(anon_client: FlaskClient) -> None:
    app = anon_client.application
    for endpoint, method, url in every_route(app):
        if endpoint in PUBLIC_ENDPOINTS or endpoint == "auth.setup" or method != "GET":
            continue
        r = anon_client.get(url)
        if url.startswith(("/api", "/metrics", "/events")):
            assert r.status_code == 401, url
        else:
            assert r.status_code == 302 and r.headers["Location"].endswith("/setup"), url


def test_every_route_refuses_a_browser_that_has_not_logged_in(anon_client: FlaskClient) -> None:
    store_for(anon_client).set_password(PASSWORD)
    app = anon_client.application
    checked = 0
    for endpoint, method, url in every_route(app):
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        if method == "GET":
            r = anon_client.get(url)
        else:  # with a valid token, so it is the login requirement that refuses
            r = anon_client.open(url, method=method, data={"csrf_token": csrf(anon_client)})
        body = r.get_data(as_text=True)
        assert r.status_code in (302, 401), (method, url, r.status_code)
        if r.status_code == 302:
            assert "/login" in r.headers["Location"] or endpoint == "auth.setup", (method, url)
        assert "+49" not in body  # nothing of a fax leaks into a refusal
        checked += 1
    assert checked >= 8


def test_the_password_is_stored_as_argon2id_in_a_private_file(anon_client: FlaskClient, config: Config) -> None:
    r = anon_client.post("/setup", data={"password": PASSWORD, "confirm": PASSWORD,
                                         "setup_code": setup_code(anon_client), "csrf_token": csrf(anon_client)})
    assert r.status_code == 302
    path = config.path(config.web.state_dir) / "admin.json"
    record = json.loads(path.read_text())
    assert record["hash"].startswith("$argon2id$") and PASSWORD not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    assert (path.parent / "session.key").stat().st_mode & 0o777 == 0o600
    # logged in by setting it; the setup page is closed from now on
    assert anon_client.get("/faxes").status_code == 200
    assert anon_client.get("/setup").headers["Location"].endswith("/login")


@pytest.mark.parametrize("password, confirm, words", [
    ("short", "short", "at least 10"), ("aaaaaaaaaaaa", "aaaaaaaaaaaa", "more different"),
    (PASSWORD, PASSWORD + "x", "differ")])
def test_a_weak_or_mistyped_password_is_refused(anon_client: FlaskClient, password: str, confirm: str,
                                                words: str) -> None:
    r = anon_client.post("/setup", data={"password": password, "confirm": confirm,
                                         "setup_code": setup_code(anon_client), "csrf_token": csrf(anon_client)})
    assert r.status_code == 400 and words in r.get_data(as_text=True)
    assert not store_for(anon_client).has_password()


def test_login_logout_and_the_cookie(anon_client: FlaskClient) -> None:
    store_for(anon_client).set_password(PASSWORD)
    r = anon_client.post("/login", data={"password": PASSWORD, "next": "/faxes", "csrf_token": csrf(anon_client)})
    assert r.status_code == 302 and r.headers["Location"] == "/faxes"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie  # https is the default
    assert anon_client.get("/faxes").status_code == 200
    assert anon_client.post("/logout", data={"csrf_token": csrf(anon_client)}).status_code == 302
    assert anon_client.get("/faxes").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_login_never_redirects_off_site(anon_client: FlaskClient, target: str) -> None:
    store_for(anon_client).set_password(PASSWORD)
    r = anon_client.post("/login", data={"password": PASSWORD, "next": target, "csrf_token": csrf(anon_client)})
    assert r.status_code == 302 and r.headers["Location"] == "/"


def test_failed_logins_are_rate_limited_per_address(anon_client: FlaskClient) -> None:
    store_for(anon_client).set_password(PASSWORD)
    token = csrf(anon_client)
    for _ in range(FREE_FAILURES):
        r = anon_client.post("/login", data={"password": "wrong password!", "csrf_token": token})
        assert r.status_code == 401 and "Wrong password" in r.get_data(as_text=True)
    r = anon_client.post("/login", data={"password": PASSWORD, "csrf_token": token})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0  # even the right one waits
    assert "Too many failed attempts" in r.get_data(as_text=True)
    other = anon_client.application.test_client()
    r = other.post("/login", data={"password": PASSWORD, "csrf_token": csrf(other)},
                   environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert r.status_code == 302  # another address is not locked out


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(client: FlaskClient) -> None:
    assert client.post("/logout").status_code == 400
    r = client.post("/logout", data={"csrf_token": "forged" * 8})
    assert r.status_code == 400 and "security token" in r.get_data(as_text=True)
    assert client.get("/faxes").status_code == 200  # still logged in
    r = client.post("/logout", data={"csrf_token": csrf(client)}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 400 and "another site" in r.get_data(as_text=True)
    r = client.post("/logout", data={"csrf_token": csrf(client)}, headers={"Origin": "null"})  # sandboxed frame
    assert r.status_code == 400
    assert client.post("/logout", headers={"X-CSRF-Token": csrf(client)}).status_code == 302


def test_every_form_carries_the_token(client: FlaskClient) -> None:
    app = client.application
    for endpoint, method, url in every_route(app):
        if method != "GET" or url.startswith(("/api", "/metrics", "/events")) or endpoint == "static":
            continue
        r = client.get(url)
        if r.status_code != 200 or not r.mimetype == "text/html":
            continue
        html = r.get_data(as_text=True)
        forms = re.findall(r"<form[^>]*method=\"post\"[^>]*>(.*?)</form>", html, re.S | re.I)
        for form in forms:
            assert 'name="csrf_token"' in form, (url, form[:200])


def test_changing_the_password_ends_other_sessions(config: Config) -> None:
    app = create_app(config)
    first, second = app.test_client(), app.test_client()
    login(first)
    login(second)
    new = "another long passphrase"
    r = first.post("/account/password", data={"current": PASSWORD, "password": new, "confirm": new,
                                             "csrf_token": csrf(first)})
    assert r.status_code == 302
    assert first.get("/faxes").status_code == 200
    assert second.get("/faxes").status_code == 302
    assert store_for(first).verify(new) and not store_for(first).verify(PASSWORD)


def test_http_mode_cookie_is_not_secure(tmp_path: Path) -> None:
    cfg = Config.from_dict({"web": {"https": False}, "spool": {"dir": "spool"}}, base_dir=tmp_path)
    c = create_app(cfg).test_client()
    store_for(c).set_password(PASSWORD)
    r = c.post("/login", data={"password": PASSWORD, "csrf_token": csrf(c)})
    assert "Secure" not in r.headers["Set-Cookie"] and "HttpOnly" in r.headers["Set-Cookie"]


def test_uploading_an_own_certificate_checks_the_pair_and_installs_it(client: FlaskClient, config: Config) -> None:
    import io

    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("fax.example.test")
    other = ca.issue_cert("other.example.test")
    page = client.get("/account/certificate")
    assert page.status_code == 200 and "No certificate yet" in page.get_data(as_text=True)

    def upload(cert: bytes, key: bytes):  # type: ignore[no-untyped-def]
        return client.post("/account/certificate", content_type="multipart/form-data",
                           data={"csrf_token": csrf(client), "cert": (io.BytesIO(cert), "c.pem"),
                                 "key": (io.BytesIO(key), "k.pem")})

    r = upload(leaf.cert_chain_pems[0].bytes(), other.private_key_pem.bytes())
    assert r.status_code == 400 and "does not belong" in r.get_data(as_text=True)
    r = upload(b"garbage", leaf.private_key_pem.bytes())
    assert r.status_code == 400 and "not a PEM certificate" in r.get_data(as_text=True)
    r = upload(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes())
    assert r.status_code == 302
    key = config.path(config.web.state_dir) / "tls" / "owner-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    page = client.get("/account/certificate").get_data(as_text=True)
    assert "uploaded" in page and "fax.example.test" in page


def test_reset_password_on_the_box_reopens_setup(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg_file = tmp_path / "faxbridge.toml"
    cfg_file.write_text('[spool]\ndir = "spool"\n')
    cfg = Config.load(cfg_file)
    c = create_app(cfg).test_client()
    login(c)
    run = [sys.executable, "-m", "appliance", "reset-password", "--config", str(cfg_file)]
    out = subprocess.run(run, input="n\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and store_for(c).has_password()
    out = subprocess.run(run + ["--yes"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "forgotten" in out.stdout
    fresh = create_app(Config.load(cfg_file)).test_client()  # the restarted web process
    assert fresh.get("/faxes").headers["Location"].endswith("/setup")
