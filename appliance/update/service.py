"""The updater's I/O: the root service that installs a request, RAUC's backend and post-install
handler, boot health, and `faxbridge update`.  Every decision is made in slots.py, backend.py,
health.py and status.py; this file reads and writes files and runs commands.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from appliance.update import bootdir, request
from appliance.update.backend import answer, slots_of
from appliance.update.commands import Commands
from appliance.update.health import DEFAULT_TIMEOUT, POLL_INTERVAL, Check, HealthWatch, plan
from appliance.update.request import RequestError
from appliance.update.slots import SLOTS, SlotError, Slots, cmdline_for, model_problem, other
from appliance.update.status import Status, plain_error, rauc_progress

STATE_DIR = Path("/var/lib/faxbridge")
#: a slot's ready boot files in its root file system (the image build makes it)
SLOT_BOOT_DIR = "usr/lib/faxbridge/boot"


@dataclass(frozen=True)
class Paths:
    state_dir: Path = STATE_DIR
    boot: Path = bootdir.BOOT_DIR
    work: Path = request.WORK_DIR
    cmdline: Path = bootdir.PROC_CMDLINE
    model: tuple[Path, ...] = bootdir.MODEL_PATHS
    max_bundle: int = request.MAX_BUNDLE
    mount_prefix: Path = field(default=Path("/run/faxbridge-update"))

    def slots(self) -> Slots:
        return slots_of(bootdir.read_files(self.boot, self.cmdline))


def _say(text: str) -> None:
    print(text, flush=True)


def _version() -> str:
    from appliance.control import version

    return version()


# -- the root service: faxbridge update --apply-request ---------------------------------------


def apply_request(p: Paths, cmds: Commands, reboot: bool = True) -> int:
    """Take the request, check and copy the bundle, run rauc install, reboot to try it.
    status.json says every step; 0 when the box is restarting into the new slot."""
    try:
        dirfd = request.open_update_dir(p.state_dir)
    except (RequestError, OSError) as e:
        _say(f"update: {e}")
        return 1
    st = Status(
        phase="checking",
        started=time.time(),
        from_version=_version(),
        percent=None,
        message="Checking the update request",
    )
    copy: Path | None = None
    try:
        try:
            request.take_request(dirfd)
            request.write_status(dirfd, st)
            if problem := model_problem(bootdir.read_model(p.model)):
                raise RequestError(problem)
            slots = p.slots()
            if why := slots.problem():
                raise RequestError(f"this box cannot be updated now: {why}")
            assert slots.booted is not None
            st.target_slot = other(slots.booted)
            st.message = "Copying the update file"
            request.write_status(dirfd, st)
            copy = request.copy_bundle(dirfd, p.work, p.max_bundle)
            st.message = "Checking the update's signature"
            request.write_status(dirfd, st)
            info = cmds.bundle_version(copy)
            if not info.ok:
                raise RequestError(plain_error(info.error))
            st.version = info.output
            st.phase, st.percent = "installing", 0
            st.message = f"Installing version {st.version or '?'} into slot {st.target_slot}"
            request.write_status(dirfd, st)

            def progress(line: str) -> None:
                _say(f"rauc: {line}")
                if (got := rauc_progress(line)) is not None:
                    st.percent, st.message = got[0], got[1]
                    request.write_status(dirfd, st)

            result = cmds.install(copy, progress)
            if not result.ok:
                raise RequestError(plain_error(result.error))
            after = p.slots()
            if after.tryboot != st.target_slot:
                raise RequestError(
                    f"the update was written to slot {st.target_slot}, but the boot partition "
                    "was not prepared to try it (tryboot.txt); the box keeps its system"
                )
        except RequestError as e:
            request.discard_bundle(dirfd)  # nothing will install it: give the space back
            st.phase, st.percent, st.error = "failed", None, str(e)
            st.message = "The update was not installed"
            request.write_status(dirfd, st)
            _say(f"update: {st.result()}")
            return 1
        finally:
            if copy is not None:
                copy.unlink(missing_ok=True)
        st.phase, st.percent = "rebooting", 100
        st.message = (
            f"Version {st.version or '?'} is installed in slot {st.target_slot}. The box restarts to try "
            "it; the web page answers again in a few minutes."
        )
        request.write_status(dirfd, st)
        _say(f"update: {st.message}")
        if reboot:
            r = cmds.reboot(tryboot=True)
            if not r.ok:
                st.phase, st.percent = "failed", None
                st.error = f"the box could not be restarted to try the new version ({r.error})"
                request.write_status(dirfd, st)
                _say(f"update: {st.result()}")
                return 1
        return 0
    finally:
        os.close(dirfd)


# -- RAUC's custom bootloader backend and post-install handler --------------------------------


def backend(argv: list[str], p: Paths) -> int:
    a = answer(argv, bootdir.read_files(p.boot, p.cmdline))
    if a.exit == 0:
        try:
            bootdir.apply(p.boot, a.writes)
        except OSError as e:
            print(f"rauc-backend: {' '.join(argv)}: cannot write the boot partition: {e}", file=sys.stderr)
            return 1
    if a.stdout:
        sys.stdout.write(a.stdout)
    if a.error:
        print(f"rauc-backend: {a.error}", file=sys.stderr)
    return a.exit


def slot_boot_files(root: Path) -> dict[str, Path]:
    """The files a slot's boot directory needs, from that slot's root file system: the image's
    ready ``/usr/lib/faxbridge/boot/``, else Debian's newest kernel, its initrd and Broadcom DTBs.
    Only regular files: a link in the new root could point anywhere on this one."""
    ready = root / SLOT_BOOT_DIR
    if ready.is_dir() and not ready.is_symlink():
        files = {
            f.name: f for f in sorted(ready.iterdir()) if not f.is_symlink() and f.is_file() and f.name != "cmdline.txt"
        }
        if files:
            return files
    boot = root / "boot"
    kernels = [k for k in boot.glob("vmlinuz-*") if k.is_file() and not k.is_symlink()] if boot.is_dir() else []
    if not kernels:
        raise SlotError(f"the new system has no kernel (no {SLOT_BOOT_DIR}/ and no /boot/vmlinuz-*)")
    kernel = max(kernels, key=lambda k: _version_key(k.name[len("vmlinuz-") :]))
    release = kernel.name[len("vmlinuz-") :]
    initrd = boot / f"initrd.img-{release}"
    if not initrd.is_file() or initrd.is_symlink():
        raise SlotError(f"the new system has kernel {release} but no /boot/initrd.img-{release}")
    files = {"vmlinuz": kernel, "initrd.img": initrd}
    dtbs = root / f"usr/lib/linux-image-{release}/broadcom"
    if dtbs.is_dir():
        files.update({d.name: d for d in sorted(dtbs.glob("*.dtb")) if d.is_file() and not d.is_symlink()})
    return files


def _version_key(release: str) -> list[tuple[int, str]]:
    import re

    return [(int(x), "") if x.isdigit() else (-1, x) for x in re.split(r"[.\-+~]", release)]


def write_slot(p: Paths, slot: str, root: Path) -> None:
    """Fill ``boot/<slot>/`` from the slot's mounted root, with its own cmdline.txt."""
    slots = p.slots()
    if slot == slots.booted or slot == slots.committed:
        raise SlotError(f"slot {slot} is the running or committed one; its boot files are never rewritten")
    current = None
    if slots.booted is not None and (p.boot / slots.booted / "cmdline.txt").is_file():
        current = (p.boot / slots.booted / "cmdline.txt").read_text()
    if current is None:
        current = p.cmdline.read_text() if p.cmdline.exists() else ""
    files: dict[str, Path | bytes] = dict(slot_boot_files(root))
    files["cmdline.txt"] = cmdline_for(slot, current).encode()
    bootdir.install_slot_dir(p.boot, slot, files)


