"""Run the web UI in its own process under waitress (a production WSGI server, pure Python).

There is no login yet, so the default listen address is loopback; a non-loopback address is
allowed only because the owner configured it, and is logged loudly.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging

import waitress

from appliance.config import Config, parse_hostport
from appliance.web.app import create_app

log = logging.getLogger("faxbridge.web")

#: a few threads: page renders may block one for a moment, the box has 4 cores at most
THREADS = 4


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(config: Config) -> None:
    """Serve the UI on ``config.web.listen`` until the process is stopped."""
    host, port = parse_hostport(config.web.listen, 8080)
    if not is_loopback(host):
        log.warning("web UI listening on %s:%d, reachable from the network, and has no login yet",
                    host, port)
    app = create_app(config)
    log.info("web UI on http://%s:%d/", f"[{host}]" if ":" in host else host, port)
    waitress.serve(app, host=host, port=port, threads=THREADS, ident="Faxbridge",
                   clear_untrusted_proxy_headers=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m appliance.web [-c faxbridge.toml]``"""
    parser = argparse.ArgumentParser(prog="python -m appliance.web", description=__doc__)
    parser.add_argument("-c", "--config", help="configuration file (default: built-in defaults)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = Config.load(args.config) if args.config else Config()
    serve(config)


if __name__ == "__main__":
    main()
