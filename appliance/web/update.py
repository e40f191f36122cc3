"""The system page's Update card: upload a bundle, follow the install, read how it ended.

The web process runs as the service user and cannot install anything: it stores the bundle and
a request in ``<state>/update/`` (appliance/update/request.py) and root's faxbridge-update.service
does the rest, reporting in status.json, which this page reads and /system/update/status serves
to update.js.  The upload is streamed to the data partition: update.js sends the file as the raw
body (with the CSRF token as a header, and upload progress); without JavaScript the multipart
form works too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, flash, jsonify, redirect, request, url_for

from appliance.config import Config
from appliance.update import bootdir
from appliance.update.request import (
    MAX_BUNDLE,
    RequestError,
    busy_reason,
    pending,
    read_status,
    store_bundle,
    update_dir,
    write_request,
)
from appliance.update.slots import model_problem
from appliance.update.status import Status, as_dict
from appliance.web import auth

bp = Blueprint("update", __name__)

PHASE_WORDS = {
    "idle": "",
    "checking": "Checking the update file",
    "installing": "Installing",
    "rebooting": "Restarting into the new version",
    "trial": "Trying the new version",
    "committed": "Updated",
    "rolled_back": "Rolled back",
    "failed": "Not installed",
}


def _state_dir() -> Path:
    cfg: Config = current_app.config["FAXBRIDGE"]
    return Path(cfg.base_dir)


def refusal() -> str:
    """Why this box takes no update at all ("" when it does): a Pi 3 has no tryboot."""
    paths = current_app.config.get("FAXBRIDGE_MODEL_PATHS", bootdir.MODEL_PATHS)
    return model_problem(bootdir.read_model(tuple(paths)))


def card(errors: list[str] | None = None) -> dict[str, Any]:
    """What system.html's Update card shows."""
    state = _state_dir()
    st = read_status(state)
    return {
        "update": st,
        "update_words": PHASE_WORDS.get(st.phase, st.phase),
        "update_refused": refusal(),
        "update_pending": pending(state),
        "update_errors": errors or [],
        "update_max_mb": MAX_BUNDLE // (1024 * 1024),
    }


def _wants_json() -> bool:
    return request.mimetype != "multipart/form-data"


def _refuse(message: str, code: int) -> Any:
    if _wants_json():
        return jsonify(ok=False, error=message), code
    system_page = current_app.extensions["faxbridge_system_page"]
    return system_page(update_errors=[message]), code


@bp.post("/system/update")
def upload() -> Any:
    state = _state_dir()
    if why := refusal():
        return _refuse(f"Updates are not possible on this box: {why}", 409)
    if why := busy_reason(state):
        return _refuse(f"Not now: {why}. Wait until it has finished.", 409)
    if _wants_json():
        name = request.headers.get("X-File-Name", "")
        source = request.stream
    else:
        f = request.files.get("bundle")
        if f is None or not f.filename:
            return _refuse("Choose the update file (.raucb) first.", 400)
        name, source = f.filename, f.stream
    if not name.lower().endswith(".raucb"):
        return _refuse(f"{name or 'The file'} is not an update bundle: its name must end in .raucb.", 400)
    try:
        size = store_bundle(state, source, MAX_BUNDLE)
        write_request(state, "web")
    except RequestError as e:
        return _refuse(f"{name}: {e}. Nothing was changed.", 400)
    except OSError as e:
        return _refuse(
            f"{name}: could not be stored in {update_dir(state)} ({e.strerror or e}). Nothing was changed.", 500
        )
    if _wants_json():
        return jsonify(ok=True, size=size, status_url=url_for("update.status"))
    flash(
        f"{name} ({size / 1e6:.1f} MB) was received and is being installed. The box restarts when it is "
        "ready; this page then answers again in a few minutes."
    )
    return redirect(url_for("system.index") + "#update")


@bp.get("/system/update/status")
def status() -> Response:
    state = _state_dir()
    st: Status = read_status(state)
    out = as_dict(st)
    out.update(pending=pending(state), words=PHASE_WORDS.get(st.phase, st.phase), refused=refusal())
    return jsonify(out)


def init_app(app: Any, system_page: Callable[..., str]) -> None:
    """``system_page(update_errors=...)`` renders the page this card sits on (web/system.py, which
    itself asks ``card`` for the card): a refused upload shows that page with its reason."""
    app.extensions["faxbridge_system_page"] = system_page
    app.register_blueprint(bp)
    auth.LARGE_BODIES["update.upload"] = (MAX_BUNDLE, lambda: update_dir(_state_dir()))
