"""Settings pages: SIP, modems, routing, delivery, the system, backup and restore.

Every page edits the configuration file the daemon loaded (``tomledit.ConfigDoc``): the form's
values go into the tomlkit document, the whole result is validated, and only a valid result is
written; then the daemon is asked to ``reload`` over the control socket.  Errors are shown once,
beside the field they name, in the page's words (formerrors.py).  Secrets are write-only: a page says "set" or "not set" and an empty field keeps the value.
The wizard (wizard.py) reuses the same fields and helpers.
"""

from __future__ import annotations

import glob
import logging
import os
import ssl
import tempfile
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from flask import (Blueprint, Response, current_app, flash, redirect, render_template, request,
                   url_for)
from werkzeug.datastructures import MultiDict

from appliance.config import (ROUTE_FORMATS, ROUTE_TIFF, T38_MODES, Config, ConfigError, PeerConfig,
                              RegistrationConfig, RouteRuleConfig, config_file)
from appliance.config import STARTTLS_MODES
from appliance.tlskeys import UPLOAD_ADVICE, EncryptedKey, refuse_passphrase
from appliance.strictnum import ascii_digits
from appliance.web import formerrors
from appliance.web.tomledit import ConfigDoc, TomlEditError

log = logging.getLogger(__name__)

bp = Blueprint("settings", __name__, url_prefix="/settings")

#: the longest a "send a test message" may keep a page waiting, seconds
TEST_MESSAGE_TIMEOUT = 45.0
#: at most this many rows of an entry editor are read from one form
MAX_ROWS = 200
#: biggest configuration backup accepted for restore, bytes
MAX_RESTORE = 1024 * 1024


# -- fields -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One form field bound to one configuration key (``section.key``, or an entry's key)."""

    key: str
    label: str
    #: text | int | float | bool | lines (one per line) | list (lines or commas) | ints |
    #: pairs ("key = value" lines) | choice | secret | tristate (empty, true, false or text)
    kind: str = "text"
    help: str = ""
    choices: tuple[str, ...] = ()
    placeholder: str = ""
    #: a heading shown above the first field of a group (delivery: which backend uses these)
    group: str = ""

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[-1]


class _Remove:
    """A parsed value meaning "no value: leave the key out" (tristate left empty)."""


REMOVE = _Remove()


def parse_value(f: Field, form: MultiDict[str, str], name: str) -> Any:
    """The typed value of one field from a submitted form; ValueError says what is wrong."""
    if f.kind == "bool":
        return name in form
    raw = form.get(name, "")
    raw = raw.replace("\r\n", "\n")
    if f.kind == "int":
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
    if f.kind == "float":
        try:
            return float(raw.strip())
        except ValueError:
            raise ValueError("must be a number") from None
    if f.kind == "lines":
        return [line.strip() for line in raw.split("\n") if line.strip()]
    if f.kind == "list":
        return [p.strip() for p in raw.replace(",", "\n").split("\n") if p.strip()]
    if f.kind == "ints":
        try:
            return [int(p) for p in raw.replace("-", " ").replace(",", " ").split()]
        except ValueError:
            raise ValueError("must be numbers, e.g. 40000-40999") from None
    if f.kind == "pairs":
        out: dict[str, str] = {}
        for line in raw.split("\n"):
            if not line.strip():
                continue
            k, sep, v = line.partition("=")
            if not sep or not k.strip() or not v.strip():
                raise ValueError(f"{line.strip()!r}: write one 'number = address' a line")
            out[k.strip().strip('"')] = v.strip().strip('"')
        return out
    if f.kind == "choice":
        value = raw.strip()
        if value not in f.choices:
            raise ValueError("must be one of " + ", ".join(c or '""' for c in f.choices))
        return value
    if f.kind == "tristate":
        value = raw.strip()
        if not value:
            return REMOVE
        return {"true": True, "false": False}.get(value.lower(), value)
    return raw.strip()


def present(f: Field, form: MultiDict[str, str], name: str) -> bool:
    """Whether the form showed this field at all (an unchecked checkbox sends nothing, so
    checkboxes come with a hidden "<name>-shown"); a field a form did not show is left alone."""
    return (name + "-shown") in form if f.kind == "bool" else name in form


def show_value(f: Field, value: Any) -> Any:
    """A configuration value as the form shows it (the inverse of parse_value)."""
    if f.kind == "bool":
        return bool(value)
    if value is None:
        return ""
    if f.kind in ("lines", "list"):
        return "\n".join(str(v) for v in value)
    if f.kind == "ints":
        return "-".join(str(v) for v in value)
    if f.kind == "pairs":
        return "\n".join(f"{k} = {v}" for k, v in dict(value).items())
    if f.kind == "tristate":
        return {True: "true", False: "false"}.get(value, value) if not isinstance(value, str) else value
    return str(value)


def field_values(doc: ConfigDoc, fields: list[Field]) -> dict[str, Any]:
    """What each field shows now (secrets: nothing)."""
    return {f.key: ("" if f.kind == "secret" else show_value(f, doc.get(f.section, f.name))) for f in fields}


def form_values(fields: list[Field], form: MultiDict[str, str]) -> dict[str, Any]:
    """The submitted values, to show again beside errors (secrets: never echoed)."""
    return {f.key: (f.key in form if f.kind == "bool" else "" if f.kind == "secret" else form.get(f.key, ""))
            for f in fields}


