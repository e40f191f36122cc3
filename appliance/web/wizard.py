"""The first-start wizard after the administrator password (auth.setup): name and time zone,
lines, where faxes go, the default mailbox, done.

The wizard keeps no state of its own: each step writes the configuration file (validated, as the
settings pages do) and the next step reads it back, so leaving half-way and coming back later, or
using the settings pages instead, all work.  The last step sets ``web.setup_done``.  Each step
that can be tried has a button that tries it now and says what happened in plain words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from appliance.config import ConfigError, address_problem, mail_domain
from appliance.web import formerrors
from appliance.web.backup_page import restore_upload
from appliance.web.configpage import load_doc, placed_errors, save_and_reload
from appliance.web.daemonlink import control_request
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
from appliance.web.modems import detected_modems
from appliance.web.settings_fields import PEERS
from appliance.web.testmessage import default_recipient, send_test_message
from appliance.web.tomledit import ConfigDoc, TomlEditError

bp = Blueprint("wizard", __name__, url_prefix="/setup")

#: (step, endpoint, label) in order
STEPS = [
    ("system", "wizard.start", "Name and time"),
    ("lines", "wizard.lines", "Lines"),
    ("delivery", "wizard.delivery", "Where faxes go"),
    ("mailbox", "wizard.mailbox", "Default mailbox"),
    ("done", "wizard.done", "Done"),
]

SYSTEM_FIELDS = [
    Field(
        "system.hostname",
        "Host name",
        help="How the box is called on the network, e.g. faxbridge.",
        placeholder="faxbridge",
    ),
    Field(
        "system.timezone",
        "Time zone",
        help="Where the box is, e.g. Europe/Berlin or America/New_York.",
        placeholder="Europe/Berlin",
    ),
]

LINE_FIELDS = [
    Field(
        "modem.devices",
        "Modems to use",
        "lines",
        help='One device a line; "Use it" beside a modem found above fills it in.',
    ),
    Field("fax.ident", "This fax machine's number (ident)", help="Shown on the sender's machine, e.g. +49 30 1234567."),
]

MAILBOX_FIELDS = [
    Field(
        "routing.default",
        "Default mailbox",
        help="Every fax goes here unless a rule says otherwise.",
        placeholder="faxes@example.com",
    ),
    Field("delivery.admin", "Administrator's address (optional)", help="Told when a fax cannot be delivered."),
]

#: the four ways into Exchange (README "Into Exchange"): title, explanation, fields, fixed keys
KINDS: dict[str, dict[str, Any]] = {
    "o365-oauth": {
        "title": "Exchange Online (Microsoft 365), signed in as an app",
        "text": "The recommended way for Microsoft 365: the appliance signs in with an app registration "
        "(no user password) and sends as the fax mailbox.",
        "fields": [
            Field(
                "via",
                "Send with",
                "choice",
                choices=("smtp", "graph"),
                help="smtp: SMTP AUTH (SMTP.SendAsApp); graph: Microsoft Graph over HTTPS (Mail.Send).",
            ),
            Field("delivery.from", "Fax mailbox (sends the faxes)", placeholder="fax@contoso.com"),
            Field("delivery.tenant", "Tenant (directory) ID or domain", placeholder="contoso.onmicrosoft.com"),
            Field("delivery.client_id", "Application (client) ID"),
            Field("delivery.client_secret", "Client secret (its Value)", "secret"),
        ],
    },
    "o365-connector": {
        "title": "Exchange Online through a connector",
        "text": "No mailbox and no password: an inbound connector recognises the appliance by the site's "
        "public IP address or by its certificate. Port 25 must be open to the internet.",
        "fields": [
            Field(
                "delivery.from",
                "Sender address",
                help="An address in one of the tenant's domains.",
                placeholder="fax@contoso.com",
            ),
            Field("delivery.tls_client_cert", "Certificate file (only for a certificate connector)"),
        ],
        "fixed": {"backend": "direct", "starttls": "required"},
    },
    "exchange-server": {
        "title": "Exchange Server in the building",
        "text": "Exchange 2019 or Subscription Edition: a receive connector that accepts the appliance.",
        "fields": [
            Field("host", "Exchange server's name", placeholder="mail.contoso.local"),
            Field("delivery.from", "Sender address", placeholder="fax@contoso.com"),
            Field("delivery.ca_file", "Your CA's certificate file (to trust Exchange's certificate)"),
        ],
        "fixed": {"backend": "smtp", "starttls": "required"},
    },
    "smtp": {
        "title": "Another mail server (SMTP)",
        "text": "Any mail server or relay that accepts mail for the recipients.",
        "fields": [
            Field(
                "delivery.url",
                "Server",
                help="smtp://host:587 (STARTTLS) or smtps://host:465",
                placeholder="smtp://mail.example.com:587",
            ),
            Field("delivery.from", "Sender address", placeholder="fax@example.com"),
            Field("delivery.username", "User name (if the server wants one)"),
            Field("delivery.password", "Password", "secret"),
        ],
        "fixed": {"backend": "smtp", "starttls": "", "auth": ""},
    },
}


def _render(step: str, template: str, **ctx: Any) -> tuple[str, int]:
    errors = ctx.pop("errors", [])
    shown: dict[str, Any] = {
        "fields": ctx.get("fields"),
        "entries": (ctx["spec"],) if ctx.get("spec") else (),
        "rows": ctx.get("rows"),
    }
    if ctx.get("kinds") and ctx.get("kind") in ctx["kinds"]:  # only the open choice shows its errors
        shown["fields"] = ctx["kinds"][ctx["kind"]]["fields"]
    return render_template(
        template, step=step, steps=STEPS, **placed_errors(errors, shown, ("test_to",)), **ctx
    ), 400 if errors else 200


def _doc() -> ConfigDoc:
    return load_doc()


def _next(step: str) -> ResponseReturnValue:
    names = [n for n, _, _ in STEPS]
    return redirect(url_for(STEPS[names.index(step) + 1][1]))


def _simple_step(
    step: str,
    fields: list[Field],
    template: str,
    entries: tuple[EntrySpec, ...] = (),
    prepare: Callable[[ConfigDoc], None] | None = None,
    **extra: Any,
) -> Any:
    """GET shows the file's values; POST validates, writes, reloads and goes on (or shows errors).
    ``prepare`` derives further keys from the submitted ones before the whole is validated."""
    try:
        doc = _doc()
    except TomlEditError as e:
        return _render(step, template, fields=fields, values={}, secrets={}, rows={}, errors=[str(e)], **extra)
    errors: list[str] = []
    values = field_values(doc, fields)
    rows = {spec.prefix: entry_rows(doc, spec) for spec in entries}
    if request.method == "POST":
        apply_fields(doc, fields, request.form, errors)
        for spec in entries:
            apply_entries(doc, spec, request.form, errors)
        if not errors and prepare is not None:
            prepare(doc)
        if not errors:
            errors, message = save_and_reload(doc)
            if not errors:
                flash(message)
                return _next(step)
        values = form_values(fields, request.form)
        rows = {spec.prefix: submitted_rows(spec, request.form, doc) for spec in entries}
    return _render(
        step,
        template,
        fields=fields,
        values=values,
        secrets=secrets_state(doc, fields),
        rows=rows,
        errors=errors,
        **extra,
    )


@bp.route("/system", methods=["GET", "POST"])
def start() -> Any:
    """Step 1 after the password: host name and time zone."""
    return _simple_step("system", SYSTEM_FIELDS, "wizard_system.html")


@bp.post("/restore")
def restore() -> Any:
    """Step 1's other way: "Restore a backup instead" (a fresh card, a box that was set up
    before).  The same checks as the Backup page; then straight to the end, saying what came back."""
    outcome = restore_upload(request.files.get("file"), request.form.get("passphrase", ""))
    if outcome.errors:
        try:
            values = field_values(_doc(), SYSTEM_FIELDS)
        except TomlEditError:
            values = {}
        page, _ = _render(
            "system",
            "wizard_system.html",
            fields=SYSTEM_FIELDS,
            values=values,
            secrets={},
            rows={},
            errors=["Nothing was restored."] + outcome.errors,
            restore_open=True,
        )
        return page, 503 if outcome.busy else 400
    flash("Restored from the backup: " + ", ".join(outcome.restored) + ". " + outcome.message)
    return redirect(url_for("wizard.done"))


@bp.route("/lines", methods=["GET", "POST"])
def lines() -> Any:
    """Step 2: modems (detected, with a probe button) and SIP peers."""
    return _simple_step("lines", LINE_FIELDS, "wizard_lines.html", (PEERS,), detected=detected_modems(), spec=PEERS)


@bp.post("/lines/use")
def use_modem() -> Any:
    """ "Use it" beside a detected modem: add it to modem.devices (only a device that was detected)."""
    device = request.form.get("device", "")
    if device not in {d["path"] for d in detected_modems()}:
        flash(f"{device or 'That device'} is not plugged in (any more).")
        return redirect(url_for("wizard.lines"))
    doc = _doc()
    devices = list(doc.get("modem", "devices") or [])
    if device not in devices:
        doc.set("modem", "devices", devices + [device])
        errors, message = save_and_reload(doc)
        flash(f"Not saved: {formerrors.as_text(errors)}" if errors else f"{device} will answer calls. {message}")
    return redirect(url_for("wizard.lines"))


# -- where faxes go -------------------------------------------------------------------------------
def current_kind(doc: ConfigDoc) -> str:
    """Which of the four choices the file's [delivery] looks like (to open that one)."""
    backend = doc.get("delivery", "backend")
    if backend == "graph" or doc.get("delivery", "auth") == "oauth2":
        return "o365-oauth"
    if backend == "direct":
        return "o365-connector"
    if backend == "smtp":
        url = str(doc.get("delivery", "url"))
        return "exchange-server" if url.endswith(":25") and not doc.get("delivery", "username") else "smtp"
    return ""


