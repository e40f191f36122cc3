"""``faxbridge firstboot``: make the box unique and apply faxbridge.txt, at every boot.

The image calls it before the appliance's units start, with the boot (FAT) partition, the data
partition's state directory and the root file system (``/`` on the box, a plain directory in the
tests). It is safe to run at every boot and after a power cut at any moment: what exists is
kept, every file is written to a temporary name, synced and renamed, and a secret is erased from
the FAT file only after it is safely on the data partition.

- Once per device (kept on the data partition, in root's own directory): SSH host keys, machine-id, the web UI's session
  key and certificate (the web UI's own code). Nothing secret comes from the image.
- From faxbridge.txt: host name and time zone into the appliance's configuration (when the file's
  value changed since it was last applied, so a change in the web UI is not undone at the next
  boot); network and SSH files into the root, as the file says now; the Wi-Fi passphrase and the
  administrator password imported to the data partition and blanked in the file.
- The setup code (web/setupcode.py) while there is no password: on the boot partition, on the
  console; removed from both once a password is set.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.firstboot import bootconfig, network
from appliance.firstboot.bootconfig import BootConfig, Problem
from appliance.fsutil import write_atomic

if TYPE_CHECKING:
    from appliance.config import Config

BOOT_FILE = "faxbridge.txt"
CODE_FILE = "setup-code.txt"
#: agetty shows /etc/issue.d/*.issue above the login prompt on tty1 (the HDMI screen)
ISSUE = "etc/issue.d/faxbridge.issue"
SSHD_DROPIN = "etc/ssh/sshd_config.d/faxbridge.conf"
#: where sshd finds the admin's key (root-owned, world-readable; a copy made at every boot)
AUTHORIZED_KEYS = "etc/ssh/authorized_keys"
SSH_WANTS = "etc/systemd/system/multi-user.target.wants/ssh.service"
SSH_UNIT = "/lib/systemd/system/ssh.service"
#: the image's host name (and so NAME.local) while neither faxbridge.txt nor the settings name one
DEFAULT_NAME = "faxbridge"
#: the Unix user an authorised key logs in as (the image creates it)
ADMIN_USER = "admin"
HOST_KEY_TYPES = ("ed25519", "ecdsa")


@dataclass
class Report:
    """What a run did and what was wrong in faxbridge.txt, for the console and the web page."""

    problems: list[Problem] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    setup_code: str = ""


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode)


def _secret_dir(system: Path) -> Path:
    d = system
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    return d


def _load_state(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def read_boot_file(boot: Path) -> bytes | None:
    """faxbridge.txt, at most MAX_BYTES + 1 bytes of it (so the parser can say it was cut)."""
    try:
        with open(boot / BOOT_FILE, "rb") as f:
            return f.read(bootconfig.MAX_BYTES + 1)
    except FileNotFoundError:
        return None


def host_keys(system: Path, report: Report) -> list[Path]:
    """SSH host keys, made once per device on the data partition (write-then-rename)."""
    d = _secret_dir(system) / "ssh"
    d.mkdir(exist_ok=True, mode=0o700)
    keys = []
    for kind in HOST_KEY_TYPES:
        key = d / f"ssh_host_{kind}_key"
        keys.append(key)
        if key.exists() and key.with_suffix(".pub").exists():
            continue
        tmp = d / f".tmp_{kind}_{secrets.token_hex(4)}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"faxbridge-{kind}", "-f", str(tmp)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        for f in (tmp, Path(f"{tmp}.pub")):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(f"{tmp}.pub", key.with_suffix(".pub"))
        os.replace(tmp, key)  # the private key last: both exist once it does
        report.done.append(f"made the SSH host key {key.name}")
    return keys


def machine_id(system: Path, root: Path, report: Report) -> None:
    """A machine-id per device, kept on the data partition and put into the root at every boot."""
    kept = _secret_dir(system) / "machine-id"
    try:
        mid = kept.read_text().strip()
    except FileNotFoundError:
        mid = ""
    if len(mid) != 32 or not all(c in "0123456789abcdef" for c in mid):
        mid = secrets.token_hex(16)
        _write(kept, mid + "\n", 0o444)
        report.done.append("made the machine-id")
    target = root / "etc/machine-id"
    try:
        current = target.read_text().strip()
    except FileNotFoundError:
        current = ""
    if current != mid:
        _write(target, mid + "\n", 0o444)


def web_identity(state: Path, listen: str, hostname: str, https: bool, report: Report) -> None:
    """The web UI's session key and certificate, by the web UI's own code."""
    from appliance.web import tls
    from appliance.web.auth import AdminStore

    had_key = (state / "session.key").exists()
    AdminStore(state).session_key()
    if not had_key:
        report.done.append("made the web UI's session key")
    if https:
        cert, _ = tls.generated_paths(state)
        had_cert = cert.exists()
        tls.ensure_certificate(state, listen, hostname)
        if not had_cert:
            report.done.append("made the web UI's certificate")


def import_secrets(
    cfg: BootConfig, raw: bytes, boot: Path, system: Path, web_state: Path, state: dict, report: Report
) -> None:
    """The Wi-Fi passphrase and the admin password onto the data partition, then out of the FAT
    file (which a card reader anywhere can read)."""
    from appliance.web import setupcode
    from appliance.web.auth import AdminStore

    if cfg.wifi_passphrase:
        state["wifi"] = {"ssid": cfg.wifi_ssid, "passphrase": cfg.wifi_passphrase}
        _write(_secret_dir(system) / "state.json", json.dumps(state), 0o600)
        report.done.append("imported the Wi-Fi passphrase")
    if cfg.admin_password:
        AdminStore(web_state).set_password(cfg.admin_password)
        setupcode.void(web_state)
        report.done.append("set the administrator password from faxbridge.txt")
    if len(raw) > bootconfig.MAX_BYTES:  # read only in part: erase from the whole file
        raw = (boot / BOOT_FILE).read_bytes()
    if bootconfig.has_secrets(raw):
        _write(boot / BOOT_FILE, bootconfig.blank_secrets(raw), 0o644)
        report.done.append("erased the imported secrets from faxbridge.txt")


def apply_system(cfg: BootConfig, data: Path, root: Path, state: dict, report: Report) -> None:
    """Host name and time zone: into the root, and into the configuration when the file's value
    changed since it was last applied (a change made in the web UI since then stays)."""
    from appliance.config import CONFIG_NAME
    from appliance.web.tomledit import ConfigDoc

    applied = state.setdefault("applied", {})
    changes = {
        k: getattr(cfg, k) for k in ("hostname", "timezone") if getattr(cfg, k) and applied.get(k) != getattr(cfg, k)
    }
    if changes:
        doc = ConfigDoc.load(data / CONFIG_NAME)
        doc.state_dir = data
        for k, v in changes.items():
            doc.set("system", k, v)
        doc.save()
        applied.update(changes)
        report.done.append("configuration: " + ", ".join(f"system.{k} = {v}" for k, v in changes.items()))
    if cfg.hostname:
        _write(root / "etc/hostname", cfg.hostname + "\n")
        _write(
            root / "etc/hosts",
            f"127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{cfg.hostname}\n",
        )
    if cfg.timezone:
        _write(root / "etc/timezone", cfg.timezone + "\n")
        link = root / "etc/localtime"
        tmp = link.with_name(".localtime.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(f"/usr/share/zoneinfo/{cfg.timezone}")
        os.replace(tmp, link)


def apply_network(cfg: BootConfig, root: Path, state: dict, report: Report) -> None:
    """The network as faxbridge.txt says now; a blanked passphrase is the one imported for the
    same network."""
    wifi = state.get("wifi") or {}
    if cfg.wifi_ssid and not cfg.wifi_passphrase and wifi.get("ssid") == cfg.wifi_ssid:
        cfg.wifi_passphrase = str(wifi.get("passphrase", ""))
    for rel, content in network.files(cfg).items():
        path = root / rel
        if content is None:
            path.unlink(missing_ok=True)
        else:
            _write(path, content[0], content[1])


def apply_ssh(cfg: BootConfig, system: Path, root: Path, keys: list[Path], report: Report) -> None:
    """sshd uses the device's host keys and only the authorised key (no passwords); on or off.
    The key is kept in root's directory on the data partition and copied into the root at every
    boot: sshd reads a user's keys as that user, who cannot enter root's 0700 directory."""
    kept = _secret_dir(system) / "ssh" / "authorized_keys"
    lines = [
        "# Written by faxbridge firstboot: host keys on the data partition, keys only.",
        *[f"HostKey {k}" for k in keys],
        f"AuthorizedKeysFile /{AUTHORIZED_KEYS}/%u",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        f"AllowUsers {ADMIN_USER}",
        "",
    ]
    _write(root / SSHD_DROPIN, "\n".join(lines))
    if cfg.ssh_authorized_key:
        kept.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(kept / ADMIN_USER, cfg.ssh_authorized_key + "\n", 0o600)
    public = root / AUTHORIZED_KEYS / ADMIN_USER
    if (kept / ADMIN_USER).exists():
        public.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(public.parent, 0o755)  # made under the CLI's umask 077: sshd reads it as the user
        _write(public, (kept / ADMIN_USER).read_bytes(), 0o644)
    else:
        public.unlink(missing_ok=True)
    wants = root / SSH_WANTS
    if cfg.ssh:
        if not wants.is_symlink():
            wants.parent.mkdir(parents=True, exist_ok=True)
            wants.symlink_to(SSH_UNIT)
        if not (kept / ADMIN_USER).exists():
            report.problems.append(
                Problem(
                    0, "ssh = on, but no ssh_authorized_key was ever given: nobody can log in (SSH takes no passwords)"
                )
            )
    elif wants.is_symlink():
        wants.unlink()


def setup_code(boot: Path, root: Path, web_state: Path, report: Report, hostname: str = "") -> None:
    """While there is no password: the code on the boot partition and the console. After: gone."""
    from appliance.web import setupcode
    from appliance.web.auth import AdminStore

    on_boot = boot / CODE_FILE
    if AdminStore(web_state).has_password():
        setupcode.void(web_state)
        on_boot.unlink(missing_ok=True)
        return
    code = setupcode.ensure(web_state)
    report.setup_code = code
    text = (
        f"Faxbridge setup code: {code}\r\n\r\nOpen https://{hostname or DEFAULT_NAME}.local/ "
        "(or the address on the box's screen) and type this code to choose the administrator "
        "password.\r\nThe code works once; it is void when the password is set.\r\n"
    )
    if not on_boot.exists() or code not in on_boot.read_text("utf-8", "replace"):
        _write(on_boot, text, 0o644)
    setupcode.store(web_state, code, [on_boot])


def _console(path: Path, code: str, problems: list[Problem] | None = None, hostname: str = "") -> None:
    lines = [f"Faxbridge: open https://\\4/ or https://{hostname or DEFAULT_NAME}.local/ in a browser.", ""]
    if code:
        lines[1:1] = [f"Setup code for the first start: {code}"]
    for p in problems or []:
        lines.append(f"  {p}")
    _write(path, "\n".join(lines) + "\n")


def _configuration(data: Path, report: Report | None) -> Config:
    """The appliance's configuration for the web state directory and listen address; its
    defaults when the file is broken (the web UI and check-config say what is wrong)."""
    from appliance.config import Config, ConfigError
    from appliance.startup import load_config

    try:
        return load_config(None, data)
    except ConfigError as e:
        if report is not None:
            report.problems.append(
                Problem(
                    0,
                    f"the configuration cannot be read ({'; '.join(e.errors)}): "
                    "its defaults were used for the web UI's files",
                )
            )
        return Config.from_dict({}, base_dir=data)


def sweep(boot: Path, data: Path, system: Path, root: Path) -> None:
    """Temporary files of a run that a power cut ended (write_atomic's ``.NAME.*.tmp``, ssh-keygen's
    ``.tmp_*``), in the directories this command writes."""
    dirs = [
        boot,
        data,
        system,
        system / "ssh",
        data / "web",
        data / "web" / "tls",
        *{
            (root / rel).parent
            for rel in (*network.files(BootConfig(wifi_ssid="x")), ISSUE, SSHD_DROPIN, "etc/hostname")
        },
    ]
    for d in dirs:
        if d.is_dir():
            for p in d.iterdir():
                if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.startswith(".tmp_")):
                    p.unlink(missing_ok=True)


def hand_over(data: Path, web_state: Path, user: str) -> None:
    """The files the appliance's units read and write belong to their user (firstboot runs as
    root); the host keys and firstboot's own state stay root's (sshd insists)."""
    import pwd

    entry = pwd.getpwnam(user)
    targets = [
        data,
        web_state,
        *web_state.rglob("*"),
        *(data / n for n in ("faxbridge.toml", "secrets.toml") if (data / n).exists()),
    ]
    for p in targets:
        os.chown(p, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def firstboot(boot: Path, data: Path, root: Path, user: str = "", system: Path | None = None) -> Report:
    """Everything above, in an order that a power cut at any point leaves restartable.
    ``user``: the appliance's service user, who gets the configuration and the web state.
    ``system``: root's own directory for the host keys, the machine-id and the imported Wi-Fi
    passphrase (default ``DATA/firstboot``; on the box outside the state directory, which the
    service user owns and could otherwise rename)."""
    from appliance.config import parse_hostport

    boot, data, root = Path(boot), Path(data), Path(root)
    system = Path(system) if system is not None else data / "firstboot"
    report = Report()
    state_path = _secret_dir(system) / "state.json"
    state = _load_state(state_path)
    raw = read_boot_file(boot)
    cfg = BootConfig()
    if raw is not None:
        cfg, report.problems = bootconfig.parse(raw)
    sweep(boot, data, system, root)
    machine_id(system, root, report)
    keys = host_keys(system, report)
    app_cfg = _configuration(data, report)
    web_state = app_cfg.path(app_cfg.web.state_dir)
    web_state.mkdir(parents=True, exist_ok=True, mode=0o700)
    if raw is not None:
        import_secrets(cfg, raw, boot, system, web_state, state, report)
    try:
        apply_system(cfg, data, root, state, report)
    except ValueError as e:  # ConfigError, TomlEditError: the configuration file is the problem
        report.problems.append(Problem(0, f"host name and time zone not applied: {e}"))
    _write(state_path, json.dumps(state), 0o600)
    app_cfg = _configuration(data, None)
    web_identity(
        web_state,
        parse_hostport(app_cfg.web.listen, 8080)[0],
        cfg.hostname or app_cfg.system.hostname,
        app_cfg.web.https and not app_cfg.web.cert_file,
        report,
    )
    apply_network(cfg, root, state, report)
    apply_ssh(cfg, system, root, keys, report)
    name = cfg.hostname or app_cfg.system.hostname
    setup_code(boot, root, web_state, report, name)
    _console(root / ISSUE, report.setup_code, report.problems, name)
    from appliance.web.auth import BOOT_PROBLEMS

    _write(web_state / BOOT_PROBLEMS, json.dumps([str(p) for p in report.problems]), 0o600)
    if user:
        hand_over(data, web_state, user)
    return report
