"""RAUC's custom bootloader backend, as decisions: a command and the boot files' state in, the
answer RAUC reads and the boot files to write out.

RAUC 1.8 (``bootloader=custom``) runs ``BACKEND get-primary``, ``get-state NAME``,
``set-primary NAME``, ``set-state NAME good|bad`` (src/bootchooser.c); a get prints its answer
on stdout, any failure is a non-zero exit.  ``get-current`` (newer RAUC) is answered too.  During
``rauc install`` RAUC calls ``set-state X bad`` on the target before writing it, then
``set-primary X`` after: here that writes tryboot.txt, which only a ``0 tryboot`` reboot reads, so
nothing is committed.  ``rauc status mark-good`` on the tried system calls ``set-state X good``:
that, and only that, rewrites config.txt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.update.slots import SLOTS, SlotError, Slots, render_marks, with_os_prefix

CONFIG, TRYBOOT, MARKS = "config.txt", "tryboot.txt", "faxbridge-slots.txt"


@dataclass(frozen=True)
class BootFiles:
    """The boot partition's files this backend reads (None: absent) and the kernel's cmdline."""

    config: str | None
    tryboot: str | None
    marks: str | None
    cmdline: str


@dataclass
class Answer:
    """What the backend prints, its exit status, and the boot files to replace (None: delete)
    in this order: tryboot.txt before config.txt, so a commit never leaves a stale trial behind
    a committed slot for longer than one rename."""

    stdout: str = ""
    exit: int = 0
    error: str = ""
    writes: dict[str, str | None] = field(default_factory=dict)


def slots_of(files: BootFiles) -> Slots:
    from appliance.update.slots import booted_slot, os_prefix_slot, parse_marks

    return Slots(
        booted=booted_slot(files.cmdline),
        committed=os_prefix_slot(files.config) if files.config is not None else None,
        tryboot=os_prefix_slot(files.tryboot) if files.tryboot is not None else None,
        bad=parse_marks(files.marks or ""),
    )


def answer(argv: list[str], files: BootFiles) -> Answer:
    """The backend's whole behaviour: ``argv`` as RAUC passes it (without the program name)."""
    try:
        return _answer(argv, files)
    except SlotError as e:
        return Answer(exit=1, error=str(e))


def _answer(argv: list[str], files: BootFiles) -> Answer:
    if not argv:
        return Answer(
            exit=2,
            error="usage: rauc-backend get-primary | get-current | get-state SLOT | "
            "set-primary SLOT | set-state SLOT good|bad",
        )
    cmd, args = argv[0], argv[1:]
    s = slots_of(files)
    if cmd in ("get-primary", "get-current") and not args:
        value = s.primary if cmd == "get-primary" else s.booted
        if value is None:
            return Answer(exit=1, error=f"{cmd}: {s.problem() or 'unknown'}")
        return Answer(stdout=value + "\n")
    if cmd == "get-state" and len(args) == 1:
        slot = _slot(args[0])
        return Answer(stdout=("bad" if slot in s.bad else "good") + "\n")
    if files.config is None or s.committed is None:
        return Answer(exit=1, error=f"{cmd}: config.txt names no slot (os_prefix=a/ or b/); nothing was changed")
    config = files.config
    if cmd == "set-primary" and len(args) == 1:
        slot = _slot(args[0])
        writes: dict[str, str | None] = {}
        if slot == s.committed:
            writes[TRYBOOT] = None  # nothing to try: every boot starts it already
        else:
            writes[TRYBOOT] = with_os_prefix(config, slot)
        if slot in s.bad:
            writes[MARKS] = render_marks(s.bad - {slot})
        return Answer(writes=writes)
    if cmd == "set-state" and len(args) == 2 and args[1] in ("good", "bad"):
        slot = _slot(args[0])
        writes = {}
        if args[1] == "bad":
            if s.tryboot == slot:
                writes[TRYBOOT] = None
            if slot not in s.bad:
                writes[MARKS] = render_marks(s.bad | {slot})
            # the committed slot stays committed: there is no other known-good one to fall back to
            return Answer(writes=writes)
        if slot in s.bad:
            writes[MARKS] = render_marks(s.bad - {slot})
        if slot == s.booted and slot != s.committed:
            # the tried system is healthy: make it the one every boot starts
            writes[TRYBOOT] = None
            writes[CONFIG] = with_os_prefix(config, slot)
        return Answer(writes=writes)
    return Answer(exit=2, error=f"unknown backend command: {' '.join(argv)!r}")


def _slot(name: str) -> str:
    if name not in SLOTS:
        raise SlotError(f"{name!r} is not a bootname of this system (a or b)")
    return name
