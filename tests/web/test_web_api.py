"""The JSON API: same data and filters as the pages, strict parameters, raw (unescaped) values."""

from __future__ import annotations

import dataclasses

from flask.testing import FlaskClient
from webfax import STANDARD, T0, XSS, add_fax

from appliance.config import Config
from appliance.spool.store import FaxRecord, Spool

FAX_FIELDS = {f.name for f in dataclasses.fields(FaxRecord)}


def test_fax_list_has_every_field_and_jobs(client: FlaskClient, full_fax: FaxRecord) -> None:
    r = client.get("/api/faxes")
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert body["total"] == 1
    (fax,) = body["faxes"]
    assert set(fax) == FAX_FIELDS | {"jobs"}
    assert {k: fax[k] for k in FAX_FIELDS} == dataclasses.asdict(full_fax)
    assert fax["jobs"] == [
        {"recipient": "sales@example.com", "state": "failed_retrying", "attempts": 1,
         "last_error": "451 4.3.0 Mailbox temporarily unavailable"},
        {"recipient": "ops@example.com", "state": "delivered", "attempts": 1, "last_error": ""},
    ]


def test_one_fax(client: FlaskClient, full_fax: FaxRecord) -> None:
    one = client.get(f"/api/faxes/{full_fax.id}").get_json()
    listed = client.get("/api/faxes").get_json()["faxes"][0]
    assert one == listed
    r = client.get("/api/faxes/999")
    assert r.status_code == 404 and r.get_json() == {"error": "no fax 999"}
    assert client.get("/api/faxes/abc").status_code == 404
    assert "error" in client.get("/api/faxes/abc").get_json()


def test_paging_search_and_filter(client: FlaskClient, spool: Spool) -> None:
    faxes = [add_fax(spool, T0 + 60 * i, caller_number=f"+4930{i:03d}" if i % 2 else f"+4989{i:03d}")
             for i in range(12)]
    ids = lambda url: [f["id"] for f in client.get(url).get_json()["faxes"]]  # noqa: E731
    newest_first = [f.id for f in reversed(faxes)]
    assert ids("/api/faxes") == newest_first
    assert ids("/api/faxes?limit=5") == newest_first[:5]
    assert ids("/api/faxes?limit=5&offset=10") == newest_first[10:]
    assert ids("/api/faxes?offset=12") == []
    berlin = client.get("/api/faxes?q=4930").get_json()
    assert berlin["total"] == 6 and [f["caller_number"][:5] for f in berlin["faxes"]] == ["+4930"] * 6
    assert client.get("/api/faxes?limit=0").get_json() == {"total": 12, "total_capped": False, "faxes": []}
    assert client.get("/api/faxes?state=routed").get_json() == {"total": 0, "total_capped": False, "faxes": []}
    assert client.get("/api/faxes?state=no_fax&limit=500").get_json()["total"] == 12


def test_bad_parameters_are_400_naming_the_parameter(client: FlaskClient, full_fax: FaxRecord) -> None:
    for query, name in (("limit=501", "limit"), ("limit=-1", "limit"), ("limit=ten", "limit"),
                        ("limit=1.5", "limit"), ("offset=-1", "offset"), ("offset=x", "offset"),
                        ("state=lost", "state"), ("q=" + "a" * 201, "q"), ("q=%00", "q")):
        r = client.get(f"/api/faxes?{query}")
        assert r.status_code == 400, query
        assert r.mimetype == "application/json"
        body = r.get_json()
        assert body["parameter"] == name and name in body["error"], query


def test_values_are_raw_in_json(client: FlaskClient, spool: Spool) -> None:
    fax = add_fax(spool, T0, dpis=[STANDARD], remote_ident=XSS, caller_name=XSS, recipients=["x@example.com"])
    r = client.get(f"/api/faxes/{fax.id}")
    assert r.get_json()["remote_ident"] == XSS and r.get_json()["caller_name"] == XSS
    assert XSS.encode() in r.data
    assert r.headers["X-Content-Type-Options"] == "nosniff"  # so no browser renders it as HTML


def test_empty_spool(client: FlaskClient) -> None:
    assert client.get("/api/faxes").get_json() == {"total": 0, "total_capped": False, "faxes": []}
    assert client.get("/api/faxes/1").status_code == 404


# -- actions and status through the API (session + X-CSRF-Token) -------------------------------

def test_api_filters_like_the_list_page(client: FlaskClient, spool: Spool) -> None:
    from webfax import add_fax as add

    add(spool, T0, dpis=[STANDARD], caller_number="+4930111", remote_ident="ALPHA", recipients=["a@example.com"])
    add(spool, T0 + 86400 * 3, dpis=[STANDARD], caller_number="+4930222", remote_ident="BETA",
        recipients=["b@example.com"])
    got = client.get("/api/faxes?tsi=beta").get_json()
    assert [f["remote_ident"] for f in got["faxes"]] == ["BETA"]
    got = client.get("/api/faxes?recipient=a@example.com").get_json()
    assert [f["caller_number"] for f in got["faxes"]] == ["+4930111"]
    assert client.get("/api/faxes?from=not-a-date").status_code == 400


