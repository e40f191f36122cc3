"""RAUC's post-install handler: the new slot's boot directory on the FAT, filled from the root
file system just written (here a directory tree; on the box the slot mounted read-only), with
its own cmdline.txt; the running slot's directory never touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.update import bootdir
from appliance.update.service import post_install, slot_boot_files, write_slot
from appliance.update.slots import SlotError
from tests.update import standins
from tests.update.conftest import Box, cmdline


def debian_root(root: Path, releases: tuple[str, ...] = ("6.1.0-25-arm64", "6.1.0-28-arm64")) -> Path:
    for rel in releases:
        (root / "boot").mkdir(parents=True, exist_ok=True)
        (root / f"boot/vmlinuz-{rel}").write_bytes(f"kernel {rel}".encode())
        (root / f"boot/initrd.img-{rel}").write_bytes(f"initrd {rel}".encode())
        dtbs = root / f"usr/lib/linux-image-{rel}/broadcom"
        dtbs.mkdir(parents=True)
        for name in ("bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb", "bcm2711-rpi-cm4.dtb"):
            (dtbs / name).write_bytes(f"{name} {rel}".encode())
    return root


def test_the_images_ready_directory_is_preferred(tmp_path: Path) -> None:
    root = debian_root(tmp_path / "root")
    ready = root / "usr/lib/faxbridge/boot"
    ready.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img", "bcm2711-rpi-4-b.dtb", "cmdline.txt"):
        (ready / name).write_bytes(name.encode())
    files = slot_boot_files(root)
    assert sorted(files) == ["bcm2711-rpi-4-b.dtb", "initrd.img", "vmlinuz"], "cmdline.txt is the slot's own"


def test_else_debians_newest_kernel_its_initrd_and_dtbs(tmp_path: Path) -> None:
    root = debian_root(tmp_path / "root", ("6.1.0-9-arm64", "6.1.0-28-arm64", "6.1.0-10-arm64"))
    files = slot_boot_files(root)
    assert files["vmlinuz"].read_bytes() == b"kernel 6.1.0-28-arm64"  # 28 > 10 > 9, not by text
    assert files["initrd.img"].read_bytes() == b"initrd 6.1.0-28-arm64"
    assert files["bcm2711-rpi-cm4.dtb"].read_bytes() == b"bcm2711-rpi-cm4.dtb 6.1.0-28-arm64"


def test_links_in_the_new_root_are_never_followed(tmp_path: Path) -> None:
    """An absolute link in the new root names a file of *this* system: never copied to the FAT."""
    root = tmp_path / "root"
    ready = root / "usr/lib/faxbridge/boot"
    ready.mkdir(parents=True)
    (ready / "vmlinuz").symlink_to("/etc/shadow")
    (root / "boot").mkdir()
    (root / "boot/vmlinuz-6.1.0-28-arm64").symlink_to("/etc/passwd")
    with pytest.raises(SlotError, match="no kernel"):
        slot_boot_files(root)
    (root / "boot/vmlinuz-6.1.0-28-arm64").unlink()
    (root / "boot/vmlinuz-6.1.0-28-arm64").write_bytes(b"k")
    with pytest.raises(SlotError, match="no /boot/initrd.img-6.1.0-28-arm64"):
        slot_boot_files(root)


def test_the_slot_directory_is_replaced_whole_with_its_own_cmdline(box: Box, tmp_path: Path) -> None:
    (box.boot / "b" / "stale.dtb").write_bytes(b"from the last update")
    a_before = sorted((p.name, p.read_bytes()) for p in (box.boot / "a").iterdir())
    write_slot(box.paths, "b", debian_root(tmp_path / "root"))
    b = box.boot / "b"
    assert sorted(p.name for p in b.iterdir()) == ["bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb",
                                                   "bcm2711-rpi-cm4.dtb", "cmdline.txt", "initrd.img", "vmlinuz"]
    assert (b / "cmdline.txt").read_text() == cmdline("b")
    assert sorted((p.name, p.read_bytes()) for p in (box.boot / "a").iterdir()) == a_before
    assert not [p.name for p in box.boot.iterdir() if p.name.startswith(".")]


def test_the_running_or_committed_slot_is_never_rewritten(box: Box, tmp_path: Path) -> None:
    root = debian_root(tmp_path / "root")
    with pytest.raises(SlotError, match="never rewritten"):
        write_slot(box.paths, "a", root)
    box.boot_into("b")  # b on trial, a committed: neither may be rewritten
    with pytest.raises(SlotError):
        write_slot(box.paths, "a", root)
    with pytest.raises(SlotError):
        write_slot(box.paths, "b", root)


def test_a_cut_swap_is_swept_at_the_next_boot(box: Box) -> None:
    (box.boot / ".b.new").mkdir()
    (box.boot / ".b.new" / "vmlinuz").write_bytes(b"half")
    (box.boot / ".config.txt.tmp").write_text("half")
    assert sorted(bootdir.sweep(box.boot)) == [".b.new", ".config.txt.tmp"]
    assert (box.boot / "a").is_dir() and (box.boot / "config.txt").exists()


def test_the_handler_as_rauc_runs_it(box: Box, tmp_path: Path) -> None:
    cmds, log = standins.make(tmp_path / "bin")
    device = debian_root(tmp_path / "rootfs.1")  # the mount stand-in copies this tree
    env = {"RAUC_SLOTS": "1 2", "RAUC_TARGET_SLOTS": "2",
           "RAUC_SLOT_NAME_1": "rootfs.0", "RAUC_SLOT_BOOTNAME_1": "a", "RAUC_SLOT_DEVICE_1": "/dev/disk/by-partuuid/fa8b0001-02",
           "RAUC_SLOT_NAME_2": "rootfs.1", "RAUC_SLOT_BOOTNAME_2": "b", "RAUC_SLOT_DEVICE_2": str(device),
           "RAUC_MOUNT_PREFIX": str(tmp_path / "mnt")}
    assert post_install(env, box.paths, cmds) == 0
    assert (box.boot / "b" / "vmlinuz").read_bytes() == b"kernel 6.1.0-28-arm64"
    assert (box.boot / "b" / "cmdline.txt").read_text() == cmdline("b")
    calls = log.read_text().splitlines()
    assert calls[0].startswith(f"mount -o ro,noload {device} ") and calls[1].startswith("umount ")
    assert not (tmp_path / "mnt" / "faxbridge-slot-b").exists()
    # a target without a slot's bootname is an error RAUC reports
    assert post_install({"RAUC_TARGET_SLOTS": "1", "RAUC_SLOT_BOOTNAME_1": ""}, box.paths, cmds) == 1