def post_install(env: Mapping[str, str], p: Paths, cmds: Commands) -> int:
    """RAUC's system post-install handler: each target slot with a bootname (a or b) gets its
    boot directory from the root file system just written, mounted read-only."""
    targets = env.get("RAUC_TARGET_SLOTS", "").split()
    done = 0
    for n in targets:
        slot = env.get(f"RAUC_SLOT_BOOTNAME_{n}", "")
        device = env.get(f"RAUC_SLOT_DEVICE_{n}", "")
        if slot not in SLOTS:
            continue
        where = Path(env.get("RAUC_MOUNT_PREFIX") or p.mount_prefix) / f"faxbridge-slot-{slot}"
        where.mkdir(parents=True, exist_ok=True)
        m = cmds.mount_ro(device, where)
        if not m.ok:
            print(f"rauc-post-install: cannot mount slot {slot} ({device}): {m.error}", file=sys.stderr)
            return 1
        try:
            write_slot(p, slot, where)
        except (SlotError, OSError, ValueError) as e:
            print(f"rauc-post-install: slot {slot}: {e}", file=sys.stderr)
            return 1
        finally:
            cmds.unmount(where)
            try:
                where.rmdir()
            except OSError:
                pass
        _say(f"rauc-post-install: {p.boot / slot}/ holds slot {slot}'s kernel, initrd, DTBs and cmdline.txt")
        done += 1
    if not done:
        print(
            "rauc-post-install: no target slot with bootname a or b (RAUC_TARGET_SLOTS="
            f"{env.get('RAUC_TARGET_SLOTS', '')!r})",
            file=sys.stderr,
        )
        return 1
    return 0


