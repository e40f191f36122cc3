"""A session ends on the server: after logout or a password change, a copy of the old cookie is
refused, in the test client and over real HTTP; the list of live sessions stays bounded."""

from __future__ import annotations

import json
from pathlib import Path

from flask.testing import FlaskClient
from served import ServedUI
from webauth import PASSWORD, csrf, login, store_for

from appliance.config import Config
from appliance.web.app import create_app
from appliance.web.auth import MAX_SESSIONS

COOKIE = "faxbridge_session"


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def _replay(app_client: FlaskClient, value: str, url: str = "/faxes") -> int:
    """The copied cookie from a browser that never logged in itself."""
    thief = app_client.application.test_client()
    thief.set_cookie(COOKIE, value)
    return thief.get(url).status_code


def test_a_copied_cookie_dies_with_logout(client: FlaskClient) -> None:
    copied = _cookie(client)
    assert _replay(client, copied) == 200  # the copy works while the session lasts
    assert client.post("/logout", data={"csrf_token": csrf(client)}).status_code == 302
    assert _replay(client, copied) == 302
    assert _replay(client, copied, "/api/faxes") == 401


def test_a_copied_cookie_dies_with_a_password_change(config: Config) -> None:
    app = create_app(config)
    me, other = app.test_client(), app.test_client()
    login(me)
    login(other)
    mine, theirs = _cookie(me), _cookie(other)
    new = "another long passphrase"
    r = me.post("/account/password", data={"current": PASSWORD, "password": new, "confirm": new,
                                          "csrf_token": csrf(me)})
    assert r.status_code == 302
    assert me.get("/faxes").status_code == 200  # this browser goes on, with a new session
    assert _cookie(me) != mine
    assert _replay(me, mine) == 302 and _replay(me, theirs) == 302


def test_a_logout_ends_only_its_own_session(config: Config) -> None:
    app = create_app(config)
    a, b = app.test_client(), app.test_client()
    login(a)
    login(b)
    a.post("/logout", data={"csrf_token": csrf(a)})
    assert a.get("/faxes").status_code == 302 and b.get("/faxes").status_code == 200


def test_the_list_of_live_sessions_is_bounded(client: FlaskClient, config: Config) -> None:
    store = store_for(client)
    first = _cookie(client)
    for _ in range(MAX_SESSIONS + 10):
        store.open_session()
    record = json.loads((config.path(config.web.state_dir) / "admin.json").read_text())
    assert len(record["sessions"]) == MAX_SESSIONS
    assert _replay(client, first) == 302  # the least recently used went first


def test_logout_over_real_http_revokes_the_cookie(tmp_path: Path) -> None:
    with ServedUI(tmp_path).start() as ui:
        ui.login()
        copied = ui.cookie_header()
        assert ui.request("GET", "/faxes").status == 200
        token = ui.csrf("/faxes")
        assert ui.post_form("/logout", {"csrf_token": token}).status == 302
        r = ui.request("GET", "/faxes", headers={"Cookie": copied}, cookies=False)
        assert r.status == 302 and r.headers["Location"].startswith("/login")
