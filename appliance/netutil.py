"""Which local address a peer reaches us on, for listeners bound to every interface."""

from __future__ import annotations

import functools
import ipaddress
import socket


def is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


@functools.lru_cache(maxsize=1024)
def route_source(remote_ip: str) -> str:
    """The source address the kernel's routing table picks for ``remote_ip`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in remote_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((remote_ip, 9))
        except OSError:
            return "::1" if family == socket.AF_INET6 else "127.0.0.1"
        return s.getsockname()[0]
