"""`make bench`: a received fax in the mailbox after the caller hangs up, over loopback SMTP.

A real SMTP server (aiosmtpd, in a thread of this process) takes the daemon's ``smtp`` backend;
the sender, in this process too, notes when it sends its BYE (``SipEndpoint.hangup``), the
server when a message's DATA is complete: both on this process's monotonic clock. One call at
a time, so every message belongs to the call just ended.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller

from appliance.fax.sender import send_fax
from appliance.sip.transport import SipEndpoint


class Mailbox:
    """aiosmtpd handler: the monotonic time each message arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self.changed:
            self.arrivals.append(time.monotonic())
            self.changed.notify_all()
        return "250 2.0.0 Ok"

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.arrivals) >= count, timeout)


def start_server(port: int) -> tuple[Controller, Mailbox]:
    box = Mailbox()
    # a fixed greeting name: otherwise aiosmtpd resolves this machine's name (DNS) for every session
    controller = Controller(box, hostname="127.0.0.1", port=port, server_hostname="mx.faxbridge.test")
    controller.start()
    return controller, box


class HangupClock:
    """Notes the time of the sender's last BYE by wrapping ``SipEndpoint.hangup`` in this process."""

    def __init__(self) -> None:
        self.last: float | None = None
        self._orig = SipEndpoint.hangup

    def __enter__(self) -> "HangupClock":
        orig, clock = self._orig, self

        def hangup(endpoint: SipEndpoint, *args: object, **kwargs: object) -> object:
            clock.last = time.monotonic()
            return orig(endpoint, *args, **kwargs)

        SipEndpoint.hangup = hangup  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        SipEndpoint.hangup = self._orig  # type: ignore[method-assign]


def measure(port: int, tiff: Path, box: Mailbox, modes: list[str]) -> list[tuple[str, float | None, str]]:
    """(mode, seconds from the caller's BYE to the message in the mailbox or None, note) per call."""
    out: list[tuple[str, float | None, str]] = []
    with HangupClock() as bye:
        for i, mode in enumerate(modes):
            bye.last = None
            before = len(box.arrivals)
            res = asyncio.run(send_fax(f"sip:{5552000 + i}@127.0.0.1:{port}", tiff, t38=mode, timeout=120))
            ended = time.monotonic()
            if not res.ok:
                out.append((mode, None, f"fax failed: {res.status}"))
                continue
            if not box.wait_for(before + 1, 10.0):
                out.append((mode, None, "no message within 10 s"))
                continue
            hung = bye.last if bye.last is not None else ended
            note = res.mode + ("" if bye.last is not None else " (the daemon hung up first: from the call's end)")
            out.append((mode, box.arrivals[before] - hung, note))
    return out
