"""`faxbridge update`, `boot-health`, `rauc-backend` and `rauc-post-install` (decision 0019).

The last two are what RAUC runs (system.conf ``[handlers]``); they take their places from the
environment only for tests (``FAXBRIDGE_BOOT_DIR``, ``FAXBRIDGE_CMDLINE``), because RAUC passes
none.  The venv also has them as ``faxbridge-rauc-backend`` and ``faxbridge-rauc-post-install``
(pyproject.toml), since RAUC's handler settings name one program without arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.config import Config

if TYPE_CHECKING:
    from appliance.update.service import Paths


def _paths(args: argparse.Namespace | None = None) -> Paths:
    """The box's places; RAUC's programs get theirs from the environment in tests only."""
    from dataclasses import replace

    from appliance.update.service import Paths

    p = Paths()
    env_boot, env_cmdline = os.environ.get("FAXBRIDGE_BOOT_DIR"), os.environ.get("FAXBRIDGE_CMDLINE")
    if env_boot:
        p = replace(p, boot=Path(env_boot))
    if env_cmdline:
        p = replace(p, cmdline=Path(env_cmdline))
    if args is not None:
        if getattr(args, "state_dir", None):
            p = replace(p, state_dir=Path(args.state_dir).absolute())
        if getattr(args, "boot", None):
            p = replace(p, boot=Path(args.boot))
        if getattr(args, "work", None):
            p = replace(p, work=Path(args.work))
    return p


def cmd_update(args: argparse.Namespace) -> int:
    from appliance.update.commands import Commands
    from appliance.update.service import apply_request, status_lines, submit

    p = _paths(args)
    if args.status:
        for line in status_lines(p):
            print(line)
        return 0
    if args.apply_request:
        return apply_request(p, Commands(), reboot=not args.no_reboot)
    if not args.file:
        print("faxbridge update: name the update file (.raucb), or --status", file=sys.stderr)
        return 2
    return submit(p, Path(args.file))


def cmd_boot_health(args: argparse.Namespace, load: Callable[[argparse.Namespace], Config]) -> int:
    from appliance.config import ConfigError
    from appliance.update.checks import all_checks
    from appliance.update.commands import Commands
    from appliance.update.service import boot_health

    p = _paths(args)
    try:
        cfg = load(args)
    except ConfigError as e:
        # the checks still need the socket's, web's and spool's places: the defaults; a daemon
        # that cannot load the file fails its check and the trial is rolled back
        print(
            f"boot-health: the configuration does not load ({'; '.join(e.errors)}); checking with the defaults",
            file=sys.stderr,
        )
        cfg = Config.from_dict({}, base_dir=p.state_dir)
    return boot_health(p, Commands(), lambda: all_checks(cfg), timeout=args.timeout, reboot=not args.no_reboot)


def rauc_backend_main(argv: list[str] | None = None) -> int:
    from appliance.update.service import backend

    return backend(list(sys.argv[1:] if argv is None else argv), _paths())


def rauc_post_install_main(argv: list[str] | None = None) -> int:
    from appliance.update.commands import Commands
    from appliance.update.service import post_install

    return post_install(os.environ, _paths(), Commands())


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    load: Callable[[argparse.Namespace], Config],
    config_arguments: Callable[[argparse.ArgumentParser], None],
) -> None:
    from appliance.update.health import DEFAULT_TIMEOUT

    u = sub.add_parser(
        "update",
        help="install an update bundle (.raucb) into the other root slot and restart "
        "to try it (as root); --status shows the slots",
    )
    u.add_argument("file", nargs="?", help="the update bundle (.raucb)")
    u.add_argument("--status", action="store_true", help="the booted, committed and tried slots, and the last update")
    u.add_argument(
        "--apply-request",
        action="store_true",
        help="(faxbridge-update.service) install the bundle the web UI or `update FILE` handed over",
    )
    u.add_argument("--state-dir", metavar="DIR", help="the state directory (default: /var/lib/faxbridge)")
    u.add_argument("--boot", metavar="DIR", help="the boot partition (default: /boot/firmware)")
    u.add_argument("--work", metavar="DIR", help="root's copy of the bundle (default: /data/system/update)")
    u.add_argument("--no-reboot", action="store_true", help="install, but do not restart to try it")
    u.set_defaults(func=cmd_update)

    b = sub.add_parser(
        "boot-health",
        help="(faxbridge-health.service) commit a tried system when it is "
        "healthy, else go back to the old one; record how an update ended",
    )
    config_arguments(b)
    b.add_argument("--boot", metavar="DIR", help="the boot partition (default: /boot/firmware)")
    b.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a tried system has to become healthy (default {DEFAULT_TIMEOUT:.0f})",
    )
    b.add_argument("--no-reboot", action="store_true", help="decide and record, but do not reboot")
    b.set_defaults(func=lambda a: cmd_boot_health(a, load))

    rb = sub.add_parser(
        "rauc-backend",
        help="(RAUC) the custom bootloader backend: get-primary, set-primary "
        "SLOT, get-state SLOT, set-state SLOT good|bad, get-current",
    )
    rb.add_argument("argv", nargs=argparse.REMAINDER)
    rb.set_defaults(func=lambda a: rauc_backend_main(a.argv))

    rp = sub.add_parser(
        "rauc-post-install", help="(RAUC) copy the new slot's kernel, initrd and DTBs to the boot partition"
    )
    rp.set_defaults(func=lambda a: rauc_post_install_main([]))