def apply_fields(doc: ConfigDoc, fields: list[Field], form: MultiDict[str, str], errors: list[str]) -> None:
    """Put the submitted values into the document; secrets only when typed (or cleared)."""
    for f in fields:
        if f.kind == "secret":
            value = form.get(f.key, "")
            if form.get(f.key + "-clear"):
                doc.set_secret(f.section, f.name, "")
            elif value:
                doc.set_secret(f.section, f.name, value)
            continue
        if not present(f, form, f.key):
            continue
        try:
            value = parse_value(f, form, f.key)
        except ValueError as e:
            errors.append(f"{f.key}: {e}")
            continue
        if value is not REMOVE:
            doc.set(f.section, f.name, value)


def secrets_state(doc: ConfigDoc, fields: list[Field]) -> dict[str, bool]:
    return {f.key: doc.secret_is_set(f.section, f.name) for f in fields if f.kind == "secret"}


# -- arrays of tables: peers, registrations, routing rules --------------------------------------
@dataclass(frozen=True)
class EntrySpec:
    section: str
    table: str
    #: form-name prefix of the rows ("peers-0-match")
    prefix: str
    title: str
    fields: tuple[Field, ...]
    defaults: Callable[[], Any]
    #: how the configuration's errors name entry i ("sip.peers[0]", "routing rule 'sales'")
    label: Callable[[int, dict[str, Any]], str] = field(default=lambda i, v: "")
    #: fields that must be given for a new row to count (an all-empty row is the blank one)
    key_fields: tuple[str, ...] = ("name",)
    #: the order matters (routing rules): each row gets a position field
    ordered: bool = False

    def default(self, name: str) -> Any:
        return getattr(self.defaults(), name, None)


def entry_rows(doc: ConfigDoc, spec: EntrySpec) -> list[dict[str, Any]]:
    """The rows an editor shows: every entry, then one blank row to add a new one."""
    rows = []
    for i, entry in enumerate(doc.entries(spec.section, spec.table)):
        values = {f.name: ("" if f.kind == "secret" else show_value(f, entry.get(f.name, spec.default(f.name))))
                  for f in spec.fields}
        secret = {f.name: doc.secret_is_set(spec.section, f.name, (spec.table, entry.get("name", "")))
                  for f in spec.fields if f.kind == "secret"}
        rows.append({"origin": i, "values": values, "secret": secret, "label": spec.label(i, entry)})
    blank = {f.name: ("" if f.kind == "secret" else show_value(f, spec.default(f.name))) for f in spec.fields}
    rows.append({"origin": "", "values": blank, "secret": {}, "label": spec.label(len(rows), {}), "new": True})
    return rows


def submitted_rows(spec: EntrySpec, form: MultiDict[str, str], doc: ConfigDoc) -> list[dict[str, Any]]:
    """The rows as submitted, to show again beside errors."""
    rows = []
    final = 0
    for i in _ordered(spec, form):
        p = f"{spec.prefix}-{i}-"
        values = {f.name: (p + f.name in form if f.kind == "bool" else "" if f.kind == "secret"
                           else form.get(p + f.name, "")) for f in spec.fields}
        origin = form.get(p + "_origin", "")
        deleted = bool(form.get(p + "_delete"))
        secret = {f.name: doc.secret_is_set(spec.section, f.name, (spec.table, values.get("name", "")))
                  for f in spec.fields if f.kind == "secret"}
        label = spec.label(final, {"name": values.get("name", "")})
        if not deleted and (origin != "" or _row_given(spec, values, form, p)):
            final += 1
        rows.append({"origin": origin, "values": values, "secret": secret, "label": label,
                     "deleted": deleted, "new": origin == ""})
    if not rows or rows[-1]["origin"] != "":
        rows.append({"origin": "", "values": {f.name: "" for f in spec.fields}, "secret": {},
                     "label": "", "new": True})
    return rows


def _count(form: MultiDict[str, str], spec: EntrySpec) -> int:
    try:
        return max(0, min(MAX_ROWS, int(form.get(f"{spec.prefix}-count", "0"))))
    except ValueError:
        return 0


def _ordered(spec: EntrySpec, form: MultiDict[str, str]) -> list[int]:
    """Row indexes in the order asked for by their "position" fields (rules: first match wins);
    rows without a usable position keep their place."""
    def key(i: int) -> tuple[float, int]:
        try:
            return float(form.get(f"{spec.prefix}-{i}-_position", "")), i
        except ValueError:
            return float(i + 1), i
    rows = list(range(_count(form, spec)))
    return sorted(rows, key=key) if spec.ordered else rows


def _row_given(spec: EntrySpec, values: dict[str, Any], form: MultiDict[str, str], p: str) -> bool:
    return any(str(values.get(k, "")).strip() for k in spec.key_fields) or any(
        form.get(p + f.name) for f in spec.fields if f.kind == "secret")


