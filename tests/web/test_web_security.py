"""Headers that every response carries, whatever route or error produced it."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from appliance.spool.store import FaxRecord
from appliance.web.app import SECURITY_HEADERS

EXPECTED = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@pytest.mark.parametrize("url,status", [
    ("/faxes", 200), ("/", 200), ("/?q=x", 302), ("/faxes?before=x", 400), ("/faxes/1", 200), ("/faxes/99", 404),
    ("/faxes/1/pages/1.png?size=thumb", 200), ("/faxes/1/pages/9.png", 404), ("/faxes/1.tif", 200),
    ("/api/faxes", 200), ("/api/faxes?limit=x", 400), ("/api/faxes/99", 404),
    ("/healthz", 200), ("/static/style.css", 200), ("/no/such/page", 404),
])
def test_security_headers_on_every_response(client: FlaskClient, full_fax: FaxRecord, url: str,
                                            status: int) -> None:
    r = client.get(url)
    assert r.status_code == status
    for name, value in EXPECTED.items():
        assert r.headers.get(name) == value, (url, name)


def test_expected_headers_are_the_ones_sent() -> None:
    assert SECURITY_HEADERS == EXPECTED


def test_html_pages_are_not_stored_by_caches(client: FlaskClient, full_fax: FaxRecord) -> None:
    for url in ("/faxes", f"/faxes/{full_fax.id}", "/api/faxes"):
        assert client.get(url).headers["Cache-Control"] == "no-store", url


def test_internal_errors_are_500_with_headers_and_no_traceback(client: FlaskClient, full_fax: FaxRecord,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.spool.store import Spool

    def broken(self: Spool, fax_id: int) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(Spool, "get_fax", broken)
    for url in (f"/faxes/{full_fax.id}", f"/api/faxes/{full_fax.id}"):
        r = client.get(url)
        assert r.status_code == 500
        assert "database on fire" not in r.get_data(as_text=True)
        assert r.headers["Content-Security-Policy"] == EXPECTED["Content-Security-Policy"]
    assert set(client.get(f"/api/faxes/{full_fax.id}").get_json()) == {"error"}


def test_healthz(client: FlaskClient) -> None:
    r = client.get("/healthz")
    assert (r.status_code, r.data, r.mimetype) == (200, b"ok", "text/plain")


def test_no_external_resources_in_pages(client: FlaskClient, full_fax: FaxRecord) -> None:
    for url in ("/faxes", f"/faxes/{full_fax.id}"):
        body = client.get(url).get_data(as_text=True)
        assert "http://" not in body and "https://" not in body and "//" not in body.replace("://", "")
        assert "<script" not in body and "style=" not in body  # CSP forbids inline script and style
