"""The three things a tried system must show before it is committed, asked for real: the
daemon's control socket answers ``status``, the web UI answers /healthz, the spool's database
opens read-only and answers a query."""

from __future__ import annotations

import http.client
import ssl
from pathlib import Path

from appliance.config import Config, parse_hostport
from appliance.update.health import Check

TIMEOUT = 5.0


def daemon(cfg: Config) -> Check:
    from appliance.control import ControlClient, ControlError

    try:
        reply = ControlClient(cfg.path(cfg.system.control_socket), TIMEOUT).request({"cmd": "status"})
    except ControlError as e:
        return Check("fax service", False, f"the fax service did not answer ({e})")
    if not reply.get("ok"):
        return Check("fax service", False, f"the fax service answered with an error ({reply.get('error')})")
    return Check("fax service", True)


def web(cfg: Config) -> Check:
    if not cfg.web.enabled:
        return Check("web page", True, "the web UI is switched off")
    host, port = parse_hostport(cfg.web.listen, 8080)
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    try:
        if cfg.web.https:
            ctx = ssl.create_default_context()
            # our own box's own certificate on loopback: the check is "it answers", not who it is
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        try:
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            body = r.read(64)
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        return Check("web page", False, f"the web page did not answer on {host}:{port} ({e})")
    if r.status != 200 or body.strip() != b"ok":
        return Check("web page", False, f"the web page's /healthz answered {r.status}")
    return Check("web page", True)


def spool(cfg: Config) -> Check:
    from appliance.spool.store import Spool

    root = Path(cfg.path(cfg.spool.dir))
    try:
        s = Spool(root, readonly=True)
    except Exception as e:  # noqa: BLE001 - FileNotFoundError, sqlite3.Error: any way it cannot be opened
        return Check("spool", False, f"the spool could not be opened ({e})")
    try:
        s.count_faxes()
    except Exception as e:  # noqa: BLE001 - any failure to read it is the answer
        return Check("spool", False, f"the spool's database could not be read ({e})")
    finally:
        s.close()
    return Check("spool", True)


def all_checks(cfg: Config) -> list[Check]:
    return [daemon(cfg), web(cfg), spool(cfg)]
