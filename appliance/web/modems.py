"""The modems settings page's and the wizard's lines step's view of the serial devices: what is
plugged in, and a probe of one device by the daemon (which owns the ports).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from flask import flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from appliance.web.daemonlink import control_request

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


def modem_probe() -> ResponseReturnValue:
    device = request.form.get("device", "")
    reply = control_request({"cmd": "probe-modem", "device": device}, timeout=40.0)
    flash(_probe_words(device, reply))
    back = request.form.get("back")
    return redirect(back if back in _BACKS else url_for("settings.modem"))


_BACKS = ("/settings/modem", "/setup/lines")


def _probe_words(device: str, reply: dict[str, Any]) -> str:
    if not reply.get("ok"):
        return f"Probe of {device}: {reply.get('error', 'failed')}"
    return f"Probe of {device}: {reply.get('message') or ('found a modem' if reply.get('found') else 'no modem')}"
