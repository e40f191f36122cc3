"""The daemon's log file: rotating, in log/ of the state directory, so the system page can show
the recent log; the web process finds it there too, whichever configuration file either loaded.

`faxbridge run` logs to stderr (systemd's journal) and to this file; the web process only reads it.
"""

from __future__ import annotations

import calendar
import logging
import logging.handlers
import os
import queue
import re
import time
from collections import deque
from pathlib import Path
from typing import Any

from appliance import localtime
from appliance.config import Config

#: relative to the state directory, like every configured path (./var/log/faxbridge.log for make run)
LOG_FILE = "log/faxbridge.log"
MAX_BYTES = 1024 * 1024
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: the file's time stamps: UTC, marked Z ("2026-12-07T14:04:05.123Z"); the System page shows
#: them in the owner's zone (``in_zone``)
STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{3})Z(?= )")


class UtcFormatter(logging.Formatter):
    """Log times in UTC with the zone marked: the file is storage, read on other machines and
    after the owner changes the zone; a time in it must mean one instant."""

    converter = staticmethod(time.gmtime)
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"


def log_path(cfg: Config) -> Path:
    return cfg.path(LOG_FILE)


def stray_log(cfg: Config) -> Path | None:
    """The log an older version wrote beside the configuration file (var/log/ under the file's
    directory: var/var/log/ once the web UI had written var/faxbridge.toml), when it is there."""
    if cfg.source is None:
        return None
    old = cfg.source.parent / "var" / "log" / "faxbridge.log"
    return old if old.is_file() and old.resolve() != log_path(cfg).resolve() else None


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Creates every log file, the first and each one after a rotation, with mode 0600 whatever
    the process umask: the log names callers and recipients."""

    def _open(self) -> Any:
        return open(
            self.baseFilename,
            self.mode,
            encoding=self.encoding,
            errors=self.errors,
            opener=lambda path, flags: os.open(path, flags, 0o600),
        )


def add_file_logging(cfg: Config) -> logging.Handler | None:
    """Attach a rotating file handler to the root logger; a read-only disk only costs the file."""
    path = log_path(cfg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = PrivateRotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
        os.chmod(path, 0o600)  # a log written by an older version, or before the umask was set
    except OSError as e:
        logging.getLogger("faxbridge.log").warning("no log file at %s: %s", path, e)
        return None
    handler.setFormatter(UtcFormatter(FORMAT))
    logging.getLogger().addHandler(handler)
    return handler


def off_the_loop() -> logging.handlers.QueueListener:
    """Move every root handler (stderr, the file) behind a queue served by a thread of its own.

    A log record is then an append to a queue on the event loop's thread; the writes, flushes
    and the file's rotation checks happen elsewhere, so a burst of call logs (dozens of calls
    starting together) never holds up the 20 ms RTP schedule. Stop the listener at exit so the
    last records are written."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(q, *handlers, respect_handler_level=True)
    for h in handlers:
        root.removeHandler(h)
    root.addHandler(logging.handlers.QueueHandler(q))
    listener.start()
    return listener


def in_zone(line: str, tz: localtime.Zone) -> str:
    """A log line with its UTC stamp shown in ``tz``, zone named; other lines as they are."""
    m = STAMP.match(line)
    if m is None:
        return line
    try:
        when = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:  # digits in the right places that are no date
        return line
    return localtime.format_time(when, tz, f"{localtime.FULL}.{m.group(2)}") + line[m.end() :]


def tail(path: Path, lines: int = 200, max_bytes: int = 256 * 1024) -> list[str]:
    """The last ``lines`` lines of ``path`` (reading at most ``max_bytes`` from its end)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace").splitlines()
    if size > max_bytes and text:
        text = text[1:]  # the first line was cut in the middle
    return list(deque(text, maxlen=lines))