def apply_entries(doc: ConfigDoc, spec: EntrySpec, form: MultiDict[str, str], errors: list[str]) -> None:
    """Rebuild the array from the editor's rows (deleted rows dropped, a blank new row ignored)."""
    old = doc.entries(spec.section, spec.table)
    values: list[dict[str, Any]] = []
    origins: list[int | None] = []
    secret_ops: list[tuple[str, str, bool, str, str]] = []
    for i in _ordered(spec, form):
        p = f"{spec.prefix}-{i}-"
        if form.get(p + "_delete"):
            continue
        o = form.get(p + "_origin", "")
        origin = int(o) if ascii_digits(o, 6) and int(o) < len(old) else None
        if origin in origins:
            origin = None  # a form naming one entry twice: the second is a new one
        shown = {f.name: form.get(p + f.name, "") for f in spec.fields if f.kind not in ("bool", "secret")}
        if origin is None and not _row_given(spec, shown, form, p):
            continue  # the blank row for a new entry, left blank
        base = old[origin] if origin is not None else {}
        entry: dict[str, Any] = {}
        label = spec.label(len(values), {"name": shown.get("name", "")})
        for f in spec.fields:
            if f.kind == "secret":
                continue
            if not present(f, form, p + f.name):
                if f.name in base:
                    entry[f.name] = base[f.name]
                continue
            try:
                v = parse_value(f, form, p + f.name)
            except ValueError as e:
                errors.append(f"{label}.{f.name}: {e}")
                if f.name in base:
                    entry[f.name] = base[f.name]
                continue
            if v is REMOVE:
                continue
            if f.name in base or v != spec.default(f.name):
                entry[f.name] = v
        # keys this editor does not show stay as they were
        for k, v in base.items():
            if k not in entry and not any(f.name == k for f in spec.fields):
                entry[k] = v
        values.append(entry)
        origins.append(origin)
        for f in spec.fields:
            if f.kind == "secret":
                secret_ops.append((f.name, form.get(p + f.name, ""), bool(form.get(p + f.name + "-clear")),
                                   str(base.get("name", "")), str(entry.get("name", ""))))
                if form.get(p + f.name) and not entry.get("name"):
                    errors.append(f"{label}.name: needed to keep the {f.name} in secrets.toml")
    doc.set_entries(spec.section, spec.table, values, origins)
    for key, value, clear, old_name, new_name in secret_ops:
        if not new_name:
            continue
        doc.rename_secret_entry(spec.section, spec.table, old_name, new_name)
        if clear:
            doc.set_secret(spec.section, key, "", (spec.table, new_name))
        elif value:
            doc.set_secret(spec.section, key, value, (spec.table, new_name))


# -- what each page edits -------------------------------------------------------------------------
SYSTEM_FIELDS = [
    Field("system.hostname", "Host name", help="The box's name on the network: letters, digits and '-'.",
          placeholder="faxbridge"),
    Field("system.timezone", "Time zone", help="An IANA zone such as Europe/Berlin; empty = the system's.",
          placeholder="Europe/Berlin"),
    Field("fax.ident", "This fax machine's number (ident)",
          help="Shown on the sender's machine on every line, SIP and modem, e.g. +49 30 1234567."),
    Field("system.retention_days", "Keep faxes for (days)", "int",
          help="Older faxes are deleted with their images; 0 keeps them forever."),
    Field("delivery.admin", "Administrator mail address",
          help="Where the appliance reports faxes it could not deliver; empty = only the log."),
]

SIP_FIELDS = [
    Field("sip.listen", "Listeners", "lines", help="One per line: udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT. "
          "Changes take effect after a restart."),
    Field("sip.public_address", "Public address", help="The address put in SDP and Contact; empty = the listener's."),
    Field("sip.rtp_ports", "RTP ports", "ints", help="First-last port for call media, e.g. 40000-40999."),
    Field("sip.allow_unknown", "Accept calls from anyone", "bool",
          help="Also from addresses that match no peer below. Leave off unless the network is closed."),
    Field("sip.tls_cert", "TLS certificate (PEM file)", help="Needed by a tls: listener; or upload one below."),
    Field("sip.tls_key", "TLS private key (PEM file)"),
    Field("sip.tls_ca", "CA bundle for peers' certificates", help="Empty = the system's store."),
    Field("sip.tls_verify_client", "Require client certificates", "bool"),
]

PEERS = EntrySpec(
    "sip", "peers", "peers", "Peers (gateways and PBXs allowed to call)",
    (Field("name", "Name"), Field("match", "Address or network", placeholder="192.0.2.10 or 10.1.0.0/16"),
     Field("transport", "Transport", "choice", choices=("", "udp", "tcp", "tls"), help="empty = any"),
     Field("t38", "T.38", "choice", choices=T38_MODES,
           help="off: audio only; accept: answer the gateway's T.38 switch; request: ask for T.38"),
     Field("username", "Digest user", help="When set, this peer must authenticate."),
     Field("password", "Digest password", "secret"),
     Field("t38_max_datagram", "T.38 max datagram", "int", help="0 = believe the gateway"),
     Field("exchange_um", "Exchange UM gateway (may name the recipient)", "bool",
           help="Only for the gateway or PBX that Exchange UM refers fax calls through: its Referred-By "
                "then chooses the mailbox. From any other peer that header is ignored."),
     Field("capture", "Record call media", "bool",
           help="Keeps a packet capture of each call's audio or T.38 from this peer (up to 8 MB a call) in "
                "its \"Download call diagnostics\" file on the fax page, for a support engineer. It holds "
                "the fax itself: switch it on only while you need it.")),
    PeerConfig, label=lambda i, v: f"sip.peers[{i}]")

REGISTRATIONS = EntrySpec(
    "sip", "registrations", "regs", "Registrations (accounts kept registered at a PBX)",
    (Field("name", "Name"), Field("registrar", "Registrar", placeholder="sip:pbx.example:5060;transport=tcp"),
     Field("user", "User"), Field("auth_user", "Authentication user", help="when it differs from User"),
     Field("password", "Password", "secret"), Field("domain", "Domain"),
     Field("expires", "Expires (s)", "int"), Field("outbound_proxy", "Outbound proxy"),
     Field("contact_user", "Contact user")),
    RegistrationConfig, label=lambda i, v: f"sip.registrations[{i}]", key_fields=("name", "registrar", "user"))

