"""The boot partition (FAT) as files: read what the backend decides on, write what it decided.

Every file is replaced whole (temp file, fsync, rename, directory fsync), so a power cut leaves
the old text or the new one.  FAT has no permissions to set, so unlike fsutil.write_atomic no
mode is chmod'ed (vfat refuses most chmods).  A slot directory is built beside the old one and
swapped in by rename; the booted slot's directory is never written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from appliance.fsutil import fsync_dir
from appliance.update.backend import CONFIG, MARKS, TRYBOOT, BootFiles
from appliance.update.slots import check_slot

BOOT_DIR = Path("/boot/firmware")
PROC_CMDLINE = Path("/proc/cmdline")
#: where the board's name is; /sys's copy stays readable under ProcSubset=pid (the web unit)
MODEL_PATHS = (Path("/sys/firmware/devicetree/base/model"), Path("/proc/device-tree/model"))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def read_files(boot: Path, cmdline: Path = PROC_CMDLINE) -> BootFiles:
    return BootFiles(
        config=_read(boot / CONFIG),
        tryboot=_read(boot / TRYBOOT),
        marks=_read(boot / MARKS),
        cmdline=_read(cmdline) or "",
    )


def read_model(paths: tuple[Path, ...] = MODEL_PATHS) -> str:
    """The device tree's model string, or "" (QEMU's virt machine, a PC)."""
    for p in paths:
        try:
            return p.read_bytes().decode("utf-8", "replace").replace("\x00", "").strip()
        except OSError:
            continue
    return ""


def write_file(path: Path, text: str | bytes) -> None:
    """Replace ``path`` whole: ``.NAME.tmp`` beside it, fsync, rename, directory fsync."""
    tmp = path.with_name(f".{path.name}.tmp")
    data = text.encode("utf-8") if isinstance(text, str) else text
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def apply(boot: Path, writes: dict[str, str | None]) -> None:
    """The backend's decisions, in their order; None deletes."""
    for name, text in writes.items():
        path = boot / name
        if text is None:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            fsync_dir(boot)
        else:
            write_file(path, text)


def install_slot_dir(boot: Path, slot: str, files: dict[str, Path | bytes]) -> None:
    """Make ``boot/<slot>/`` hold exactly ``files`` (name -> source file or content): built as
    ``.<slot>.new``, every file fsync'ed, then swapped in by two renames.  A power cut in between
    leaves no ``<slot>/``; that slot is not committed, and only a tryboot reboot would start it."""
    check_slot(slot)
    new, old, final = boot / f".{slot}.new", boot / f".{slot}.old", boot / slot
    for leftover in (new, old):
        shutil.rmtree(leftover, ignore_errors=True)
    new.mkdir()
    for name, src in sorted(files.items()):
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a plain file name: {name!r}")
        data = src if isinstance(src, bytes) else None
        dst = new / name
        if data is None:
            with open(src, "rb") as fi, open(dst, "wb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
                fo.flush()
                os.fsync(fo.fileno())
        else:
            with open(dst, "wb") as fo:
                fo.write(data)
                fo.flush()
                os.fsync(fo.fileno())
    fsync_dir(new)
    if final.exists():
        os.rename(final, old)
    os.rename(new, final)
    fsync_dir(boot)
    shutil.rmtree(old, ignore_errors=True)


def sweep(boot: Path) -> list[str]:
    """Remove what a cut run left (temp files, half-built slot directories); their names."""
    gone = []
    for p in boot.iterdir():
        if p.name.startswith(".") and (
            p.name.endswith(".tmp") or p.name[1:] in {f"{s}.{k}" for s in ("a", "b") for k in ("new", "old")}
        ):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            gone.append(p.name)
    return gone
