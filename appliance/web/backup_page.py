"""The Backup page: download the configuration (without secrets) or everything sealed with a
passphrase (appliance/backup/), and restore either; the wizard's first step restores through
``restore_upload`` too.  Nothing is written unless the whole upload is valid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, flash, redirect, request, url_for

from appliance.config import ConfigError, config_file
from appliance.web.configpage import load_doc, page, reload_daemon, running
from appliance.web.tomledit import TomlEditError

log = logging.getLogger("faxbridge.web")

#: biggest configuration backup accepted for restore, bytes
MAX_RESTORE = 1024 * 1024


def backup() -> Any:
    return _backup_page()


def _backup_page(errors: list[str] | None = None, **ctx: Any) -> tuple[str, int]:
    from appliance.backup.fileformat import MIN_PASSPHRASE

    return page(
        "settings_backup.html",
        "backup",
        title="Backup and restore",
        errors=errors or [],
        min_passphrase=MIN_PASSPHRASE,
        **ctx,
    )


def backup_download() -> Response:
    """The configuration without any secret (the safe default)."""
    text = load_doc().without_secrets()
    return _attachment(text, "faxbridge.toml")


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
        html, _ = _backup_page([f"passphrase: {problem}"])
        return html, 400
    try:
        with auth.store().check_slot():  # scrypt takes 32 MiB and a core, like a password check
            data = bundle.make(running(), passphrase)
    except auth.Busy as e:
        html, _ = _backup_page([f"passphrase: {e}"])
        return html, 503
    except (OSError, UnicodeDecodeError, ValueError) as e:
        html, _ = _backup_page([f"The backup could not be made: {e}"])
        return html, 500
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


def restore() -> Any:
    """Replace the configuration with an uploaded backup, validated first: nothing is written
    unless the whole file is valid."""
    outcome = restore_upload(request.files.get("file"), request.form.get("passphrase", ""))
    if outcome.errors:
        html, _ = _backup_page(["Nothing was changed: the uploaded file cannot be restored."] + outcome.errors)
        return html, 503 if outcome.busy else 400
    flash("Restored " + ", ".join(outcome.restored) + ". " + outcome.message)
    return redirect(url_for("settings.backup"))
