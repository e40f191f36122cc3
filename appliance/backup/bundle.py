"""Make a backup of a box's state directory, and restore one into it: for the web UI and the CLI.

A restore is checked completely before anything is written: the file (fileformat), its contents
(contents), both TOML files with the daemon's own parser, the web state directory staying where
it is, the certificates loading with their keys; then the configuration is validated as the
settings pages validate it (``ConfigDoc.restore``).  The certificates are written before the
configuration (it may name them, and loading it checks that they exist) and put back as they
were if the configuration is then refused.  Every file is written atomically, 0600 for secrets.
"""

from __future__ import annotations

import datetime
import re
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path

from appliance.backup import fileformat
from appliance.backup.contents import FILES, ContentError, Contents
from appliance.config import Config, WebConfig, config_file
from appliance.fsutil import write_atomic

SUFFIX = ".fxbk"


class RestoreRefused(ValueError):
    """The backup opened but cannot be restored on this box; ``str()`` says why."""


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"faxbridge {version('faxbridge')}"
    except Exception:  # noqa: BLE001 - not installed as a distribution (a bare checkout)
        return "faxbridge"


def hostname(cfg: Config) -> str:
    return cfg.system.hostname or socket.gethostname()


def filename(cfg: Config, now: datetime.datetime | None = None) -> str:
    """``faxbridge-backup-<hostname>-<date>.fxbk``, the date in the box's time zone."""
    from appliance import localtime

    now = now or datetime.datetime.now(datetime.UTC)
    tz = localtime.zone(cfg.system.timezone)
    day = now.astimezone(tz).strftime("%Y-%m-%d")
    name = re.sub(r"[^A-Za-z0-9-]+", "-", hostname(cfg)).strip("-")[:63] or "faxbridge"
    return f"faxbridge-backup-{name}-{day}{SUFFIX}"


def tls_dir(cfg: Config) -> Path:
    return cfg.path(cfg.web.state_dir) / "tls"


def _where(cfg: Config, name: str) -> Path:
    """Where a backup's file lives on this box."""
    if name == "faxbridge.toml":
        return config_file(cfg)
    if name == "secrets.toml":
        return config_file(cfg).with_name("secrets.toml")
    assert name.startswith("tls/") and name in FILES
    return tls_dir(cfg) / name.removeprefix("tls/")


def collect(cfg: Config) -> Contents:
    """This box's files for a backup: the configuration as saved (the embedded defaults when
    nothing was saved yet), secrets.toml, and the certificates the owner put in the web state."""
    files: dict[str, str] = {}
    main = config_file(cfg)
    if main.exists():
        files["faxbridge.toml"] = main.read_text(encoding="utf-8")
    else:
        from appliance.web.tomledit import ConfigDoc

        files["faxbridge.toml"] = ConfigDoc.load(main, cfg).main_text()
    for name in FILES:
        if name == "faxbridge.toml":
            continue
        try:
            files[name] = _where(cfg, name).read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
    for cert, key in (("tls/owner-cert.pem", "tls/owner-key.pem"), ("tls/sip-cert.pem", "tls/sip-key.pem")):
        if (cert in files) != (key in files):  # half a pair is of no use: leave both out
            files.pop(cert, None), files.pop(key, None)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return Contents(files, hostname=hostname(cfg), created=now, made_by=_version())


def make(cfg: Config, passphrase: str, params: fileformat.KdfParams = fileformat.DEFAULT_KDF) -> bytes:
    """The sealed backup of this box (ValueError for a passphrase ``passphrase_problem`` refuses)."""
    problem = fileformat.passphrase_problem(passphrase)
    if problem:
        raise ValueError(problem)
    return fileformat.seal(collect(cfg).to_bytes(), passphrase, params)


def open_backup(data: bytes, passphrase: str) -> Contents:
    """The contents of a sealed backup; BackupError or ContentError naming the problem."""
    return Contents.from_bytes(fileformat.unseal(data, passphrase))


def web_state_move(cfg: Config, text: str) -> str | None:
    """A restore may not move web.state_dir: the administrator password lives there, so moving
    it would reopen the first-start page to anyone after the next restart.  Compared as resolved
    paths, the way the restored file will be read: a backup without the key means the default,
    relative to the state directory like every relative path."""
    try:
        web = tomllib.loads(text).get("web", {})
    except tomllib.TOMLDecodeError:
        return None  # the restore itself reports the syntax error
    if not isinstance(web, dict):
        return None  # so does validation
    wanted = web.get("state_dir", WebConfig().state_dir)
    if not isinstance(wanted, str) or not wanted:
        return None
    here = cfg.path(cfg.web.state_dir).resolve()
    there = cfg.path(wanted).resolve()
    if there != here:
        said = f"web.state_dir = {wanted!r}" if "state_dir" in web else "no web.state_dir (the default)"
        return (
            f"the backup has {said}, which is {there}; this box keeps its web state in {here}. A restore "
            "may not move the web state (it holds the administrator password): put "
            f'state_dir = "{here}" in the file\'s [web] section, or change it on the box.'
        )
    return None


def _certificate_problems(contents: Contents) -> list[str]:
    from appliance.tlskeys import pair_problem

    problems = []
    files = contents.files
    if "tls/owner-cert.pem" in files:
        p = pair_problem(files["tls/owner-cert.pem"].encode(), files["tls/owner-key.pem"].encode())
        if p:
            problems.append(f"the web page's certificate in the backup: {p}")
    if "tls/sip-cert.pem" in files:
        p = pair_problem(files["tls/sip-cert.pem"].encode(), files["tls/sip-key.pem"].encode(), refuse_expired=False)
        if p:
            problems.append(f"the SIP TLS certificate in the backup: {p}")
    return problems


@dataclass
class Restored:
    """A restore that happened: the configuration now saved and what was written, in words."""

    config: Config
    restored: list[str]
    contents: Contents
    #: the web page's own certificate changed (the web process may load it at once)
    web_certificate: bool


def restore(cfg: Config, contents: Contents) -> Restored:
    """Put an opened backup's files in place on the box ``cfg`` describes; RestoreRefused,
    ConfigError or TomlEditError (and OSError) with nothing left changed."""
    from appliance.web.tomledit import ConfigDoc, TomlEditError

    main = contents.files["faxbridge.toml"]
    secrets = contents.files.get("secrets.toml", "")
    for name, text in (("faxbridge.toml", main), ("secrets.toml", secrets)):
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise TomlEditError(f"the backup's {name} is not valid TOML: {e}") from None
    moved = web_state_move(cfg, main)
    if moved:
        raise RestoreRefused(moved)
    problems = _certificate_problems(contents)
    if problems:
        raise RestoreRefused("; ".join(problems))
    doc = ConfigDoc.for_config(cfg)
    tls = [n for n in contents.files if n.startswith("tls/")]
    before: dict[str, bytes | None] = {}
    try:
        for name in tls:
            path = _where(cfg, name)
            try:
                before[name] = path.read_bytes()
            except FileNotFoundError:
                before[name] = None
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(path, contents.files[name], 0o600)
        new = doc.restore(main, secrets)
    except BaseException:
        for name, old in before.items():
            path = _where(cfg, name)
            if old is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, old, 0o600)
        raise
    return Restored(new, contents.described(), contents, web_certificate="tls/owner-cert.pem" in contents.files)


__all__ = [
    "SUFFIX",
    "ContentError",
    "Contents",
    "RestoreRefused",
    "Restored",
    "collect",
    "filename",
    "make",
    "open_backup",
    "restore",
    "web_state_move",
]
