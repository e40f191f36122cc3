"""Settings pages: system, SIP, modems, routing, delivery (and, from their own modules, backup and
restore, the SIP certificate upload, the test message and the modem probe).

Every page edits the configuration file the daemon loaded (``tomledit.ConfigDoc``): the form's
values go into the tomlkit document (``forms.py``), the whole result is validated, and only a
valid result is written; then the daemon is asked to ``reload`` over the control socket
(``configpage.py``).  Errors are shown once, beside the field they name, in the page's words
(formerrors.py).  What each page edits is in ``settings_fields.py``; the wizard (wizard.py) reuses
the same fields and helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from appliance.config import ConfigError
from appliance.web import backup_page, certificates, modems, testmessage
from appliance.web.configpage import load_doc, page, save_and_reload
from appliance.web.forms import (
    EntrySpec,
    Field,
    apply_entries,
    apply_fields,
    entry_rows,
    field_values,
    form_values,
    secrets_state,
    submitted_rows,
)
from appliance.web.settings_fields import (
    DELIVERY_FIELDS,
    MODEM_FIELDS,
    PEERS,
    REGISTRATIONS,
    ROUTING_FIELDS,
    RULES,
    SIP_FIELDS,
    SYSTEM_FIELDS,
)
from appliance.web.tomledit import ConfigDoc, TomlEditError

bp = Blueprint("settings", __name__, url_prefix="/settings")

#: the views of /settings/... that live beside what they do (endpoint: the view's name, as before)
ELSEWHERE = (
    ("/delivery/test", testmessage.delivery_test, "POST"),
    ("/modem/probe", modems.modem_probe, "POST"),
    ("/sip/certificate", certificates.sip_certificate, "POST"),
    ("/backup", backup_page.backup, "GET"),
    ("/backup/config.toml", backup_page.backup_download, "GET"),
    ("/backup/encrypted", backup_page.backup_encrypted, "POST"),
    ("/restore", backup_page.restore, "POST"),
)
for _rule, _view, _method in ELSEWHERE:
    bp.add_url_rule(_rule, view_func=_view, methods=[_method])


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("settings.system"))


def _simple(
    section: str,
    fields: list[Field],
    template: str = "settings_form.html",
    entries: tuple[EntrySpec, ...] = (),
    extra: Callable[[ConfigDoc], dict[str, Any]] | None = None,
    title: str = "",
    intro: str = "",
) -> ResponseReturnValue:
    """GET shows the file's values; POST applies, validates, writes, reloads (or shows errors)."""
    try:
        doc = load_doc()
    except TomlEditError as e:
        return page("settings_broken.html", section, problem=str(e), title=title, errors=[str(e)])
    errors: list[str] = []
    values = field_values(doc, fields)
    rows = {spec.prefix: entry_rows(doc, spec) for spec in entries}
    if request.method == "POST":
        apply_fields(doc, fields, request.form, errors)
        for spec in entries:
            apply_entries(doc, spec, request.form, errors)
        if not errors:
            errors, message = save_and_reload(doc)
            if not errors:
                flash(message)
                return redirect(request.path)
        values = form_values(fields, request.form)
        rows = {spec.prefix: submitted_rows(spec, request.form, doc) for spec in entries}
    return page(
        template,
        section,
        title=title,
        intro=intro,
        fields=fields,
        values=values,
        secrets=secrets_state(doc, fields),
        entries=entries,
        rows=rows,
        errors=errors,
        **(extra(doc) if extra else {}),
    )


@bp.route("/system", methods=["GET", "POST"])
def system() -> Any:
    return _simple(
        "system",
        SYSTEM_FIELDS,
        title="System",
        intro="The host name and time zone are stored here; applying them to the operating "
        "system is done by the appliance image when it starts, not by this page.",
    )


@bp.route("/sip", methods=["GET", "POST"])
def sip() -> Any:
    return _simple(
        "sip",
        SIP_FIELDS,
        "settings_sip.html",
        (PEERS, REGISTRATIONS),
        title="SIP",
        intro="How gateways and PBXs reach the appliance. Peers, limits and registrations apply "
        "at once (to the next call); listeners and TLS files after a restart.",
    )


@bp.route("/modem", methods=["GET", "POST"])
def modem() -> Any:
    return _simple(
        "modem",
        MODEM_FIELDS,
        "settings_modem.html",
        title="Modems",
        extra=lambda doc: {"detected": modems.detected_modems()},
        intro="Serial fax modems. Idle lines restart with new settings at once; a line in a "
        "call keeps its settings until the call ends.",
    )


@bp.route("/delivery", methods=["GET", "POST"])
def delivery() -> Any:
    return _simple(
        "delivery",
        DELIVERY_FIELDS,
        "settings_delivery.html",
        title="Delivery",
        extra=lambda doc: {"test_to": testmessage.default_recipient(doc), "starttls": _starttls_in_effect(doc)},
        intro="Where received faxes go. Passwords and client secrets are kept in secrets.toml "
        "and never shown again; leave a secret field empty to keep it.",
    )


def _starttls_in_effect(doc: ConfigDoc) -> str:
    """What delivery.starttls means for the file as it is (its default depends on the server)."""
    try:
        return doc.validate().delivery.starttls_in_effect()
    except ConfigError:
        return ""


@bp.route("/routing", methods=["GET", "POST"])
def routing() -> Any:
    if request.method == "POST" and request.form.get("action") == "try":
        return _try_route()
    return _simple(
        "routing",
        ROUTING_FIELDS,
        "settings_routing.html",
        (RULES,),
        title="Routing",
        extra=lambda doc: {"probe": {}, "decision": None},
        intro="Which mailbox gets a fax: the first matching rule, else the called number, else the default mailbox.",
    )


PROBE_KEYS = ("called", "caller", "tsi", "line", "um")


def _try_route() -> tuple[str, int]:
    """ "Which rule would this call match?" on the rules as edited, nothing saved."""
    doc = load_doc()
    errors: list[str] = []
    apply_fields(doc, ROUTING_FIELDS, request.form, errors)
    apply_entries(doc, RULES, request.form, errors)
    probe = {k: request.form.get(f"probe-{k}", "").strip()[:200] for k in PROBE_KEYS}
    decision = None
    if not errors:
        try:
            cfg = doc.validate()
        except ConfigError as e:
            errors = e.errors
        else:
            from appliance.routing.router import route

            decision = route(
                cfg.routing,
                called_number=probe["called"],
                caller_number=probe["caller"],
                remote_ident=probe["tsi"],
                line=probe["line"],
                um_recipient=probe["um"],
            )
    html, _ = page(
        "settings_routing.html",
        "routing",
        title="Routing",
        intro="",
        fields=ROUTING_FIELDS,
        values=form_values(ROUTING_FIELDS, request.form),
        secrets={},
        entries=(RULES,),
        rows={RULES.prefix: submitted_rows(RULES, request.form, doc)},
        errors=errors,
        probe=probe,
        decision=decision,
        tried=True,
    )
    return html, 400 if errors else 200


@bp.app_template_global("field_errors_for")
def field_errors_for(field_errors: dict[str, list[str]], key: str) -> list[str]:
    """The messages a field shows beside itself (already in the page's words, without the key)."""
    return list((field_errors or {}).get(key, []))