# -- boot health ------------------------------------------------------------------------------


def boot_health(
    p: Paths,
    cmds: Commands,
    checker: Callable[[], list[Check]],
    timeout: float = DEFAULT_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    reboot: bool = True,
) -> int:
    slots = p.slots()
    for name in bootdir.sweep(p.boot) if p.boot.is_dir() else []:
        _say(f"boot-health: removed {name} left by a cut update")
    if not slots.on_trial and not request.update_dir(p.state_dir).is_dir():
        return 0  # never updated
    request._ensure_dir(p.state_dir)
    dirfd = request.open_update_dir(p.state_dir)
    try:
        st = request.read_status_at(dirfd)
        what = plan(slots, st)
        if what.kind == "nothing":
            return 0
        if what.kind == "committed":
            st.phase, st.error, st.percent = "committed", "", None
            st.message = f"Running version {st.version or _version()} from slot {slots.booted}."
            request.write_status(dirfd, st)
            _say(f"boot-health: {st.result()}")
            return 0
        if what.kind == "rolled_back":
            st.phase, st.error, st.percent = "rolled_back", what.reason, None
            st.message = f"Running the previous system again (slot {slots.booted})."
            request.write_status(dirfd, st)
            r = cmds.mark("bad", "other")  # the backend drops a stale tryboot.txt
            _say(f"boot-health: {st.result()}" + ("" if r.ok else f" (rauc mark-bad: {r.error})"))
            return 0
        # a trial: this system checks itself; anything unexpected here counts as unhealthy
        try:
            committed, reason = _trial(p, cmds, checker, timeout, clock, sleep, dirfd, st, slots)
        except Exception as e:  # noqa: BLE001 - an OSError writing status.json, a bug: never leave a trial undecided
            committed, reason = False, f"the health check itself failed ({type(e).__name__}: {e})"
        if committed:
            return 0
        st.phase, st.error = "rolled_back", reason
        st.message = f"Going back to the previous system (slot {slots.committed})"
        try:
            request.write_status(dirfd, st)
        except OSError as e:
            _say(f"boot-health: cannot write status.json: {e}")
        _say(f"boot-health: {st.result()}")
        r = cmds.mark("bad")
        if not r.ok:
            _say(f"boot-health: rauc mark-bad: {r.error}")
        if reboot:
            cmds.reboot(tryboot=False)
        return 1
    finally:
        os.close(dirfd)


