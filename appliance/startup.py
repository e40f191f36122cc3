"""What every faxbridge process agrees on when it starts: where the configuration comes from
(--config, --state-dir, the state directory's file, else the embedded defaults), the umask of the
files it writes, and how the web process knows that ``faxbridge run`` restarts it.

The command line (``cli.py``), the web server, supervisor's configuration and first boot all
start processes or load the configuration the same way; they take it from here, below all of
them, so none of them imports the command line.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from appliance.config import CONFIG_NAME, STATE_DIR_ENV, Config, default_state_dir

CONFIG_HELP = (
    f"TOML configuration file (default: {CONFIG_NAME} in the state directory, which the web UI "
    "writes, when it exists; else the embedded defaults)"
)
STATE_DIR_HELP = (
    f"the state directory: spool, web state, log, control socket and {CONFIG_NAME}; every "
    f"relative path in the configuration is relative to it (default: ${STATE_DIR_ENV}, "
    "else ./var)"
)

#: set in the web process's environment by `faxbridge run`, which restarts it with itself
WEB_PARENT_ENV = "FAXBRIDGE_WEB_PARENT"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config and --state-dir, worded the same for every command that reads the configuration."""
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    parser.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_HELP)


def state_dir_of(args: argparse.Namespace) -> Path:
    """--state-dir, else $FAXBRIDGE_STATE_DIR, else ./var: absolute, as every process must agree."""
    given = getattr(args, "state_dir", None)
    return Path(given).absolute() if given else default_state_dir()


def load_config(path: str | None, state_dir: Path | None = None) -> Config:
    """The named file; else faxbridge.toml in the state directory when the web UI has written one;
    else the embedded defaults (loopback, Maildir in the state directory).  Relative paths are
    relative to the state directory in every case."""
    state = state_dir if state_dir is not None else default_state_dir()
    if path:
        return Config.load(path, state_dir=state)
    if (state / CONFIG_NAME).is_file():
        return Config.load(state / CONFIG_NAME, state_dir=state)
    return Config.from_dict({}, base_dir=state)


def load_args(args: argparse.Namespace) -> Config:
    """The configuration a command's --config and --state-dir name."""
    return load_config(getattr(args, "config", None), state_dir_of(args))


def private_files() -> None:
    """Files this process creates are its user's alone (umask 077): faxes, the spool database,
    logs and rendered pages name callers and carry their documents. systemd's UMask=0077 says
    the same for the units; this covers `make run`, a shell and the web process it starts."""
    os.umask(0o077)