def kind_values(doc: ConfigDoc, kind: str) -> dict[str, Any]:
    """What one choice's fields show: what the file says, never a built-in default (the embedded
    "var/Maildir" is no mail server, "fax@localhost" no sender: an empty field shows its example),
    and a server only when the file names a mail server."""
    fields = [f for f in KINDS[kind]["fields"] if "." in f.key]
    values = field_values(doc, fields)
    table = doc.table("delivery")
    for f in fields:
        if f.section == "delivery" and (table is None or f.name not in table):
            values[f.key] = ""
    url = str(doc.get("delivery", "url") or "")
    is_server = url.startswith(("smtp://", "smtps://"))
    if not is_server:
        values["delivery.url"] = ""
    values["via"] = "graph" if doc.get("delivery", "backend") == "graph" else "smtp"
    values["host"] = url.split("://", 1)[-1].rsplit(":", 1)[0] if is_server else ""
    return values


def apply_kind(doc: ConfigDoc, kind: str, form: Any, errors: list[str]) -> None:
    """Fill [delivery] the way the README's "Into Exchange" section describes for this kind."""
    spec = KINDS[kind]
    apply_fields(doc, [f for f in spec["fields"] if "." in f.key], form, errors)
    for key, value in spec.get("fixed", {}).items():
        doc.set("delivery", key, value)
    if kind == "o365-oauth":
        via = form.get("via", "smtp")
        mailbox = form.get("delivery.from", "").strip()
        if via == "graph":
            doc.set("delivery", "backend", "graph")
        else:
            doc.set("delivery", "backend", "smtp")
            doc.set("delivery", "url", "smtp://smtp.office365.com:587")
            doc.set("delivery", "starttls", "required")
            doc.set("delivery", "auth", "oauth2")
            doc.set("delivery", "username", mailbox)
    elif kind == "exchange-server":
        host = form.get("host", "").strip()
        if not host or (any(c in host for c in "/:@ ") and not host.startswith("[")):
            errors.append("host: the Exchange server's name or address, e.g. mail.contoso.local")
        else:
            doc.set("delivery", "url", f"smtp://{host}:25")
        doc.set("delivery", "auth", "")
    elif kind == "o365-connector":
        doc.set("delivery", "auth", "")


