"""The OpenAPI document matches the app's /api routes exactly, is valid 3.1, and sits behind the login."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from appliance.config import Config
from appliance.web.app import create_app
from appliance.web.openapi import document

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def api_routes(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, method) for every Flask rule under /api/ (`<int:fax_id>` becomes `{fax_id}`)."""
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.rule == "/api" or rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            out |= {(path, m.lower()) for m in rule.methods or () if m not in IGNORED_METHODS}
    return out


def documented(doc: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in doc["paths"].items() for method in ops}


def test_every_api_route_is_documented_and_nothing_else(config: Config) -> None:
    routes = api_routes(create_app(config))
    doc = documented(document())
    assert ("/api/faxes", "get") in routes  # the walk sees the real routes
    assert not routes - doc, f"API routes missing from appliance/web/openapi.py: {sorted(routes - doc)}"
    assert not doc - routes, f"documented in openapi.py but not served: {sorted(doc - routes)}"


def test_path_parameters_are_declared(config: Config) -> None:
    """Every {name} in a path has its parameter, so generated clients can call it."""
    doc = document()
    for path, ops in doc["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        for method, op in ops.items():
            declared = set()
            for p in op.get("parameters", []):
                if "$ref" in p:
                    p = doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
                if p["in"] == "path":
                    declared.add(p["name"])
            assert declared == names, f"{method.upper()} {path}: path parameters {declared} != {names}"


def test_state_changing_operations_require_the_csrf_header() -> None:
    doc = document()
    assert doc["components"]["securitySchemes"]["csrf"] == {
        **doc["components"]["securitySchemes"]["csrf"], "type": "apiKey", "in": "header", "name": "X-CSRF-Token"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            needs_csrf = any("csrf" in s for s in op["security"])
            assert needs_csrf == (method not in ("get", "head")), f"{method.upper()} {path}"
            assert "401" in op["responses"], f"{method.upper()} {path} does not say it can be refused"


def test_document_is_valid_openapi_3_1(admin_client: FlaskClient) -> None:
    r = admin_client.get("/api/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    doc = r.get_json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # the OpenAPI 3.1 schema, $refs resolved


def test_openapi_and_docs_need_a_session(anon_client: FlaskClient) -> None:
    from webauth import login  # noqa: PLC0415  (tests/web is on sys.path via its conftest)

    login(anon_client)  # a password exists: now an anonymous browser must be refused
    anon = anon_client.application.test_client()
    r = anon.get("/api/openapi.json")
    assert r.status_code == 401 and "error" in r.get_json()
    assert anon.get("/api/docs").status_code in (302, 401)


def test_docs_page_lists_every_operation(admin_client: FlaskClient) -> None:
    r = admin_client.get("/api/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    for path, method in documented(document()):
        assert f'<span class="method method-{method}">{method.upper()}</span> <code class="wrap">{path}</code>' in html
    assert "<script" not in html and "https://" not in html.split("</head>")[0]  # no CDN
    assert "X-CSRF-Token" in html


def validate_against(doc: dict, schema: dict, instance: object, what: str) -> None:
    """Check a real answer against a schema of the document (its $refs resolved within it)."""
    from jsonschema import Draft202012Validator

    root = {**doc, **schema}  # the document's other keys are no JSON Schema keywords: ignored
    errors = sorted(Draft202012Validator(root).iter_errors(instance), key=str)
    assert not errors, f"{what}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


def check_answer(doc: dict, path: str, method: str, response) -> None:  # type: ignore[no-untyped-def]
    """The documented schema for this operation's status code describes the answer it gave."""
    op = doc["paths"][path][method]
    code = str(response.status_code)
    assert code in op["responses"], f"{method.upper()} {path} answered {code}, not documented"
    spec = op["responses"][code]
    if "$ref" in spec:
        spec = doc["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    schema = spec.get("content", {}).get("application/json", {}).get("schema")
    assert schema is not None, f"{method.upper()} {path} {code}: no JSON schema documented"
    validate_against(doc, schema, response.get_json(), f"{method.upper()} {path} {code}")


def test_real_answers_match_their_schemas(admin_client: FlaskClient, spool, full_fax) -> None:
    """The schemas describe what the API really sends (a field added or retyped fails here)."""
    from webauth import csrf  # noqa: PLC0415  (tests/web is on sys.path via its conftest)
    from webfax import STANDARD, T0, add_fax  # noqa: PLC0415

    doc = document()
    c, one = admin_client, "/api/faxes/{fax_id}"
    listing = c.get("/api/faxes")
    assert listing.get_json()["faxes"][0]["jobs"]
    check_answer(doc, "/api/faxes", "get", listing)
    check_answer(doc, "/api/faxes", "get", c.get("/api/faxes?limit=x"))
    check_answer(doc, one, "get", c.get(f"/api/faxes/{full_fax.id}"))
    check_answer(doc, one, "get", c.get("/api/faxes/999999"))
    token = {"X-CSRF-Token": csrf(c)}
    check_answer(doc, "/api/faxes/{fax_id}/resend", "post",
                 c.post(f"/api/faxes/{full_fax.id}/resend", json={"to": "again@example.com"}, headers=token))
    check_answer(doc, "/api/faxes/{fax_id}/resend", "post", c.post(f"/api/faxes/{full_fax.id}/resend"))
    check_answer(doc, "/api/status", "get", c.get("/api/status"))
    check_answer(doc, "/api/route", "get", c.get("/api/route?called=5551000"))
    check_answer(doc, one, "delete", c.delete("/api/faxes/999999", headers=token))
    done = add_fax(spool, T0 + 600, dpis=[STANDARD])  # no deliveries: may go
    check_answer(doc, one, "delete", c.delete(f"/api/faxes/{done.id}", headers=token))
    assert c.get(f"/api/faxes/{done.id}").status_code == 404

    fax = listing.get_json()["faxes"][0]
    try:
        validate_against(doc, {"$ref": "#/components/schemas/Fax"}, {**fax, "surprise": 1}, "Fax")
    except AssertionError:
        pass
    else:
        raise AssertionError("an undocumented field must fail the check")