def test_api_resend_and_delete_need_the_csrf_header(client: FlaskClient, spool: Spool, config: Config) -> None:
    from webauth import csrf
    from webfax import add_fax as add

    config.routing.default = "faxes@example.com"
    fax = add(spool, T0, dpis=[STANDARD], recipients=["sales@example.com"])
    (job,) = spool.jobs_for(fax.id)
    spool.claim_due_jobs(T0 + 40)
    spool.job_delivered(job.id, T0 + 41, "250 ok")
    assert client.post(f"/api/faxes/{fax.id}/resend", json={}).status_code == 400  # no token
    headers = {"X-CSRF-Token": csrf(client)}
    r = client.post(f"/api/faxes/{fax.id}/resend", json={"to": "boss@example.com"}, headers=headers)
    assert r.status_code == 202
    (queued,) = r.get_json()["queued"]
    assert queued["recipient"] == "boss@example.com" and queued["message_id"] != job.message_id
    r = client.post(f"/api/faxes/{fax.id}/resend", json={"to": "boss@example.com\r\nBcc: x@y"}, headers=headers)
    assert r.status_code == 400
    r = client.post(f"/api/faxes/{fax.id}/resend", headers=headers)  # its own recipients again
    assert r.status_code == 202 and [q["recipient"] for q in r.get_json()["queued"]] == ["sales@example.com"]
    assert client.delete(f"/api/faxes/{fax.id}").status_code == 400  # no token
    # the two new jobs are queued, not delivering: the fax may go
    r = client.delete(f"/api/faxes/{fax.id}", headers=headers)
    assert r.status_code == 200 and spool.get_fax(fax.id) is None
    assert client.delete(f"/api/faxes/{fax.id}", headers=headers).status_code == 404


def test_api_resend_outside_accepted_domains_is_refused(client: FlaskClient, spool: Spool, config: Config) -> None:
    from webauth import csrf
    from webfax import add_fax as add

    config.routing.default = "faxes@example.com"
    config.routing.accepted_domains = ["example.com", "example.org"]
    fax = add(spool, T0, dpis=[STANDARD], recipients=["sales@example.com"])
    (job,) = spool.jobs_for(fax.id)
    spool.claim_due_jobs(T0 + 40)
    spool.job_delivered(job.id, T0 + 41, "250 ok")
    headers = {"X-CSRF-Token": csrf(client)}
    r = client.post(f"/api/faxes/{fax.id}/resend", json={"to": "eve@evil.example"}, headers=headers)
    assert r.status_code == 400
    why = "'eve@evil.example' is outside routing.accepted_domains (example.com, example.org)"
    assert r.get_json() == {"error": f"not sent: {why}",
                            "refused": [{"recipient": "eve@evil.example", "reason": why}]}
    assert spool.jobs_for(fax.id) == [spool.get_job(job.id)]  # nothing queued
    # its own recipients, after the owner dropped their domain: refused, said so, 409
    config.routing.accepted_domains = ["example.org"]
    r = client.post(f"/api/faxes/{fax.id}/resend", headers=headers)
    assert r.status_code == 409 and r.get_json()["queued"] == []
    assert r.get_json()["error"] == "nothing queued: 'sales@example.com' is outside routing.accepted_domains (example.org)"
    assert r.get_json()["refused"] == [{"recipient": "sales@example.com", "reason":
                                        "'sales@example.com' is outside routing.accepted_domains (example.org)"}]
    assert len(spool.jobs_for(fax.id)) == 1 and spool.jobs_for(fax.id)[0].state == "delivered"


def test_api_status_without_a_daemon_and_route(client: FlaskClient, config: Config) -> None:
    s = client.get("/api/status").get_json()
    assert s["daemon_up"] is False and "queue" in s and isinstance(s["alerts"], list)
    r = client.get("/api/route?called=5551000").get_json()
    assert r["rule"] == "default" and r["recipients"] == [config.routing.default]


def test_api_actions_refuse_without_login(anon_client: FlaskClient, spool: Spool) -> None:
    from webauth import PASSWORD, csrf, store_for

    store_for(anon_client).set_password(PASSWORD)
    headers = {"X-CSRF-Token": csrf(anon_client)}
    assert anon_client.post("/api/faxes/1/resend", json={}, headers=headers).status_code == 401
    assert anon_client.delete("/api/faxes/1", headers=headers).status_code == 401
    assert anon_client.get("/api/status").status_code == 401


def test_api_route_shows_a_refused_um_recipient(client: FlaskClient, config: Config) -> None:
    config.routing.default = "faxes@example.com"
    r = client.get("/api/route?called=5551000&um=bob@evil.example").get_json()
    assert r["recipients"] == ["faxes@example.com"] and r["um_refused"] == "bob@evil.example"
    assert r["refused"] == ["'bob@evil.example' is outside routing.accepted_domains (not set, so only the "
                            "domain of routing.default: example.com)"]
    assert "refused" not in client.get("/api/route?um=bob@example.com").get_json()