def _trial(
    p: Paths,
    cmds: Commands,
    checker: Callable[[], list[Check]],
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    dirfd: int,
    st: Status,
    slots: Slots,
) -> tuple[bool, str]:
    """Watch the tried system until a verdict; commit it when healthy.  (committed, why not)."""
    st.phase, st.percent, st.error = "trial", None, ""
    st.version = st.version or _version()
    st.target_slot = slots.booted or ""
    st.message = (
        f"Trying version {st.version} in slot {slots.booted}: checking the fax service, the web page and the spool"
    )
    request.write_status(dirfd, st)
    watch = HealthWatch(clock(), timeout)
    said = ""
    while (verdict := watch.observe(checker(), clock())) is None:
        if (now := watch.waiting()) != said:
            said = now
            st.message = f"Trying version {st.version} in slot {slots.booted}: {now}"
            request.write_status(dirfd, st)
        sleep(POLL_INTERVAL)
    if not verdict.healthy:
        return False, verdict.reason
    r = cmds.mark("good")
    after = p.slots()
    if not (r.ok and after.committed == slots.booted):
        return False, f"it was healthy but could not be committed ({r.error or 'config.txt was not changed'})"
    st.phase, st.error = "committed", ""
    st.message = f"Running version {st.version} from slot {slots.booted}."
    request.write_status(dirfd, st)
    _say(f"boot-health: {st.result()}")
    return True, ""


# -- faxbridge update FILE / --status ---------------------------------------------------------


def status_lines(p: Paths) -> list[str]:
    lines = p.slots().describe()
    if problem := model_problem(bootdir.read_model(p.model)):
        lines.append(f"updates:   refused: {problem}")
    st = request.read_status(p.state_dir)
    if st.phase != "idle":
        lines.append(
            f"update:    {st.phase}"
            + (f", {st.percent}%" if st.percent is not None else "")
            + (f": {st.message}" if st.message else "")
        )
    if result := st.result():
        lines.append(f"last:      {result}")
    if request.pending(p.state_dir):
        lines.append("request:   waiting for faxbridge-update.service")
    return lines


def submit(
    p: Paths,
    bundle: Path,
    pickup_timeout: float = 60.0,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """`faxbridge update FILE`: the web UI's path from a shell; follows status.json to the end."""
    if problem := model_problem(bootdir.read_model(p.model)):
        _say(f"update refused: {problem}")
        return 1
    if why := request.busy_reason(p.state_dir):
        _say(f"update refused: {why}")
        return 1
    try:
        with open(bundle, "rb") as f:
            size = request.store_bundle(p.state_dir, f, p.max_bundle)
    except PermissionError as e:
        _say(
            f"update: cannot write {request.update_dir(p.state_dir)} ({e.strerror}): run it as root "
            "(sudo faxbridge update FILE)"
        )
        return 1
    except (OSError, RequestError) as e:
        _say(f"update: {bundle}: {e}")
        return 1
    asked = clock()
    request.write_request(p.state_dir, "cli")
    _say(f"update: {bundle} ({size / 1e6:.1f} MB) handed to the installer")
    said = ""
    while True:
        st = request.read_status(p.state_dir)
        mine = st.started >= asked - 1 and not request.pending(p.state_dir)
        if not mine:
            if clock() - asked > pickup_timeout:
                _say(
                    "update: the installer did not start. Is faxbridge-update.path active? "
                    "(systemctl status faxbridge-update.path); the request stays and is taken when it starts"
                )
                return 1
        else:
            line = f"{st.phase}" + (f" {st.percent:3d}%" if st.percent is not None else "") + f": {st.message}"
            if line != said:
                said = line
                _say(f"update: {line}")
            if st.phase == "rebooting":
                _say(
                    "update: the box now restarts into the new system. It keeps it when the fax service, "
                    "the web page and the spool answer; otherwise it goes back to this system by itself. "
                    "`faxbridge update --status` says which after the restart."
                )
                return 0
            if not st.busy:
                _say(f"update: {st.result()}")
                return 0 if st.phase == "committed" else 1
        sleep(1.0)
