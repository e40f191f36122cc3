"""Run the web UI in its own process under cheroot (a production WSGI server with TLS).

HTTPS is on by default with a certificate generated on first start (``tls.py``); the owner's
own certificate wins when configured. Plain HTTP is possible (``web.https = false``), e.g. behind
a reverse proxy; a listen address beyond loopback is logged.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import ssl
import sys
import threading
from typing import cast

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from appliance.config import Config, ConfigError, parse_hostport
from appliance.startup import private_files
from appliance.tlskeys import EncryptedKey, load_chain, refuse_passphrase
from appliance.web.app import create_app
from appliance.web.auth import largest_body
from appliance.web.tls import active_paths

log = logging.getLogger("faxbridge.web")

#: page renders and a few live-status streams (each open dashboard holds one thread)
THREADS = 12
#: request line and headers together (a browser sends 1-2 KiB); beyond, cheroot answers 413
MAX_HEADER_BYTES = 16 * 1024
#: a restart of the web process waits this long for its reply to leave, seconds
RESTART_DELAY = 0.5
#: the web process's exit status when it ends to be started again with new settings: not 0, so
#: supervisor (autorestart=unexpected) and systemd (Restart=on-failure) start it again, and named
#: in the unit's SuccessExitStatus=/RestartForceExitStatus= so systemd does not count it a failure
RESTART_EXIT = 75


#: errnos of a peer that went away: a closed tab, a browser that gave up on a handshake
GONE_ERRNOS = frozenset(
    {
        errno.EPIPE,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ENOTCONN,
        errno.ESHUTDOWN,
        ssl.SSL_ERROR_EOF,
        ssl.SSL_ERROR_ZERO_RETURN,
    }
)
#: cheroot's own words for a peer that went away
GONE_MESSAGES = (
    "peer dropped the TLS connection suddenly, during handshake",
    "Got a connection error while handling a connection",
)


def peer_went_away(msg: str, exc: BaseException | None) -> bool:
    """Whether cheroot reports what browsers do every day rather than a fault: a TLS handshake
    abandoned (the self-signed certificate is not trusted yet: SSLV3_ALERT_CERTIFICATE_UNKNOWN),
    or a connection closed mid-reply (a dashboard tab's live stream when the tab closes)."""
    if any(m in msg for m in GONE_MESSAGES):
        return True
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError)):
        return True
    return isinstance(exc, OSError) and exc.errno in GONE_ERRNOS


class Server(wsgi.Server):
    """cheroot's server, logging through ``logging`` (not bare stderr): a peer that went away is
    one debug line; every other error keeps its level and its traceback."""

    #: set when the web process stops serving to be started again (``restart_soon``)
    restarting = False

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        exc = sys.exc_info()[1]
        if peer_went_away(str(msg), exc):
            log.debug("client went away: %s", msg or repr(exc))
            return
        log.log(level, "%s", msg, exc_info=exc if traceback and exc is not None else None)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_server(config: Config) -> tuple[Server, str]:
    """The configured server and its base URL (not started)."""
    host, port = parse_hostport(config.web.listen, 8080)
    app = create_app(config)
    server = Server((host, port), app, numthreads=THREADS, server_name="Faxbridge", shutdown_timeout=2)
    # bounded before the app sees anything (the largest body: an update bundle); the app then holds a
    # body to 16 KiB until login, and each endpoint to its own limit after (auth.body_limit)
    server.max_request_header_size = MAX_HEADER_BYTES
    server.max_request_body_size = largest_body()
    scheme = "http"
    if config.web.https:
        if config.web.cert_file:
            cert, key = config.path(config.web.cert_file), config.path(config.web.key_file)
        else:
            cert, key = active_paths(config.path(config.web.state_dir), host, config.system.hostname)
        try:
            # cheroot passes the password to SSLContext.load_cert_chain, which also takes a callback;
            # its stubs allow only str | bytes | None
            adapter = BuiltinSSLAdapter(str(cert), str(key), private_key_password=cast(bytes, refuse_passphrase))
        except EncryptedKey as e:
            setting = "web.key_file" if config.web.cert_file else "the HTTPS key"
            raise ConfigError([f"{setting} {key}: {e}"]) from None
        adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
        server.ssl_adapter = adapter

        def reload(cert_file: str, key_file: str) -> None:
            """An uploaded certificate takes effect for the next connection, without a restart."""
            load_chain(adapter.context, cert_file, key_file)

        app.extensions["faxbridge_tls_reload"] = reload
        scheme = "https"

    def restart_soon() -> None:
        """New web settings: stop serving once this reply has left; the process then ends and its
        supervisor (systemd, supervisor or `faxbridge run`) starts it with the saved file."""
        server.restarting = True
        threading.Timer(RESTART_DELAY, server.stop).start()

    app.extensions["faxbridge_restart_web"] = restart_soon
    shown = f"[{host}]" if ":" in host else host
    return server, f"{scheme}://{shown}:{port}/"


def serve(config: Config) -> int:
    """Serve the UI on ``config.web.listen`` until the process is stopped; the exit status:
    RESTART_EXIT when it stopped to be started again, else 0."""
    host, _ = parse_hostport(config.web.listen, 8080)
    server, url = build_server(config)
    if not is_loopback(host):
        log.info("web UI reachable from the network at %s (login required)", url)
    log.info("web UI on %s", url)
    try:
        server.safe_start()
    finally:
        server.stop()
    return RESTART_EXIT if server.restarting else 0


def main(argv: list[str] | None = None) -> None:
    """``python -m appliance.web [-c faxbridge.toml]``"""
    from appliance.startup import CONFIG_HELP, STATE_DIR_HELP, load_args

    parser = argparse.ArgumentParser(prog="python -m appliance.web", description=__doc__)
    parser.add_argument("-c", "--config", help=CONFIG_HELP)
    parser.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_HELP)
    args = parser.parse_args(argv)
    private_files()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code = serve(load_args(args))
    except ConfigError as e:
        for err in e.errors:
            print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    main()
