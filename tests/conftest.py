"""Shared test helpers: free loopback ports; skips that fail under CI (tests/provided.py)."""

from __future__ import annotations

import socket

from tests.provided import pytest_configure, pytest_runtest_setup  # noqa: F401 (pytest hooks)


def free_port(kind: str = "both") -> int:
    """A port free on 127.0.0.1 for UDP and TCP alike (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            if kind == "tcp":
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")
