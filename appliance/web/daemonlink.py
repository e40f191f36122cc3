"""The web process's line to the daemon: the control socket (decision 0009) as the pages use it.

Every page must still render when the daemon is down (decision 0003): callers get ``None`` and
the reason instead of an exception.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import current_app

from appliance.config import Config
from appliance.control import ControlClient, ControlError, DaemonUnavailable

log = logging.getLogger("faxbridge.web")

#: a page waits at most this long for the daemon's status
STATUS_TIMEOUT = 2.0


def socket_path(config: Config | None = None) -> Path:
    cfg = config or current_app.config["FAXBRIDGE"]
    return cfg.path(cfg.system.control_socket)


def client(timeout: float = STATUS_TIMEOUT) -> ControlClient:
    return ControlClient(socket_path(), timeout)


def ask(cmd: dict[str, Any], timeout: float = STATUS_TIMEOUT) -> tuple[dict[str, Any] | None, str]:
    """The daemon's reply, or (None, why it could not be asked); a refused command is a reply."""
    try:
        return client(timeout).request(cmd), ""
    except ControlError as e:
        return None, str(e)


def status() -> tuple[dict[str, Any] | None, str]:
    """The daemon's live status, or (None, "the daemon is not running ...")."""
    reply, why = ask({"cmd": "status"})
    if reply is not None and not reply.get("ok"):
        return None, str(reply.get("error", "the daemon refused the status request"))
    return reply, why


def control_request(cmd: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """A request a page makes of the daemon (probe a modem, send a test fax); a daemon that is
    down gives {"ok": False, "down": True, "error": words for the owner}."""
    try:
        return client(timeout).request(cmd)
    except DaemonUnavailable as e:
        log.info("control request %s: %s", cmd.get("cmd"), e)
        return {
            "ok": False,
            "down": True,
            "error": "The fax service is not running, so it cannot do this now "
            "(the System page shows its state and log).",
        }
    except ControlError as e:
        return {"ok": False, "error": str(e)}
