"""The time zone the pages show times in: ``system.timezone`` as the configuration file says now.

The web process keeps the configuration it started with, but the zone is one the owner sets in
the wizard and expects to see at once (the daemon applies it on reload too, for the mails).  So
it is read from the file, again only when the file changed (its mtime and size), not per request.
"""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path

from flask import current_app

from appliance import localtime
from appliance.config import Config, config_file

_lock = threading.Lock()


def current_zone() -> localtime.Zone:
    """The zone for this request's times (None: the system's)."""
    cfg: Config = current_app.config["FAXBRIDGE"]
    path = config_file(cfg)
    try:
        st = path.stat()
        key: tuple[object, ...] = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return localtime.zone(cfg.system.timezone)
    cache = current_app.extensions.setdefault("faxbridge_zone", {})
    with _lock:
        if cache.get("key") != key:
            cache["key"], cache["zone"] = key, _read(path, cfg)
        return cache["zone"]


def _read(path: Path, cfg: Config) -> localtime.Zone:
    """system.timezone from the file; the running configuration's when the file cannot be read."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return localtime.zone(cfg.system.timezone)
    system = data.get("system", {})
    name = system.get("timezone", "") if isinstance(system, dict) else ""
    return localtime.zone(name if isinstance(name, str) else "")


def format_time(ts: float | None, fmt: str = localtime.FULL) -> str:
    """The pages' ``when`` filter: ``localtime.format_time`` in the current zone."""
    return localtime.format_time(ts, current_zone(), fmt)