MODEM_FIELDS = [
    Field("modem.devices", "Devices", "lines",
          help="One per line; prefer /dev/serial/by-id/... (stable when re-plugged)."),
    Field("modem.class_preference", "Class preference", "list",
          help="The first class the modem offers wins: 1.0, 1, 2.0, 2."),
    Field("modem.rings", "Rings before answering", "int"),
    Field("modem.caller_id", "Ask the modem for caller ID", "bool"),
    Field("modem.ident", "Fax ident on modem calls",
          help="Digits, spaces and '+'; empty = this fax machine's number on the System page."),
    Field("modem.speed", "Serial speed (baud)", "int", help="115200 for almost every USB modem."),
    Field("modem.flow_control", "Flow control", "choice", choices=("rtscts", "xonxoff", "none")),
    Field("modem.init", "Extra AT commands", "lines", help="Sent after the modem's own init, one per line."),
    Field("modem.auto_adopt", "Use any modem that is plugged in", "bool"),
    Field("modem.ecm", "Error correction (ECM)", "bool"),
]

ROUTING_FIELDS = [
    Field("routing.default", "Default mailbox", help="Faxes no rule or number claims go here."),
    Field("routing.accepted_domains", "Accepted domains", "list", placeholder="contoso.com",
          help="Faxes go only to addresses in these mail domains (exact match: list a subdomain "
               "too if it is used); a rule, number or resend to any other domain is refused. "
               "Empty = the default mailbox's domain."),
    Field("routing.called", "By called number", "pairs",
          help="One 'number = address' a line, e.g. 5551000 = sales@example.com."),
]

RULES = EntrySpec(
    "routing", "rules", "rules", "Rules (the first rule that matches wins)",
    (Field("name", "Name"), Field("called", "Called number"), Field("called_prefix", "Called number starts with"),
     Field("called_pattern", "Called number pattern (regex)"), Field("line", "Line", placeholder="modem:* or sip:gw1"),
     Field("caller", "Caller number"), Field("caller_prefix", "Caller number starts with"),
     Field("tsi", "Sender ident (regex)"),
     Field("um_recipient", "Exchange UM referral", "tristate", help="empty = any; true, false or a regex"),
     Field("to", "To", "list"), Field("cc", "Cc", "list"),
     Field("use_um_recipient", "Deliver to the UM recipient", "bool"),
     Field("format", "Format", "choice", choices=ROUTE_FORMATS),
     Field("tiff", "TIFF flavour", "choice", choices=("",) + ROUTE_TIFF, help="empty = tiff-f"),
     Field("subject", "Subject", help="e.g. Fax from {caller} ({pages} pages)")),
    RouteRuleConfig, label=lambda i, v: RouteRuleConfig.label(i, v),
    key_fields=("name", "to", "called", "called_prefix", "caller", "line", "tsi"), ordered=True)

DELIVERY_BACKENDS = ("smtp", "direct", "graph", "maildir")
G_MAIN = "Where faxes go"
G_SERVER = "Mail server (smtp and direct)"
G_OAUTH = "Microsoft 365 sign-in (graph, or smtp with sign-in oauth2)"
G_MORE = "More"
DELIVERY_FIELDS = [
    Field("delivery.backend", "Backend", "choice", choices=DELIVERY_BACKENDS, group=G_MAIN,
          help="smtp: a mail server or relay connector; direct: the recipient domain's MX; "
               "graph: Microsoft Graph; maildir: a local folder."),
    Field("delivery.url", "Server or folder", group=G_MAIN, placeholder="smtp://mail.example.com:587",
          help="smtp: smtp://host:port or smtps://host:port; maildir: a folder; not used by direct and graph."),
    Field("delivery.from", "Sender address (From)", group=G_MAIN),
    Field("delivery.starttls", "STARTTLS", "choice", choices=STARTTLS_MODES, group=G_SERVER,
          help="(default) = required, except for a server on this box (localhost), where it is used when "
               "offered. opportunistic sends in clear when the server offers no STARTTLS."),
    Field("delivery.auth", "Sign-in", "choice", choices=("", "password", "oauth2", "none"), group=G_SERVER,
          help="empty = password when a user name is set"),
    Field("delivery.username", "User name", group=G_SERVER),
    Field("delivery.password", "Password", "secret", group=G_SERVER),
    Field("delivery.ca_file", "CA bundle", group=G_SERVER,
          help="To trust a private mail server's certificate; empty = system."),
    Field("delivery.verify_tls", "Verify the server's certificate", "bool", group=G_SERVER),
    Field("delivery.tls_client_cert", "TLS client certificate", group=G_SERVER,
          help="For a certificate-matched relay connector."),
    Field("delivery.tls_client_key", "TLS client key", group=G_SERVER),
    Field("delivery.dns_servers", "DNS servers (direct)", "list", group=G_SERVER, help="Empty = the system's."),
    Field("delivery.tenant", "Tenant (directory) ID or domain", group=G_OAUTH),
    Field("delivery.client_id", "Application (client) ID", group=G_OAUTH),
    Field("delivery.client_secret", "Client secret", "secret", group=G_OAUTH, help="The secret's Value, not its ID."),
    Field("delivery.client_secret_expires", "Client secret expires", group=G_OAUTH, placeholder="YYYY-MM-DD",
          help="The date in the secret's Expires column: the dashboard warns 30 days before."),
    Field("delivery.client_certificate", "Client certificate (PEM with key)", group=G_OAUTH,
          help="Instead of a client secret."),
    Field("delivery.graph_url", "Microsoft Graph URL", group=G_OAUTH, help="Only for national clouds."),
    Field("delivery.archive", "Archive Maildir", group=G_MORE, help="A local copy of every fax; empty = none."),
    Field("delivery.max_message_bytes", "Largest message (bytes)", "int", group=G_MORE,
          help="The server's or mailbox's limit (Exchange Online 35 MB, Exchange Server 10 MB by default)."),
]

