""" "Restart needed" on every page, for as long as it is true.

Each process answers for itself (appliance/restarts.py): the web process compares the
configuration it started with (``current_app.config["FAXBRIDGE"]``, never replaced) with the file
as saved now; the daemon is asked over the control socket (``restart-needed``).  Both answers are
kept briefly, so a page costs at most one small request to the daemon every few seconds, and a
save or a restart refreshes them at once.  A daemon that is not running waits for nothing: it
reads the saved file when it starts.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from appliance.config import Config, ConfigError, config_file
from appliance.restarts import web_changes, words

#: how long the daemon's answer is believed, seconds
DAEMON_TTL = 5.0
#: a page waits at most this long for that answer
DAEMON_TIMEOUT = 0.5


@dataclass
class PendingRestarts:
    """One web app's memory of what waits for a restart (threads share it: cheroot's workers)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    #: (file signature, the saved Config or None when unreadable)
    saved: tuple[tuple[Any, ...], Config | None] | None = None
    #: (monotonic time asked, the daemon's pending items)
    daemon: tuple[float, list[str]] | None = None


def _state() -> PendingRestarts:
    return current_app.extensions.setdefault("faxbridge_pending", PendingRestarts())


def _signature(path: os.PathLike[str]) -> tuple[Any, ...]:
    out: list[Any] = []
    for p in (os.fspath(path), os.path.join(os.path.dirname(os.fspath(path)), "secrets.toml")):
        try:
            st = os.stat(p)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def saved_config(running: Config) -> Config | None:
    """The configuration file as saved now (loaded again only when it changed); None when there
    is none yet (nothing saved: nothing waits) or it does not load (its page says why)."""
    path = config_file(running)
    sig = _signature(path)
    state = _state()
    with state.lock:
        if state.saved is not None and state.saved[0] == sig:
            return state.saved[1]
    cfg: Config | None = None
    if sig[0] is not None:
        try:
            cfg = Config.load(path, state_dir=running.base_dir)
        except ConfigError:
            cfg = None
    with state.lock:
        state.saved = (sig, cfg)
    return cfg


def web_items() -> list[str]:
    running: Config = current_app.config["FAXBRIDGE"]
    saved = saved_config(running)
    return web_changes(running, saved) if saved is not None else []


def daemon_items() -> list[str]:
    """What the daemon says waits for its restart (asked at most every DAEMON_TTL seconds)."""
    from appliance.web import daemonlink

    state = _state()
    now = time.monotonic()
    with state.lock:
        if state.daemon is not None and now - state.daemon[0] < DAEMON_TTL:
            return list(state.daemon[1])
    reply, _ = daemonlink.ask({"cmd": "restart-needed"}, timeout=DAEMON_TIMEOUT)
    items = [str(i) for i in reply.get("restart", [])] if reply is not None and reply.get("ok") else []
    note_daemon(items)
    return items


def note_daemon(items: list[str] | None) -> None:
    """The daemon just said what waits (a reload's reply), or None: ask again on the next page."""
    state = _state()
    with state.lock:
        state.daemon = None if items is None else (time.monotonic(), [str(i) for i in items])


def summary() -> dict[str, Any] | None:
    """For base.html: {"daemon": [...], "web": [...], "words": "..."} or None when nothing waits."""
    web = web_items()
    daemon = daemon_items()
    if not web and not daemon:
        return None
    return {"daemon": daemon, "web": web, "words": words(daemon + [w for w in web if w not in daemon])}
