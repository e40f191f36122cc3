"""Which root slot is booted, committed or on trial, and the boot files' text that says so.

Theory of operation (decision 0019).  The card's FAT holds the Raspberry Pi firmware and one
directory per root slot (``a/``, ``b/``: kernel, initrd, DTBs, cmdline.txt).  ``config.txt``'s
``os_prefix=a/`` names the *committed* slot: the one every ordinary boot starts.  For exactly one
boot after ``reboot "0 tryboot"`` the firmware (Pi 4, 400, CM4) reads ``tryboot.txt`` *instead of*
config.txt, so trying slot X is a whole copy of config.txt with ``os_prefix=X/``; committing X is
rewriting config.txt with it.  Any ordinary reboot (a failed trial, a panic, the watchdog, a power
cut) starts the committed slot again.  The booted slot is the kernel's ``rauc.slot=`` argument,
which each slot's cmdline.txt carries with its own ``root=PARTUUID=``.

Everything here is text in, text out: no file is read or written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SLOTS = ("a", "b")
#: the image's fixed MBR disk id: p2 is slot a, p3 slot b
DISK_ID = "fa8b0001"
PARTUUID = {"a": f"{DISK_ID}-02", "b": f"{DISK_ID}-03"}

_OS_PREFIX = re.compile(r"^[ \t]*os_prefix[ \t]*=[ \t]*(?P<value>[^\r\n#]*?)[ \t]*(?:#.*)?$", re.M)
_ROOT_ARG = re.compile(r"(?<!\S)root=\S*")
_SLOT_ARG = re.compile(r"(?<!\S)rauc\.slot=\S*")


class SlotError(Exception):
    """The boot files do not say what this module needs (a card not laid out for A/B)."""


def other(slot: str) -> str:
    """The slot that is not ``slot``."""
    check_slot(slot)
    return "b" if slot == "a" else "a"


def check_slot(slot: str) -> str:
    if slot not in SLOTS:
        raise SlotError(f"{slot!r} is not a root slot (a or b)")
    return slot


def device(slot: str) -> str:
    """The slot's partition as udev names it, whatever the card reader calls the disk."""
    return f"/dev/disk/by-partuuid/{PARTUUID[check_slot(slot)]}"


def os_prefix_slot(config_txt: str) -> str | None:
    """The slot config.txt (or tryboot.txt) boots: its last ``os_prefix=``, which the firmware
    obeys; None when there is none or it names something else than a slot directory."""
    found = _OS_PREFIX.findall(config_txt)
    if not found:
        return None
    value = found[-1].strip().rstrip("/")
    return value if value in SLOTS else None


def with_os_prefix(config_txt: str, slot: str) -> str:
    """config.txt's text booting ``slot``: every ``os_prefix=`` line rewritten (so no section
    says otherwise), or one added in an ``[all]`` section at the end when there is none."""
    check_slot(slot)
    line = f"os_prefix={slot}/"
    if _OS_PREFIX.search(config_txt):
        return _OS_PREFIX.sub(line, config_txt)
    text = config_txt if not config_txt or config_txt.endswith("\n") else config_txt + "\n"
    return f"{text}[all]\n{line}\n"


def booted_slot(cmdline: str) -> str | None:
    """The slot the running kernel came from: its ``rauc.slot=`` (which RAUC 1.8 reads too)."""
    found = _SLOT_ARG.findall(cmdline)
    if not found:
        return None
    value = found[-1].partition("=")[2]
    return value if value in SLOTS else None


def cmdline_for(slot: str, cmdline: str) -> str:
    """The running cmdline.txt rewritten to boot ``slot``: its own root partition and
    ``rauc.slot``; every other argument (console, panic=, quiet ...) kept as it is."""
    check_slot(slot)
    text = " ".join(cmdline.split())
    root, mark = f"root=PARTUUID={PARTUUID[slot]}", f"rauc.slot={slot}"
    text = _ROOT_ARG.sub(root, text) if _ROOT_ARG.search(text) else f"{root} {text}".strip()
    text = _SLOT_ARG.sub(mark, text) if _SLOT_ARG.search(text) else f"{text} {mark}"
    return text + "\n"


@dataclass(frozen=True)
class Slots:
    """What the boot files and the kernel say about the two slots, at one moment."""

    booted: str | None
    committed: str | None
    #: the slot tryboot.txt would start on a ``0 tryboot`` reboot (None: no tryboot.txt)
    tryboot: str | None
    bad: frozenset[str] = frozenset()

    @property
    def on_trial(self) -> bool:
        """The running system is the one being tried: a plain reboot leaves it."""
        return self.booted is not None and self.committed is not None and self.booted != self.committed

    @property
    def primary(self) -> str | None:
        """The slot RAUC should call primary: the one tried next, else the committed one."""
        return self.tryboot if self.tryboot is not None and self.tryboot not in self.bad else self.committed

    def problem(self) -> str:
        """Why an update cannot start now, in plain words; "" when it can."""
        if self.committed is None:
            return (
                "the boot partition's config.txt names no root slot (os_prefix=a/ or b/): this card "
                "was not made for updates"
            )
        if self.booted is None:
            return "the running kernel's command line has no rauc.slot=: the booted slot is unknown"
        if self.on_trial:
            return (
                f"the system in slot {self.booted} is still on trial (slot {self.committed} is the "
                "committed one); wait until it is committed or rolled back"
            )
        return ""

    def describe(self) -> list[str]:
        """`faxbridge update --status` lines."""
        lines = [
            f"booted:    slot {self.booted or '? (no rauc.slot= on the kernel command line)'}",
            f"committed: slot {self.committed or '? (no os_prefix= in config.txt)'}",
        ]
        if self.on_trial:
            lines.append(
                f"trial:     yes: slot {self.booted} is being tried; a plain reboot returns to slot {self.committed}"
            )
        else:
            lines.append("trial:     no")
        if self.tryboot is not None and not self.on_trial:
            lines.append(f"next:      a tryboot reboot would try slot {self.tryboot}")
        if self.bad:
            lines.append(f"bad:       slot {', '.join(sorted(self.bad))}")
        return lines


def parse_marks(text: str) -> frozenset[str]:
    """The slots marked bad in the backend's own small file (``a bad`` lines)."""
    bad = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in SLOTS and parts[1] == "bad":
            bad.add(parts[0])
    return frozenset(bad)


def render_marks(bad: frozenset[str]) -> str:
    return "".join(f"{s} {'bad' if s in bad else 'good'}\n" for s in SLOTS)


def model_problem(model: str) -> str:
    """Why this board cannot be updated in place ("" when it can).  The Pi 3's firmware has no
    tryboot, so a new slot could only be tried by committing it, and a bad one would brick the
    box.  A board that is not a Pi (QEMU's virt machine) is taken to have the slot switch."""
    name = model.replace("\x00", "").strip()
    if "Raspberry Pi 3" in name:
        return (
            f"this {name} cannot be updated in place: its firmware has no 'tryboot', so a new system "
            "could not be tried with the old one kept as a fallback. Flash the new image to a "
            "card instead (the configuration can be restored from a backup)."
        )
    return ""