SECTIONS = [("system", "System"), ("sip", "SIP"), ("modem", "Modems"), ("routing", "Routing"),
            ("delivery", "Delivery"), ("backup", "Backup")]
#: (endpoint, title, fields, entry editors) of every settings page: where a key is set, in words
PAGE_FIELDS: list[tuple[str, str, list[Field], tuple[EntrySpec, ...]]] = [
    ("settings.system", "System", SYSTEM_FIELDS, ()),
    ("settings.sip", "SIP", SIP_FIELDS, (PEERS, REGISTRATIONS)),
    ("settings.modem", "Modems", MODEM_FIELDS, ()),
    ("settings.routing", "Routing", ROUTING_FIELDS, (RULES,)),
    ("settings.delivery", "Delivery", DELIVERY_FIELDS, ()),
]


# -- shared plumbing ------------------------------------------------------------------------------
def running() -> Config:
    return current_app.config["FAXBRIDGE"]


def load_doc() -> ConfigDoc:
    return ConfigDoc.for_config(running())


def save_and_reload(doc: ConfigDoc) -> tuple[list[str], str]:
    """Validate and write; then ask the daemon to apply it.  (errors, message for the owner)."""
    try:
        cfg = doc.save()
    except ConfigError as e:
        return e.errors, ""
    except OSError as e:
        return [f"{doc.path}: cannot write: {e.strerror or e}"], ""
    log.info("configuration saved to %s", doc.path)
    return [], reload_daemon(cfg)


def reload_daemon(cfg: Config) -> str:
    """Ask the daemon to reload; the outcome in words (a daemon that is down is not an error)."""
    from appliance.control import ControlClient, ControlError

    from appliance.restarts import words
    from appliance.web import pending

    sock = running().path(running().system.control_socket)
    web = pending.web_items()  # what this web process started with against the file just saved
    later = f" Waiting for a restart: {words(web)} (the Restart button is at the top of every page)." if web else ""
    try:
        reply = ControlClient(sock, timeout=10.0).request({"cmd": "reload"})
    except ControlError:
        pending.note_daemon([])
        return "Saved. The fax service is not running; it will use these settings when it starts." + later
    pending.note_daemon(None)  # the banner asks the daemon afresh on the next page
    if not reply.get("ok"):
        return f"Saved, but the fax service did not apply it: {reply.get('error', 'unknown error')}"
    restart = [str(r) for r in reply.get("restart") or []]
    waiting = restart + [w for w in web if w not in restart]
    if waiting:
        return (f"Saved and applied, except {words(waiting)}, which only a restart puts into effect "
                "(the Restart button is at the top of every page).")
    return "Saved and applied; calls in progress were not disturbed."


