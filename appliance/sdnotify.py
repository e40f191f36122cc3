"""systemd's notify protocol (sd_notify(3)), written out: one datagram per message to $NOTIFY_SOCKET.

Why our own: the protocol is a dozen lines (newline-separated ``KEY=VALUE`` in one AF_UNIX
SOCK_DGRAM datagram; a name starting with ``@`` is in the abstract namespace), and the
python3-systemd binding would be one more compiled dependency for the image.  Outside systemd
(supervisor, a shell) $NOTIFY_SOCKET is unset and every call is a no-op.

The watchdog is fed from the event loop itself (``keep_alive``): a loop that is stuck (a blocking
call, a busy C routine) stops the pings, and systemd restarts the daemon after ``WatchdogSec=``
exactly as if it had died.  A thread pinging beside the loop would keep a stalled daemon alive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

__all__ = ["Notifier", "watchdog_interval", "keep_alive"]

log = logging.getLogger("faxbridge.daemon")


class Notifier:
    """Sends ``READY=1``, ``WATCHDOG=1``, ``STATUS=…`` and the rest to the service manager, if any."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        name = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if name.startswith("@"):
            self.address = b"\0" + name[1:].encode()
        elif name.startswith("/"):
            self.address = name
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """One datagram of ``KEY=VALUE`` lines (``notify(READY=1, STATUS="…")``); True when sent.

        Never blocks and never raises: a service manager that is busy or gone must not stall or
        stop the calls.  A failure is logged once."""
        if self.address is None:
            return False
        data = "\n".join(f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(data, socket.MSG_DONTWAIT, self.address)
        except OSError as e:
            if not self._failed:
                log.warning("service manager notification failed (%s): %s", self.address, e)
            self._failed = True
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between pings: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises; None when
    the watchdog is off or is meant for another process ($WATCHDOG_PID)."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    owner = env.get("WATCHDOG_PID")
    if usec <= 0 or (owner and owner != str(os.getpid() if pid is None else pid)):
        return None
    return usec / 2 / 1_000_000


async def keep_alive(notifier: Notifier, interval: float, status: Callable[[], str]) -> None:
    """``WATCHDOG=1`` and a fresh ``STATUS=`` every ``interval`` seconds, from the loop that carries
    the calls (so a blocked loop sends nothing).  Runs until cancelled."""
    while True:
        notifier.notify(WATCHDOG=1, STATUS=status())
        await asyncio.sleep(interval)
