"""The one-time setup code that guards the first-start page until the owner has a password.

On a LAN, whoever opens the web page first would otherwise choose the administrator password.
So the page also asks for a code that only someone with the box in hand can read: first boot
writes it to the card's boot partition (``setup-code.txt``) and to the console, ``make run``
prints it in the terminal. The box behaves the same everywhere: the web UI makes a code
whenever there is no password and no code (a fresh state directory, or after
``faxbridge reset-password``), so the page is never open without one.

The code lives in ``web.state_dir/setup-code.json`` (0600) with the list of the other places
it was written; setting the password removes it from all of them (those the web process may not
write, like the boot partition, are removed by the next boot's ``faxbridge firstboot``).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path

from appliance.fsutil import fsync_dir, write_atomic

#: no 0/O, 1/I/L, 2/Z, 5/S, 8/B: read off a screen or a card in a PC and typed without doubt
ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
GROUPS, GROUP_LEN = 3, 4  # 12 characters: 25**12 ~ 2**55, against a login back-off
FILE = "setup-code.json"


def new_code() -> str:
    """A fresh code like ``K7FQ-MWXA-3TRC``."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LEN))
    return "-".join(chars[i : i + GROUP_LEN] for i in range(0, len(chars), GROUP_LEN))


def normalise(typed: str) -> str:
    """What the owner typed, as the code is stored: case, spaces and dashes do not matter."""
    letters = "".join(c for c in typed.upper() if c.isalnum())[:64]
    return "-".join(letters[i : i + GROUP_LEN] for i in range(0, len(letters), GROUP_LEN))


def matches(typed: str, code: str) -> bool:
    """Constant-time comparison of a typed code with the stored one."""
    return hmac.compare_digest(normalise(typed).encode(), normalise(code).encode())


def path(state_dir: Path) -> Path:
    return Path(state_dir) / FILE


def read(state_dir: Path) -> str | None:
    """The current code, or None when there is none (or the file is unreadable)."""
    try:
        record = json.loads(path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    code = record.get("code") if isinstance(record, dict) else None
    return code if isinstance(code, str) and code else None


def copies(state_dir: Path) -> list[Path]:
    """Where else the code was written (the boot partition, the console)."""
    try:
        record = json.loads(path(state_dir).read_text(encoding="utf-8"))
        return [Path(p) for p in record.get("copies", []) if isinstance(p, str)]
    except (OSError, ValueError, AttributeError):
        return []


def store(state_dir: Path, code: str, copies_: Sequence[Path] = ()) -> None:
    """Keep ``code`` (0600, in a 0700 directory), remembering where else it was written."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path(state_dir), json.dumps({"code": code, "copies": [str(p) for p in copies_]}), 0o600)


def ensure(state_dir: Path) -> str:
    """The current code, made now when there is none. Two processes may ask at once (the daemon
    for its banner, the web UI at start, as two supervisor programs or units): the file is
    created exclusively (a hard link of a complete temporary file), so both get the same code."""
    code = read(state_dir)
    if code is not None:
        return code
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=f".{FILE}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps({"code": new_code(), "copies": []}))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path(state_dir))
        except FileExistsError:
            pass  # another process made one first: that one counts
    finally:
        os.unlink(tmp)
    fsync_dir(state_dir)
    code = read(state_dir)
    if code is None:  # present but unreadable (a damaged file): replace it
        code = new_code()
        store(state_dir, code)
    return code


def void(state_dir: Path) -> list[Path]:
    """The password is set: forget the code everywhere; returns the copies that could not be
    removed (not writable from this process: the next boot removes them)."""
    left = []
    for p in copies(state_dir):
        try:
            p.unlink(missing_ok=True)
        except OSError:
            left.append(p)
    path(state_dir).unlink(missing_ok=True)
    return left
