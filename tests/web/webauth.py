"""Logging the Flask test client in as the administrator, and the session's CSRF token."""

from __future__ import annotations

from flask.testing import FlaskClient

from appliance.web.auth import AdminStore

PASSWORD = "correct horse battery staple"


def store_for(client: FlaskClient) -> AdminStore:
    return client.application.extensions["faxbridge_admin"]


def setup_code(client: FlaskClient) -> str:
    """The one-time code the first-start page asks for, read where the owner's copy comes from
    (the web state directory; on the box also setup-code.txt on the boot partition)."""
    from appliance.web import setupcode

    code = setupcode.read(store_for(client).dir)
    assert code, "a box without a password always has a setup code"
    return code


def csrf(client: FlaskClient) -> str:
    """The session's CSRF token (made on first use, as a page render would)."""
    with client.session_transaction() as s:
        token = s.get("csrf")
        if not token:
            import secrets
            token = s["csrf"] = secrets.token_urlsafe(32)
    return token


def login(client: FlaskClient, password: str = PASSWORD) -> None:
    """Set the admin password if none is set, then log in through the real login form."""
    admin = store_for(client)
    if not admin.has_password():
        admin.set_password(password)
    r = client.post("/login", data={"password": password, "csrf_token": csrf(client)})
    assert r.status_code == 302, r.get_data(as_text=True)


def authed(app) -> FlaskClient:  # type: ignore[no-untyped-def]
    """A logged-in test client for an app built by the test itself."""
    client = app.test_client()
    login(client)
    return client
