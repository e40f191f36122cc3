"""``faxbridge backup --out FILE`` and ``faxbridge restore FILE``: the web UI's Backup page on a shell."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.config import Config, ConfigError, config_file, default_state_dir


def _passphrase(args: argparse.Namespace, twice: bool) -> str:
    """From --passphrase-file (its first line), else typed at a prompt (twice for a new backup)."""
    if args.passphrase_file:
        text = Path(args.passphrase_file).read_text(encoding="utf-8")
        return text.splitlines()[0] if text else ""
    if not sys.stdin.isatty():
        raise SystemExit("error: no terminal to ask for the passphrase: give --passphrase-file FILE")
    first = getpass.getpass("Passphrase: ")
    if twice and getpass.getpass("Passphrase again: ") != first:
        raise SystemExit("error: the two passphrases differ")
    return first


def cmd_backup(args: argparse.Namespace, load_args: Callable[[argparse.Namespace], Config]) -> int:
    from appliance.backup import bundle
    from appliance.backup.fileformat import passphrase_problem
    from appliance.fsutil import write_atomic

    cfg = load_args(args)
    out = Path(args.out) if args.out else Path(bundle.filename(cfg))
    passphrase = _passphrase(args, twice=True)
    problem = passphrase_problem(passphrase)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    data = bundle.make(cfg, passphrase)
    write_atomic(out, data, 0o600)
    print(f"{out}: {len(data)} bytes, encrypted; holds " + ", ".join(bundle.open_backup(data, passphrase).described()))
    return 0


def _owner_of(path: Path) -> tuple[int, int] | None:
    """Run as root on the box, the files must stay the service user's (the owner of the state
    directory), or the daemon could not read its own secrets."""
    if os.geteuid() != 0:
        return None
    st = path.stat()
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else None


def cmd_restore(args: argparse.Namespace, load_args: Callable[[argparse.Namespace], Config]) -> int:
    from appliance.backup import bundle
    from appliance.backup.contents import ContentError
    from appliance.backup.fileformat import MAX_FILE, BackupError
    from appliance.web.tomledit import TomlEditError

    try:
        cfg = load_args(args)
    except ConfigError as e:  # the file on the box is broken: a restore is how it gets fixed
        print(
            f"note: the current configuration does not load ({len(e.errors)} problem(s)); it is replaced",
            file=sys.stderr,
        )
        state = Path(args.state_dir).absolute() if args.state_dir else default_state_dir()
        cfg = Config.from_dict({}, base_dir=state)
    with open(args.file, "rb") as f:
        data = f.read(MAX_FILE + 1)
    passphrase = _passphrase(args, twice=False)
    try:
        contents = bundle.open_backup(data, passphrase)
        done = bundle.restore(cfg, contents)
    except (BackupError, ContentError) as e:
        print(f"error: {args.file}: the backup cannot be opened: {e}", file=sys.stderr)
        return 1
    except (bundle.RestoreRefused, TomlEditError) as e:
        print(f"error: {args.file}: {e}", file=sys.stderr)
        return 1
    except ConfigError as e:
        for err in e.errors:
            print(f"error: {err}", file=sys.stderr)
        print("nothing was restored", file=sys.stderr)
        return 1
    owner = _owner_of(cfg.base_dir)
    if owner is not None:
        written = [config_file(cfg), config_file(cfg).with_name("secrets.toml")]
        written += [bundle.tls_dir(cfg)] + [
            bundle.tls_dir(cfg) / n.removeprefix("tls/") for n in contents.files if n.startswith("tls/")
        ]
        for path in written:
            if path.exists():
                os.chown(path, *owner)
    print("restored: " + ", ".join(done.restored))
    print(_reload(done.config))
    return 0


def _reload(cfg: Config) -> str:
    """Ask a running daemon to reload; what waits for a restart, in words."""
    from appliance.control import ControlClient, ControlError
    from appliance.restarts import words

    later = "Restart the web UI (faxbridge-web, or the System page's Restart) so that it reads the restored files."
    try:
        reply = ControlClient(cfg.path(cfg.system.control_socket), timeout=10.0).request({"cmd": "reload"})
    except ControlError:
        return "The fax service is not running; it uses the restored configuration when it starts. " + later
    if not reply.get("ok"):
        return f"The fax service did not apply it: {reply.get('error', 'unknown error')}. " + later
    restart = [str(r) for r in reply.get("restart") or []]
    waiting = f" except {words(restart)}, which only a restart of the fax service puts into effect" if restart else ""
    return f"The fax service applied it{waiting}. " + later


def add_parsers(
    sub: Any,
    load_args: Callable[[argparse.Namespace], Config],
    add_config_arguments: Callable[[argparse.ArgumentParser], None],
) -> None:
    b = sub.add_parser(
        "backup",
        help="write an encrypted backup of the configuration, secrets and your "
        "certificates (as the web UI's Backup page)",
    )
    add_config_arguments(b)
    b.add_argument("--out", metavar="FILE", help="where to write it (default: faxbridge-backup-HOST-DATE.fxbk here)")
    b.add_argument(
        "--passphrase-file", metavar="FILE", help="read the passphrase from this file's first line (default: ask twice)"
    )
    b.set_defaults(func=lambda a: cmd_backup(a, load_args))

    r = sub.add_parser(
        "restore",
        help="restore an encrypted backup (.fxbk): checked completely first, nothing written unless all of it is valid",
    )
    add_config_arguments(r)
    r.add_argument("file", help="the .fxbk file")
    r.add_argument(
        "--passphrase-file", metavar="FILE", help="read the passphrase from this file's first line (default: ask)"
    )
    r.set_defaults(func=lambda a: cmd_restore(a, load_args))
