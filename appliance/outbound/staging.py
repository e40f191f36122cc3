"""The staging directory: how files cross from the web process, the API and the CLI to the
daemon (decision 30). `<spool>/outbound-staging/<token>/` holds `1`, `2`, ... and `names.json`
(the names the sender gave, cleaned, for messages only: never a path); the token comes from a
CSPRNG and is checked for its shape before any use. The control socket carries only the token.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path

from appliance.config import Config

STAGING = "outbound-staging"
#: a staging directory nobody sent within this long is left over from an abandoned form
STAGING_MAX_AGE = 3600.0
#: a staging directory's name: made by the writer from a CSPRNG, checked before any use
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
MAX_FILES = 20
MAX_NAME = 120


class SubmitRefused(ValueError):
    """Why a fax was not queued, in words for the sender."""


def staging_root(cfg: Config) -> Path:
    return cfg.path(cfg.spool.dir) / STAGING


def staged_files(cfg: Config, token: object) -> list[tuple[str, Path]]:
    """The files of one staging directory in order, or SubmitRefused naming what is wrong."""
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise SubmitRefused("the upload is not known (a staging name is 16-64 letters, digits, - or _)")
    where = staging_root(cfg) / token
    if not where.is_dir():
        raise SubmitRefused("the upload is gone (uploads are kept for an hour); upload the files again")
    try:
        names = json.loads((where / "names.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        names = []
    if not isinstance(names, list):
        names = []
    files = []
    for i in range(1, MAX_FILES + 1):
        p = where / str(i)
        if not p.is_file():
            break
        given = names[i - 1] if i - 1 < len(names) and isinstance(names[i - 1], str) else f"file {i}"
        files.append((clean_name(given), p))
    return files


def clean_name(name: str) -> str:
    """A sender's file name for messages: printable, no path, bounded."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c if c.isprintable() and c not in "\r\n\t" else "_" for c in name).strip()
    return name[:MAX_NAME] or "unnamed"


def stage_files(cfg: Config, files: list[tuple[str, bytes]]) -> str:
    """Write an upload (maybe none: a cover page alone) into a new staging directory; its token.

    Files get numbers for names; the sender's names go into names.json, cleaned. A root caller
    (the CLI under sudo) hands the directory to the spool's owner so the daemon can remove it."""
    if len(files) > MAX_FILES:
        raise SubmitRefused(f"at most {MAX_FILES} files can go in one fax")
    total = sum(len(data) for _, data in files)
    if total > cfg.outbound.max_bytes:
        raise SubmitRefused(
            f"the files are {total:,} bytes together; this fax box takes at most {cfg.outbound.max_bytes:,}"
        )
    root = staging_root(cfg)
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    where = root / token
    where.mkdir(mode=0o750)
    for i, (_, data) in enumerate(files, 1):
        (where / str(i)).write_bytes(data)
    (where / "names.json").write_text(json.dumps([clean_name(n) for n, _ in files]), encoding="utf-8")
    if os.geteuid() == 0:
        owner = root.parent.stat()
        for p in [root, where, *where.iterdir()]:
            os.chown(p, owner.st_uid, owner.st_gid)
    return token


def remove_staging(cfg: Config, token: str) -> None:
    if TOKEN_RE.fullmatch(token):
        shutil.rmtree(staging_root(cfg) / token, ignore_errors=True)


def purge_stale_staging(root: Path, now: float, max_age: float = STAGING_MAX_AGE) -> int:
    """Staging directories in ``root`` older than an hour are uploads nobody sent: remove them."""
    removed = 0
    try:
        entries = list(root.iterdir())
    except OSError:
        return 0
    for d in entries:
        try:
            if TOKEN_RE.fullmatch(d.name) and now - d.stat().st_mtime > max_age:
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed
