"""supervisor's configuration for `make run` and hosts without systemd, made from the template
``systemd/supervisord.conf.in`` with this machine's paths (decision 0016).

Why generated: supervisor reads absolute paths (the venv's command, the state directory), and a
file in the repository must hold no path of one machine.  ``render`` is pure; ``main`` writes the
file into the state directory, makes the directories supervisor writes to, and says where things
are (supervisor keeps the daemon's banner in its program log, not on the terminal).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from appliance.config import ConfigError, default_state_dir, parse_hostport
from appliance.startup import STATE_DIR_HELP, load_config, private_files

TEMPLATE = Path(__file__).resolve().parents[1] / "systemd" / "supervisord.conf.in"
#: supervisor's place in the state directory: its socket and pid file, and its logs under log/
RUN_DIR, LOG_DIR = "supervisor", "log/supervisor"


def render(
    template: str,
    *,
    state_dir: Path,
    bin_dir: Path,
    config: Path | None = None,
    terminal: bool = False,
    as_root: bool = False,
    rpc_password: str = "",
) -> str:
    """The template with the absolute paths filled in (``%`` doubled: supervisor expands it).

    The same path stands in a command (split like a shell line) and in settings such as
    ``logfile=`` (taken whole), so a path that would need quoting is refused, naming it.
    ``terminal``: the programs' output on supervisord's own stdout (``make run``), supervisor's
    own lines only in its log; ``as_root`` says so in the file (else supervisor warns on every
    start); ``rpc_password`` guards supervisor's socket (else it warns that nothing does)."""

    def value(path: Path) -> str:
        text = str(path)
        if not path.is_absolute() or any(c.isspace() or c in "\"';#\\" for c in text):
            raise ValueError(f"{text!r}: supervisor needs an absolute path without spaces, quotes, ';' or '#'")
        return text.replace("%", "%%")

    config_arg = f" --config {value(config)}" if config is not None else ""
    logs = value(state_dir / LOG_DIR)
    text = (
        template.replace("@STATE_DIR@", value(state_dir))
        .replace("@BIN@", value(bin_dir))
        .replace("@CONFIG_ARG@", config_arg)
        .replace("@SILENT@", "true" if terminal else "false")
        .replace("@RUN_AS@", "user=root" if as_root else "; runs as the user who started it")
        .replace("@RPC_PASSWORD@", rpc_password or secrets.token_urlsafe(24))
        .replace("@OUT_MAXBYTES@", "0" if terminal else "5MB")
        .replace("@OUT_BACKUPS@", "0" if terminal else "2")
    )
    for program in ("faxbridge", "faxbridge-web"):
        out = "/dev/stdout" if terminal else f"{logs}/{program}.out"
        text = text.replace(f"@OUT_{program.replace('-', '_').upper()}@", out)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m appliance.supervisorconf", description=__doc__)
    p.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_HELP)
    p.add_argument("--config", metavar="FILE", help="the configuration file both programs read")
    p.add_argument("--template", type=Path, default=TEMPLATE)
    p.add_argument(
        "--terminal",
        action="store_true",
        help="the programs' output on the terminal (make run), supervisor's own lines in its log",
    )
    args = p.parse_args(argv)
    private_files()
    state = Path(args.state_dir).absolute() if args.state_dir else default_state_dir()
    config = Path(args.config).absolute() if args.config else None
    # the venv's bin directory as invoked (not resolved: its python is a link to the system's)
    bin_dir = Path(sys.executable).absolute().parent
    try:
        text = render(
            args.template.read_text(),
            state_dir=state,
            bin_dir=bin_dir,
            config=config,
            terminal=args.terminal,
            as_root=os.geteuid() == 0,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for sub in (RUN_DIR, LOG_DIR):
        (state / sub).mkdir(parents=True, exist_ok=True)
    out = state / RUN_DIR / "supervisord.conf"
    out.write_text(text)
    out.chmod(0o600)  # it holds the password of supervisor's socket
    try:
        cfg = load_config(str(config) if config else None, state)
        host, port = parse_hostport(cfg.web.listen, 8080)
        web = f"{'https' if cfg.web.https else 'http'}://{f'[{host}]' if ':' in host else host}:{port}/"
        web = web if cfg.web.enabled else "switched off"
    except (ConfigError, ValueError) as e:  # the daemon reports it in its log, with every problem
        web = f"unknown, the configuration has a problem ({e})"
    where = "below" if args.terminal else f"in {state / LOG_DIR}/"
    print(
        f"Faxbridge under supervisor ({out}): the daemon and the web UI (web page: {web}).\n"
        f"Log: {state / 'log' / 'faxbridge.log'}; the programs' output {where}. Ctrl-C stops both.",
        file=sys.stderr,
    )
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