@bp.route("/delivery", methods=["GET", "POST"])
def delivery() -> Any:
    """Step 3: one of four short forms, each filling [delivery]; a test message with it, unsaved."""
    doc = _doc()
    kind = request.form.get("kind", "") if request.method == "POST" else current_kind(doc)
    errors: list[str] = []
    outcome = None
    values = {k: kind_values(doc, k) for k in KINDS}
    test_to = default_recipient(doc)
    if request.method == "POST":
        if kind not in KINDS:
            errors.append("Choose one of the four ways.")
        else:
            apply_kind(doc, kind, request.form, errors)
            values[kind] = {
                f.key: (request.form.get(f.key, "") if f.kind != "secret" else "") for f in KINDS[kind]["fields"]
            }
            test = request.form.get("action") == "test"
            test_to = request.form.get("test_to", "").strip()
            if test and (not test_to or "@" not in test_to or any(c in test_to for c in "\r\n<>,; ")):
                errors.append("test_to: give one mail address to send the test message to")
            if not errors and test:
                try:
                    cfg = doc.validate()
                except ConfigError as e:
                    errors = e.errors
                else:
                    outcome = send_test_message(cfg, test_to)
            elif not errors:
                errors, message = save_and_reload(doc)
                if not errors:
                    flash(message)
                    return _next("delivery")
    secrets = {k: secrets_state(doc, KINDS[k]["fields"]) for k in KINDS}
    return _render(
        "delivery",
        "wizard_delivery.html",
        kinds=KINDS,
        kind=kind,
        values=values,
        secrets=secrets,
        errors=errors,
        outcome=outcome,
        test_to=test_to,
    )


