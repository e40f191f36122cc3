"""The hand-off between the service user and root: one directory, three fixed names.

The web UI (user faxbridge) or `faxbridge update FILE` puts the bundle at
``<state>/update/bundle.raucb`` and then writes ``<state>/update/request``; systemd's
faxbridge-update.path starts the root service when the request appears.  The service user owns
that directory and may put anything there (a symlink to /etc/shadow, a FIFO, a 50 GB file, a
directory), so root reads it only through a directory descriptor opened without following
links, opens each fixed name with O_NOFOLLOW and O_NONBLOCK, accepts regular files within a size
limit, and copies the bundle into its own directory before RAUC sees a path.  root writes only
status.json there, through the same descriptor (a new name, then a rename).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from appliance.update.status import Status, parse

UPDATE_DIR, BUNDLE, REQUEST, STATUS = "update", "bundle.raucb", "request", "status.json"
#: a root file system image of ~800 MB compresses to well under this
MAX_BUNDLE = 1024 * 1024 * 1024
MAX_REQUEST = 4096
#: root's own place for the copy RAUC installs from (on the data partition, not the service user's)
WORK_DIR = Path("/data/system/update")
CHUNK = 1 << 20


class RequestError(Exception):
    """A request the root service refuses; the message is for the owner."""


def update_dir(state_dir: Path) -> Path:
    return Path(state_dir) / UPDATE_DIR


# -- the service user's side (web UI, or the CLI as root) ------------------------------------


def read_status(state_dir: Path) -> Status:
    try:
        with open(update_dir(state_dir) / STATUS, "rb") as f:
            return parse(f.read(64 * 1024 + 1))
    except OSError:
        return Status()


def pending(state_dir: Path) -> bool:
    """A request waits for the root service (it removes the file when it takes it)."""
    return os.path.lexists(update_dir(state_dir) / REQUEST)


def busy_reason(state_dir: Path) -> str:
    """Why a new upload must wait ("" when it need not)."""
    if pending(state_dir):
        return "an update was handed over and waits for the installer to start"
    s = read_status(state_dir)
    if s.busy and time.time() - s.updated < 3600:
        return f"an update is under way ({s.phase}: {s.message})"
    return ""


def _ensure_dir(state_dir: Path) -> Path:
    d = update_dir(state_dir)
    if d.is_symlink():
        raise RequestError(f"{d} is a symbolic link; remove it")
    if not d.is_dir():
        d.mkdir(mode=0o700, parents=False)
        st = os.stat(state_dir)
        if os.geteuid() == 0 and st.st_uid != 0:
            # root (the CLI) made it: it belongs to the state directory's owner, as the web UI writes here
            os.chown(d, st.st_uid, st.st_gid)
    return d


def store_bundle(
    state_dir: Path, source: IO[bytes], limit: int = MAX_BUNDLE, on_bytes: Callable[[int], None] | None = None
) -> int:
    """Copy ``source`` to the bundle's fixed name (``.bundle.raucb.part`` first, so a cut upload
    never looks whole); its size.  RequestError when it is empty or larger than ``limit``."""
    d = _ensure_dir(state_dir)
    part = d / f".{BUNDLE}.part"
    total = 0
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise RequestError(
                        f"the file is larger than {limit // (1024 * 1024)} MB, the most an "
                        "update may be; this is not an update bundle"
                    )
                out.write(chunk)
                if on_bytes is not None:
                    on_bytes(total)
            out.flush()
            os.fsync(out.fileno())
        if total == 0:
            raise RequestError("the file is empty")
        os.replace(part, d / BUNDLE)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return total


def write_request(state_dir: Path, by: str) -> None:
    """Ask root to install the stored bundle: the file faxbridge-update.path waits for."""
    d = _ensure_dir(state_dir)
    text = json.dumps({"bundle": BUNDLE, "by": by, "at": time.time()})
    tmp = d / f".{REQUEST}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, d / REQUEST)


# -- root's side ------------------------------------------------------------------------------


def open_update_dir(state_dir: Path) -> int:
    """A descriptor of ``<state>/update`` that no later rename or symlink can redirect."""
    base = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return os.open(UPDATE_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=base)
    except OSError as e:
        raise RequestError(f"{update_dir(state_dir)} is not a directory ({e.strerror})") from None
    finally:
        os.close(base)


def _open_regular(dirfd: int, name: str, limit: int, what: str) -> tuple[int, int]:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dirfd)
    except FileNotFoundError:
        raise RequestError(f"there is no {what} ({name})") from None
    except OSError as e:
        # ELOOP: a symbolic link; ENXIO: a socket or FIFO without writer
        raise RequestError(f"the {what} ({name}) is not a regular file ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise RequestError(f"the {what} ({name}) is not a regular file")
    if st.st_size > limit:
        os.close(fd)
        raise RequestError(f"the {what} is {st.st_size} bytes, more than the {limit} allowed")
    return fd, st.st_size


def _remove(dirfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dirfd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        os.rmdir(name, dir_fd=dirfd)
    except PermissionError:  # a directory (Linux says EISDIR or EPERM)
        try:
            os.rmdir(name, dir_fd=dirfd)
        except OSError:
            pass


def take_request(dirfd: int) -> dict[str, object]:
    """Read and remove the request (removed whatever it holds, so the path unit does not start
    the service again for it).  RequestError when it is not a small regular file naming the
    bundle's fixed name."""
    try:
        fd, _size = _open_regular(dirfd, REQUEST, MAX_REQUEST, "update request")
        try:
            data = os.read(fd, MAX_REQUEST + 1)
        finally:
            os.close(fd)
    finally:
        _remove(dirfd, REQUEST)
    try:
        req = json.loads(data or b"{}")
    except ValueError:
        raise RequestError("the update request is not JSON") from None
    if not isinstance(req, dict):
        raise RequestError("the update request is not a JSON object")
    if req.get("bundle", BUNDLE) != BUNDLE:
        raise RequestError(f"the update request names {str(req.get('bundle'))[:100]!r}; only {BUNDLE} is installed")
    return req


