"""Which saved settings wait for a restart: those a process reads only when it starts, compared
between the configuration it loaded and the one saved now.

Paths are compared as the processes use them, resolved through ``Config.path``, never as typed:
``var/web`` read beside the working directory and ``web`` read beside ``var/faxbridge.toml`` are
one folder, and saying "restart needed" for it would be false.  The daemon answers for itself
(control ``restart-needed``); the web process compares its own loaded configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.config import Config

#: read by the daemon only at start (sockets, TLS context, spool, control socket, scheduling)
DAEMON_KEYS = (
    "sip.listen",
    "sip.rtp_ports",
    "sip.tls_cert",
    "sip.tls_key",
    "sip.tls_ca",
    "sip.tls_verify_client",
    "sip.user_agent",
    "spool.dir",
    "system.control_socket",
    "system.realtime_priority",
)
#: read by the web process only at start
WEB_KEYS = (
    "web.enabled",
    "web.listen",
    "web.https",
    "web.cert_file",
    "web.key_file",
    "web.state_dir",
    "web.session_hours",
    "spool.dir",
    "system.control_socket",
)
#: keys holding a path ("" = not set)
PATH_KEYS = frozenset(
    {
        "sip.tls_cert",
        "sip.tls_key",
        "sip.tls_ca",
        "spool.dir",
        "system.control_socket",
        "web.cert_file",
        "web.key_file",
        "web.state_dir",
    }
)

#: each key in the words of the page that sets it
LABELS = {
    "sip.listen": "the SIP listeners",
    "sip.rtp_ports": "the RTP ports",
    "sip.tls_cert": "the SIP TLS certificate",
    "sip.tls_key": "the SIP TLS key",
    "sip.tls_ca": "the CA bundle for peers' certificates",
    "sip.tls_verify_client": "requiring client certificates",
    "sip.user_agent": "the SIP user agent name",
    "sip.registrations": "the registrations",
    "spool.dir": "the spool folder",
    "system.control_socket": "the control socket",
    "system.realtime_priority": "the real-time priority",
    "web.enabled": "switching the web page on or off",
    "web.listen": "the web page's address",
    "web.https": "HTTPS on or off",
    "web.cert_file": "the web page's certificate file",
    "web.key_file": "the web page's key file",
    "web.state_dir": "the web state folder",
    "web.session_hours": "how long a login lasts",
}


def _value(cfg: Config, key: str) -> Any:
    section, name = key.split(".", 1)
    value = getattr(getattr(cfg, section), name)
    if key in PATH_KEYS:
        return cfg.path(value).resolve() if value else Path()
    return list(value) if isinstance(value, tuple) else value


def changed(loaded: Config, saved: Config, keys: tuple[str, ...]) -> list[str]:
    """The keys whose value in effect differs between ``loaded`` and ``saved``."""
    return [k for k in keys if _value(loaded, k) != _value(saved, k)]


def daemon_changes(loaded: Config, saved: Config) -> list[str]:
    return changed(loaded, saved, DAEMON_KEYS)


def web_changes(loaded: Config, saved: Config) -> list[str]:
    return changed(loaded, saved, WEB_KEYS)


def label(item: str) -> str:
    """One pending item in words: a key's label, or the daemon's own words for the rest
    ("modem.devices: /dev/ttyUSB0 is in a call" -> "the modem /dev/ttyUSB0 (in a call now)")."""
    if item in LABELS:
        return LABELS[item]
    key, sep, rest = item.partition(": ")
    if key == "modem.devices" and sep:
        return f"the modem {rest.removesuffix(' is in a call')} (in a call now)"
    return LABELS.get(key, item)


def words(items: list[str]) -> str:
    """ "the SIP listeners and the RTP ports" (each once, in order)."""
    said = list(dict.fromkeys(label(i) for i in items))
    return said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1] if said else ""
