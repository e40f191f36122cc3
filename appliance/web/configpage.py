"""What every configuration page shares (settings, wizard, backup): the running configuration,
its file as a document, saving it validated and asking the daemon to apply it, and the settings
page frame with each error placed beside its field.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app, render_template

from appliance.config import Config, ConfigError, config_file
from appliance.web import formerrors
from appliance.web.settings_fields import SECTIONS
from appliance.web.tomledit import ConfigDoc

log = logging.getLogger("faxbridge.web")


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
        return (
            f"Saved and applied, except {words(waiting)}, which only a restart puts into effect "
            "(the Restart button is at the top of every page)."
        )
    return "Saved and applied; calls in progress were not disturbed."


def placed_errors(errors: list[str], ctx: dict[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The template's error context: each message once, beside the field the page shows for it
    (``field_errors``), the rest for the top (``page_errors``), all in the page's words."""
    shown = formerrors.shown_keys(ctx.get("fields") or (), ctx.get("entries") or (), ctx.get("rows"), extra)
    placed = formerrors.place(errors, shown)
    return {"errors": errors, "field_errors": placed.fields, "page_errors": placed.page}


def page(template: str, section: str, **ctx: Any) -> tuple[str, int]:
    """A settings page: the section bar, the file's name, each error placed; 400 with errors."""
    errors = ctx.pop("errors", [])
    ctx.setdefault("doc_path", str(config_file(running())))
    return render_template(
        template, section=section, sections=SECTIONS, **placed_errors(errors, ctx, ("test_to",)), **ctx
    ), 400 if errors else 200