def copy_bundle(
    dirfd: int, work: Path = WORK_DIR, limit: int = MAX_BUNDLE, on_progress: Callable[[int, int], None] | None = None
) -> Path:
    """Copy the service user's bundle into root's ``work`` directory (0700) and remove the
    original; the copy's path.  Only the bytes fstat saw are taken: a file that grows or shrinks
    during the copy is refused."""
    fd, size = _open_regular(dirfd, BUNDLE, limit, "update file")
    try:
        if size == 0:
            raise RequestError("the update file is empty")
        if work.is_symlink() or (work.exists() and not work.is_dir()):
            raise RequestError(f"{work} is not a directory")
        work.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(work, 0o700)
        dst = work / BUNDLE
        tmp = work / f".{BUNDLE}.{secrets.token_hex(4)}"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            done = 0
            while done < size:
                chunk = os.read(fd, min(CHUNK, size - done))
                if not chunk:
                    raise RequestError("the update file became shorter while it was copied")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, size)
            if os.read(fd, 1):
                raise RequestError("the update file grew while it was copied")
            os.fsync(out)
        except BaseException:
            os.close(out)
            os.unlink(tmp)
            raise
        os.close(out)
        os.replace(tmp, dst)
    finally:
        os.close(fd)
    _remove(dirfd, BUNDLE)
    return dst


def discard_bundle(dirfd: int) -> None:
    """Remove the service user's bundle (a refused update)."""
    _remove(dirfd, BUNDLE)


def write_status(dirfd: int, status: Status) -> None:
    """status.json, whole, readable by the web UI (0644), through the directory descriptor."""
    status.updated = time.time()
    data = status.to_json().encode()
    tmp = f".{STATUS}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dirfd)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, STATUS, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    os.fsync(dirfd)


def read_status_at(dirfd: int) -> Status:
    try:
        fd, _ = _open_regular(dirfd, STATUS, 64 * 1024, "status file")
    except RequestError:
        return Status()
    try:
        return parse(os.read(fd, 64 * 1024 + 1))
    finally:
        os.close(fd)