def placed_errors(errors: list[str], ctx: dict[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The template's error context: each message once, beside the field the page shows for it
    (``field_errors``), the rest for the top (``page_errors``), all in the page's words."""
    shown = formerrors.shown_keys(ctx.get("fields") or (), ctx.get("entries") or (), ctx.get("rows"), extra)
    placed = formerrors.place(errors, shown)
    return {"errors": errors, "field_errors": placed.fields, "page_errors": placed.page}


def _page(template: str, section: str, **ctx: Any) -> tuple[str, int]:
    errors = ctx.pop("errors", [])
    ctx.setdefault("doc_path", str(config_file(running())))
    return render_template(template, section=section, sections=SECTIONS,
                           **placed_errors(errors, ctx, ("test_to",)), **ctx), 400 if errors else 200


# -- pages ----------------------------------------------------------------------------------------
@bp.get("/")
def index() -> Response:
    return redirect(url_for("settings.system"))


def _simple(section: str, fields: list[Field], template: str = "settings_form.html",
            entries: tuple[EntrySpec, ...] = (), extra: Callable[[ConfigDoc], dict[str, Any]] | None = None,
            title: str = "", intro: str = "") -> tuple[str, int] | Response:
    """GET shows the file's values; POST applies, validates, writes, reloads (or shows errors)."""
    try:
        doc = load_doc()
    except TomlEditError as e:
        return _page("settings_broken.html", section, problem=str(e), title=title, errors=[str(e)])
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
    return _page(template, section, title=title, intro=intro, fields=fields, values=values,
                 secrets=secrets_state(doc, fields), entries=entries, rows=rows, errors=errors,
                 **(extra(doc) if extra else {}))


@bp.route("/system", methods=["GET", "POST"])
def system() -> Any:
    return _simple("system", SYSTEM_FIELDS, title="System",
                   intro="The host name and time zone are stored here; applying them to the operating "
                         "system is done by the appliance image when it starts, not by this page.")


@bp.route("/sip", methods=["GET", "POST"])
def sip() -> Any:
    return _simple("sip", SIP_FIELDS, "settings_sip.html", (PEERS, REGISTRATIONS), title="SIP",
                   intro="How gateways and PBXs reach the appliance. Peers, limits and registrations apply "
                         "at once (to the next call); listeners and TLS files after a restart.")


@bp.route("/modem", methods=["GET", "POST"])
def modem() -> Any:
    return _simple("modem", MODEM_FIELDS, "settings_modem.html", title="Modems",
                   extra=lambda doc: {"detected": detected_modems()},
                   intro="Serial fax modems. Idle lines restart with new settings at once; a line in a "
                         "call keeps its settings until the call ends.")


@bp.route("/delivery", methods=["GET", "POST"])
def delivery() -> Any:
    return _simple("delivery", DELIVERY_FIELDS, "settings_delivery.html", title="Delivery",
                   extra=lambda doc: {"test_to": _default_test_to(doc), "starttls": _starttls_in_effect(doc)},
                   intro="Where received faxes go. Passwords and client secrets are kept in secrets.toml "
                         "and never shown again; leave a secret field empty to keep it.")


def _starttls_in_effect(doc: ConfigDoc) -> str:
    """What delivery.starttls means for the file as it is (its default depends on the server)."""
    try:
        return doc.validate().delivery.starttls_in_effect()
    except ConfigError:
        return ""


def _default_test_to(doc: ConfigDoc) -> str:
    return str(doc.get("delivery", "admin") or doc.get("routing", "default") or "")


@bp.route("/routing", methods=["GET", "POST"])
def routing() -> Any:
    if request.method == "POST" and request.form.get("action") == "try":
        return _try_route()
    return _simple("routing", ROUTING_FIELDS, "settings_routing.html", (RULES,), title="Routing",
                   extra=lambda doc: {"probe": {}, "decision": None},
                   intro="Which mailbox gets a fax: the first matching rule, else the called number, "
                         "else the default mailbox.")


PROBE_KEYS = ("called", "caller", "tsi", "line", "um")


def _try_route() -> tuple[str, int]:
    """"Which rule would this call match?" on the rules as edited, nothing saved."""
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
            decision = route(cfg.routing, called_number=probe["called"], caller_number=probe["caller"],
                             remote_ident=probe["tsi"], line=probe["line"], um_recipient=probe["um"])
    page, _ = _page("settings_routing.html", "routing", title="Routing", intro="", fields=ROUTING_FIELDS,
                    values=form_values(ROUTING_FIELDS, request.form), secrets={}, entries=(RULES,),
                    rows={RULES.prefix: submitted_rows(RULES, request.form, doc)}, errors=errors,
                    probe=probe, decision=decision, tried=True)
    return page, 400 if errors else 200


# -- delivery test ---------------------------------------------------------------------------------
@dataclass
class TestOutcome:
    ok: bool
    summary: str
    detail: str = ""
    advice: str = ""


def send_test_message(cfg: Config, to: str, timeout: float = TEST_MESSAGE_TIMEOUT) -> TestOutcome:
    """One demo fax message through ``cfg``'s delivery (saved or not), as ``faxbridge
    test-delivery`` sends it, in a worker thread so a silent server costs the page at most
    ``timeout`` seconds.  The outcome in plain words, secrets scrubbed."""
    from appliance import localtime
    from appliance.delivery import oauth
    from appliance.delivery.advice import advise_exception, advise_text
    from appliance.delivery.message import render_message
    from appliance.delivery.queue import send_via_backend
    from appliance.delivery.smtp import DeliveryError
    from appliance.delivery.trial import trial_fax

    fax, image = trial_fax()
    msg = render_message(fax, to, from_addr=cfg.delivery.from_, image=image,
                         message_id=f"<{fax.uid}@faxbridge.test-delivery>",
                         tz=localtime.zone(cfg.system.timezone))

    def work() -> str:
        if cfg.delivery.uses_oauth:
            oauth.get_token(cfg.delivery)
        return send_via_backend(cfg.delivery, msg, to, cfg.path)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faxbridge-test-message")
    scrub = cfg.delivery.scrub
    try:
        accepted = pool.submit(work).result(timeout=timeout)
    except FutureTimeout:
        return TestOutcome(False, f"No answer within {timeout:g} seconds.",
                           advice=advise_text("timed out").text)
    except DeliveryError as e:
        text = scrub(str(e))
        return TestOutcome(False, "The test message was not accepted.", text, advise_text(text).text)
    except (OSError, ValueError) as e:
        text = scrub(str(e))
        return TestOutcome(False, "The test message could not be sent.", text, advise_exception(e).text)
    finally:
        pool.shutdown(wait=False)
    return TestOutcome(True, f"It works: the test message to {to} was accepted. Look for it in that mailbox.",
                       scrub(accepted))


@bp.post("/delivery/test")
def delivery_test() -> Any:
    """Send a test message with the settings as typed (not saved)."""
    doc = load_doc()
    errors: list[str] = []
    apply_fields(doc, DELIVERY_FIELDS, request.form, errors)
    to = request.form.get("test_to", "").strip()
    outcome = None
    if not to or "@" not in to or any(c in to for c in "\r\n<>,; "):
        errors.append("test_to: give one mail address to send the test message to")
    if not errors:
        try:
            cfg = doc.validate()
        except ConfigError as e:
            errors = e.errors
        else:
            outcome = send_test_message(cfg, to)
    page, code = _page("settings_delivery.html", "delivery", title="Delivery", intro="",
                       fields=DELIVERY_FIELDS, values=form_values(DELIVERY_FIELDS, request.form),
                       secrets=secrets_state(doc, DELIVERY_FIELDS), entries=(), rows={}, errors=errors,
                       test_to=to, outcome=outcome)
    return page, code


# -- modems -----------------------------------------------------------------------------------------
#: where devices are looked for (a test may point it elsewhere)
DEV = Path("/dev")


def detected_modems(dev: Path | None = None) -> list[dict[str, str]]:
    """Serial devices that may be modems: /dev/serial/by-id links first (stable names), then
    ttyUSB/ttyACM nodes that no such link names."""
    dev = dev or DEV
    found: list[dict[str, str]] = []
    seen: set[str] = set()
    for link in sorted(glob.glob(str(dev / "serial" / "by-id" / "*"))):
        node = os.path.realpath(link)
        seen.add(node)
        found.append({"path": link, "node": node, "name": Path(link).name})
    for pattern in ("ttyUSB*", "ttyACM*"):
        for node in sorted(glob.glob(str(dev / pattern))):
            if os.path.realpath(node) not in seen:
                found.append({"path": node, "node": node, "name": Path(node).name})
    return found


def control_request(cmd: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """A request to the daemon; a daemon that is down gives {"ok": False, "down": True, ...}."""
    from appliance.control import ControlClient, ControlError, DaemonUnavailable

    sock = running().path(running().system.control_socket)
    try:
        return ControlClient(sock, timeout=timeout).request(cmd)
    except DaemonUnavailable as e:
        log.info("control request %s: %s", cmd.get("cmd"), e)
        return {"ok": False, "down": True, "error": "The fax service is not running, so it cannot do this now "
                                                    "(the System page shows its state and log)."}
    except ControlError as e:
        return {"ok": False, "error": str(e)}


@bp.post("/modem/probe")
def modem_probe() -> Any:
    device = request.form.get("device", "")
    reply = control_request({"cmd": "probe-modem", "device": device}, timeout=40.0)
    flash(_probe_words(device, reply))
    return redirect(request.form.get("back") if request.form.get("back") in _BACKS else url_for("settings.modem"))


_BACKS = ("/settings/modem", "/setup/lines")


def _probe_words(device: str, reply: dict[str, Any]) -> str:
    if not reply.get("ok"):
        return f"Probe of {device}: {reply.get('error', 'failed')}"
    return f"Probe of {device}: {reply.get('message') or ('found a modem' if reply.get('found') else 'no modem')}"


# -- SIP certificate upload ------------------------------------------------------------------------
@bp.post("/sip/certificate")
def sip_certificate() -> Any:
    """Store an uploaded certificate chain and key in the web state dir and point sip.tls_* at them,
    after checking that they are PEM and belong together."""
    cert = request.files.get("cert")
    key = request.files.get("key")
    if cert is None or key is None or not cert.filename or not key.filename:
        flash("Choose both the certificate file and its private key file.")
        return redirect(url_for("settings.sip"))
    cert_data, key_data = cert.read(256 * 1024), key.read(256 * 1024)
    problem = check_cert_pair(cert_data, key_data)
    if problem:
        flash(f"Not stored: {problem}")
        return redirect(url_for("settings.sip"))
    tls_dir = running().path(running().web.state_dir) / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    from appliance.web.tomledit import atomic_write
    atomic_write(tls_dir / "sip-cert.pem", cert_data.decode("ascii"), 0o644)
    atomic_write(tls_dir / "sip-key.pem", key_data.decode("ascii"), 0o600)
    doc = load_doc()
    doc.set("sip", "tls_cert", str((tls_dir / "sip-cert.pem").resolve()))
    doc.set("sip", "tls_key", str((tls_dir / "sip-key.pem").resolve()))
    errors, message = save_and_reload(doc)
    flash(f"Not stored: {formerrors.as_text(errors)}" if errors else "Certificate stored. " + message)
    return redirect(url_for("settings.sip"))


def check_cert_pair(cert: bytes, key: bytes) -> str | None:
    """Why this certificate and key cannot be used together, or None."""
    if b"-----BEGIN" not in cert or b"-----BEGIN" not in key:
        return "both files must be PEM (text starting with -----BEGIN)"
    try:
        cert.decode("ascii"), key.decode("ascii")
    except UnicodeDecodeError:
        return "both files must be PEM text"
    with tempfile.TemporaryDirectory() as d:
        c, k = Path(d) / "c.pem", Path(d) / "k.pem"
        c.write_bytes(cert)
        k.write_bytes(key)
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(c, k, password=refuse_passphrase)
        except EncryptedKey:
            return UPLOAD_ADVICE
        except ssl.SSLError as e:
            return f"the certificate and key do not load together ({e.reason or e})"
    return None


# -- backup and restore -----------------------------------------------------------------------------
@bp.get("/backup")
def backup() -> Any:
    return _backup_page()


def _backup_page(errors: list[str] | None = None, **ctx: Any) -> tuple[str, int]:
    from appliance.backup.fileformat import MIN_PASSPHRASE

    return _page("settings_backup.html", "backup", title="Backup and restore", errors=errors or [],
                 min_passphrase=MIN_PASSPHRASE, **ctx)


@bp.get("/backup/config.toml")
def backup_download() -> Response:
    """The configuration without any secret (the safe default)."""
    text = load_doc().without_secrets()
    return _attachment(text, "faxbridge.toml")


@bp.post("/backup/encrypted")
def backup_encrypted() -> Any:
    """Everything needed to get this box back on a fresh card (configuration, secrets, the
    owner's certificates), sealed with a passphrase the owner types twice (appliance/backup/).
    Secrets never leave the box in any other form."""
    from appliance.backup import bundle
    from appliance.backup.fileformat import passphrase_problem
    from appliance.web import auth

    passphrase = request.form.get("passphrase", "")
    problem = passphrase_problem(passphrase, request.form.get("confirm", ""))
    if problem:
        page, _ = _backup_page([f"passphrase: {problem}"])
        return page, 400
    try:
        with auth.store().check_slot():  # scrypt takes 32 MiB and a core, like a password check
            data = bundle.make(running(), passphrase)
    except auth.Busy as e:
        page, _ = _backup_page([f"passphrase: {e}"])
        return page, 503
    except (OSError, UnicodeDecodeError, ValueError) as e:
        page, _ = _backup_page([f"The backup could not be made: {e}"])
        return page, 500
    log.info("encrypted backup downloaded (%d bytes)", len(data))
    resp = Response(data, mimetype="application/octet-stream")
    resp.headers["Content-Disposition"] = f'attachment; filename="{bundle.filename(running())}"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _attachment(text: str, name: str) -> Response:
    resp = Response(text, mimetype="application/toml")
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _moves_web_state(text: str) -> str | None:
    """Why restoring ``text`` would move web.state_dir (which a restore may not), or None."""
    from appliance.backup.bundle import web_state_move

    return web_state_move(running(), text)


@dataclass
class RestoreOutcome:
    """What a restore did: errors (nothing written) or what was restored and the reload's words."""

    errors: list[str]
    restored: list[str]
    message: str = ""
    busy: bool = False


def restore_upload(upload: Any, passphrase: str) -> RestoreOutcome:
    """Restore an uploaded file: an encrypted backup (.fxbk, with its passphrase) or a plain
    configuration (.toml).  Checked completely first; nothing is written unless all of it is valid."""
    from appliance.backup import bundle
    from appliance.backup.contents import ContentError, Contents
    from appliance.backup.fileformat import BackupError, WrongPassphrase, looks_sealed, open_sealed, parse
    from appliance.web import auth

    if upload is None or not upload.filename:
        return RestoreOutcome(["file: choose a backup (.fxbk) or a configuration file (.toml) to restore"], [])
    data = upload.read(MAX_RESTORE + 1)
    if len(data) > MAX_RESTORE:
        return RestoreOutcome([f"file: larger than {MAX_RESTORE // 1024} KiB; this is not a backup"], [])
    if not looks_sealed(data) and not upload.filename.lower().endswith(bundle.SUFFIX):
        return _restore_plain(data)
    try:
        sealed = parse(data)  # what needs no passphrase is said first
        if not passphrase:
            return RestoreOutcome(["passphrase: this backup is encrypted: type the passphrase it was made with"], [])
        with auth.store().check_slot():
            contents = Contents.from_bytes(open_sealed(sealed, passphrase))
        done = bundle.restore(running(), contents)
    except auth.Busy as e:
        return RestoreOutcome([f"passphrase: {e}"], [], busy=True)
    except BackupError as e:
        key = "passphrase" if isinstance(e, WrongPassphrase) else "file"
        return RestoreOutcome([f"{key}: the backup cannot be opened: {e}"], [])
    except (ContentError, bundle.RestoreRefused, TomlEditError) as e:
        return RestoreOutcome([f"file: {e}"], [])
    except ConfigError as e:
        return RestoreOutcome(e.errors, [])
    except OSError as e:
        return RestoreOutcome([f"{config_file(running())}: cannot write: {e.strerror or e}"], [])
    log.info("backup restored: %s", ", ".join(done.restored))
    if done.web_certificate:
        reload = current_app.extensions.get("faxbridge_tls_reload")
        if reload is not None:
            cert = bundle.tls_dir(running())
            reload(str(cert / "owner-cert.pem"), str(cert / "owner-key.pem"))
    return RestoreOutcome([], done.restored, reload_daemon(done.config))


def _restore_plain(data: bytes) -> RestoreOutcome:
    """A plain configuration file (the download without passwords, or one written by hand)."""
    try:
        text = data.decode("utf-8")
        moved = _moves_web_state(text)
        if moved:
            raise TomlEditError(moved)
        cfg = load_doc().restore(text)
    except UnicodeDecodeError:
        return RestoreOutcome(["file: not a text file"], [])
    except TomlEditError as e:
        return RestoreOutcome([f"file: {e}"], [])
    except ConfigError as e:
        return RestoreOutcome(e.errors, [])
    except OSError as e:
        return RestoreOutcome([f"{config_file(running())}: cannot write: {e.strerror or e}"], [])
    return RestoreOutcome([], ["the configuration (faxbridge.toml)"], reload_daemon(cfg))


@bp.post("/restore")
def restore() -> Any:
    """Replace the configuration with an uploaded backup, validated first: nothing is written
    unless the whole file is valid."""
    outcome = restore_upload(request.files.get("file"), request.form.get("passphrase", ""))
    if outcome.errors:
        page, _ = _backup_page(["Nothing was changed: the uploaded file cannot be restored."] + outcome.errors)
        return page, 503 if outcome.busy else 400
    flash("Restored " + ", ".join(outcome.restored) + ". " + outcome.message)
    return redirect(url_for("settings.backup"))


@bp.app_template_global("field_errors_for")
def field_errors_for(field_errors: dict[str, list[str]], key: str) -> list[str]:
    """The messages a field shows beside itself (already in the page's words, without the key)."""
    return list((field_errors or {}).get(key, []))