@bp.route("/mailbox", methods=["GET", "POST"])
def mailbox() -> Any:
    """Step 4: the default mailbox (routing.default), whose domain becomes an accepted domain."""
    return _simple_step("mailbox", MAILBOX_FIELDS, "wizard_mailbox.html", prepare=accept_default_domain)


def accept_default_domain(doc: ConfigDoc) -> None:
    """The owner just named the mailbox faxes go to, so its domain is one faxes may go to:
    added to routing.accepted_domains, which is written out even when it was left to its default
    (the default's domain), so the file says which domains are in force and a later change of
    the default mailbox cannot widen them unnoticed."""
    default = str(doc.get("routing", "default") or "")
    if address_problem(default) is not None:
        return  # not an address: validation names the problem, beside the field
    domain = mail_domain(default)
    current = [str(d) for d in (doc.get("routing", "accepted_domains") or [])]
    if domain not in [d.strip().rstrip(".").lower() for d in current]:
        doc.set("routing", "accepted_domains", current + [domain])


@bp.route("/done", methods=["GET", "POST"])
def done() -> Any:
    """Step 5: a summary, the test fax, and marking the wizard done (web.setup_done)."""
    doc = _doc()
    errors: list[str] = []
    if request.method == "POST":
        doc.set("web", "setup_done", True)
        errors, message = save_and_reload(doc)
        if not errors:
            flash("The appliance is set up. " + message)
            return redirect("/")
    try:
        cfg = doc.validate()
        summary = {
            "hostname": cfg.system.hostname,
            "timezone": cfg.system.timezone,
            "modems": cfg.modem.devices,
            "peers": [p.name for p in cfg.sip.peers],
            "backend": cfg.delivery.backend,
            "from": cfg.delivery.from_,
            "default": cfg.routing.default,
            "domains": cfg.routing.domains(),
        }
    except ConfigError as e:
        errors, summary = errors or e.errors, {}
    return _render("done", "wizard_done.html", summary=summary, errors=errors)


# -- test fax to ourselves --------------------------------------------------------------------------
#: where a failed test fax is fixed: the daemon's "fix" -> (endpoint, the link's words)
FIXES = {
    "sip": ("settings.sip", "Open the SIP settings"),
    "system": ("system.index", "Open the System page and its log"),
}


def _fix_link(reply: dict[str, Any]) -> tuple[str, str] | None:
    endpoint, words = FIXES.get(str(reply.get("fix", "")), ("", ""))
    return (url_for(endpoint), words) if endpoint else None


@bp.post("/test-fax")
def test_fax() -> Any:
    """Ask the daemon to send a one-page fax to its own SIP listener."""
    reply = control_request({"cmd": "test-fax"}, timeout=10.0)
    if reply.get("ok"):
        return redirect(url_for("wizard.test_fax_status", fax_id=str(reply.get("id", ""))))
    if reply.get("id"):  # one is already on its way: show that one
        flash(str(reply.get("error", "")))
        return redirect(url_for("wizard.test_fax_status", fax_id=str(reply["id"])[:64]))
    if reply.get("down"):
        reply = {
            "ok": False,
            "fix": "system",
            "error": "The appliance's fax service is not running, so it cannot send a test fax now. "
            "The System page shows its state and can restart it.",
        }
    page, _ = _render("done", "wizard_testfax.html", reply=reply, fax_id="", fix=_fix_link(reply))
    return page, 503 if reply.get("fix") == "system" else 409


@bp.get("/test-fax/<fax_id>")
def test_fax_status(fax_id: str) -> Any:
    reply = control_request({"cmd": "test-fax-status", "id": fax_id[:64]})
    if not reply.get("ok") and reply.get("down"):
        reply = {
            "ok": False,
            "fix": "system",
            "error": "The appliance's fax service is not running (any more), so this test fax cannot be "
            "followed. The System page shows its state and can restart it.",
        }
    elif not reply.get("ok"):
        reply = {
            "ok": False,
            "error": "This test fax is no longer known (the appliance keeps the last 20 "
            "since it started). Send a new one.",
        }
    return _render("done", "wizard_testfax.html", reply=reply, fax_id=fax_id[:64], fix=_fix_link(reply))
