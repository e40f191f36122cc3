"""Encrypted backups through the web UI: the Backup page makes one (passphrase twice), a fresh
box restores it on the Backup page or in the wizard's first step, and every wrong file (wrong
passphrase, cut short, changed, another version, huge, not a backup) is named and writes nothing.

Real app, real files, the real scrypt parameters."""

from __future__ import annotations

import hashlib
import html
import io
import re
import stat
import struct
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from webauth import PASSWORD, csrf, login

from appliance.backup import bundle, fileformat
from appliance.backup.contents import Contents
from appliance.config import Config
from appliance.web.app import create_app

BOX_TOML = """# Faxbridge at the front desk (comments survive a backup)
[spool]
dir = "spool"

[system]
hostname = "frontdesk"

[delivery]
backend = "smtp"
url = "smtp://127.0.0.1:2525"
from = "fax@example.com"
username = "fax@example.com"

[routing]
default = "faxes@example.com"

[[sip.peers]]
name = "gw1"
match = "192.0.2.10"
username = "gw1"
"""
SECRETS_TOML = '[delivery]\npassword = "Zz9-very-secret-pw"\n\n[[sip.peers]]\nname = "gw1"\npassword = "peer-Secret-77"\n'
PASSPHRASE = "blue ocean seventeen kites"


def _post(client: FlaskClient, url: str, data: dict, **kw) -> object:
    return client.post(url, data={"csrf_token": csrf(client), **data}, **kw)


def _owner_certificate(state: Path) -> None:
    """The owner's own HTTPS certificate, as /account/certificate installs it."""
    from appliance.web import tls

    made_cert, made_key = tls.ensure_certificate(state / "made", "127.0.0.1", "frontdesk.example")
    cert, key = tls.uploaded_paths(state)
    cert.parent.mkdir(parents=True, exist_ok=True)
    cert.write_bytes(made_cert.read_bytes())
    key.write_bytes(made_key.read_bytes())


@pytest.fixture
def old_box(box: Path) -> Path:
    """The box that was set up: its secrets and an owner's certificate beside BOX_TOML."""
    secrets = box.with_name("secrets.toml")
    secrets.write_text(SECRETS_TOML)
    secrets.chmod(0o600)
    _owner_certificate(box.parent / "web")
    return box


@pytest.fixture
def backup(old_box: Path, web: FlaskClient) -> bytes:
    r = _post(web, "/settings/backup/encrypted", {"passphrase": PASSPHRASE, "confirm": PASSPHRASE})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert re.fullmatch(r'attachment; filename="faxbridge-backup-frontdesk-\d{4}-\d\d-\d\d\.fxbk"',
                        r.headers["Content-Disposition"])
    assert r.headers["Cache-Control"] == "no-store"
    return r.get_data()


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[FlaskClient, Path]:
    """A new card: no configuration file, nothing in the state directory but what the web UI
    makes on its first start (the owner has just chosen a new password)."""
    state = tmp_path / "fresh"
    state.mkdir()
    client = create_app(Config.from_dict({"spool": {"dir": "spool"}}, base_dir=state)).test_client()
    login(client, "a new password for the new card")
    return client, state


def _restore(client: FlaskClient, data: bytes, passphrase: str = PASSPHRASE, url: str = "/settings/restore",
             name: str = "b.fxbk") -> object:
    return _post(client, url, {"file": (io.BytesIO(data), name), "passphrase": passphrase},
                 content_type="multipart/form-data")


def _snapshot(state: Path) -> dict[str, bytes]:
    return {str(p.relative_to(state)): p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()}


def _text(r: object) -> str:
    return html.unescape(r.get_data(as_text=True))  # type: ignore[attr-defined]


def test_the_backup_holds_everything_needed_and_no_secret_in_clear(backup: bytes) -> None:
    assert fileformat.looks_sealed(backup)
    for secret in (b"Zz9-very-secret-pw", b"peer-Secret-77", b"frontdesk", b"PRIVATE KEY"):
        assert secret not in backup
    contents = bundle.open_backup(backup, PASSPHRASE)
    assert set(contents.files) == {"faxbridge.toml", "secrets.toml", "tls/owner-cert.pem", "tls/owner-key.pem"}
    assert contents.files["faxbridge.toml"] == BOX_TOML and contents.files["secrets.toml"] == SECRETS_TOML
    assert contents.hostname == "frontdesk"


def test_the_administrator_password_and_session_key_stay_on_the_box(old_box: Path, backup: bytes) -> None:
    contents = bundle.open_backup(backup, PASSPHRASE)
    admin = (old_box.parent / "web" / "admin.json").read_text()
    key = (old_box.parent / "web" / "session.key").read_bytes()
    everything = "".join(contents.files.values())
    assert admin.split('"hash": "')[1].split('"')[0] not in everything
    assert key.hex() not in everything and "session" not in " ".join(contents.files)


def test_secrets_never_leave_unencrypted(old_box: Path, web: FlaskClient) -> None:
    """The old "download with passwords" (plain TOML after the admin password) is gone."""
    r = _post(web, "/settings/backup/config-with-secrets.toml", {"password": PASSWORD})
    assert r.status_code in (404, 405)
    page = _text(web.get("/settings/backup"))
    assert "config-with-secrets" not in page and "Download the encrypted backup" in page


@pytest.mark.parametrize("passphrase, confirm, said", [
    ("short one", "short one", "at least 12 characters"),
    (PASSPHRASE, PASSPHRASE + " ", "The two passphrases differ."),
    ("aaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaa", "more different characters"),
])
def test_a_weak_or_mistyped_passphrase_is_refused(old_box: Path, web: FlaskClient, passphrase: str, confirm: str,
                                                  said: str) -> None:
    r = _post(web, "/settings/backup/encrypted", {"passphrase": passphrase, "confirm": confirm})
    assert r.status_code == 400 and said in _text(r)
    assert "attachment" not in r.headers.get("Content-Disposition", "")


def test_a_fresh_box_restores_the_backup_on_the_backup_page(backup: bytes, old_box: Path,
                                                             fresh: tuple[FlaskClient, Path]) -> None:
    client, state = fresh
    admin_before = (state / "web" / "admin.json").read_bytes()
    key_before = (state / "web" / "session.key").read_bytes()
    reloaded: list[tuple[str, str]] = []
    client.application.extensions["faxbridge_tls_reload"] = lambda cert, key: reloaded.append((cert, key))
    r = _restore(client, backup)
    assert r.status_code == 302, _text(r)
    page = _text(client.get("/settings/backup"))
    assert "Restored the configuration (faxbridge.toml), the passwords and client secrets (secrets.toml)" in page
    assert (state / "faxbridge.toml").read_text() == BOX_TOML
    secrets = state / "secrets.toml"
    assert secrets.read_text() == SECRETS_TOML and stat.S_IMODE(secrets.stat().st_mode) == 0o600
    cfg = Config.load(state / "faxbridge.toml", state_dir=state)
    assert cfg.delivery.password == "Zz9-very-secret-pw" and cfg.sip.peers[0].password == "peer-Secret-77"
    for name in ("owner-cert.pem", "owner-key.pem"):
        restored = state / "web" / "tls" / name
        assert restored.read_bytes() == (old_box.parent / "web" / "tls" / name).read_bytes()
        assert stat.S_IMODE(restored.stat().st_mode) == 0o600
    # the web process was handed the restored certificate at once (as /account/certificate does)
    assert reloaded == [(str(state / "web" / "tls" / "owner-cert.pem"), str(state / "web" / "tls" / "owner-key.pem"))]
    # the owner's new password and this box's session key are untouched: still logged in
    assert (state / "web" / "admin.json").read_bytes() == admin_before
    assert (state / "web" / "session.key").read_bytes() == key_before
    assert client.get("/settings/system").status_code == 200


def _edit(data: bytes, at: int, value: bytes, redigest: bool = True) -> bytes:
    body = bytearray(data[:-32])
    body[at:at + len(value)] = value
    return bytes(body) + (hashlib.sha256(bytes(body)).digest() if redigest else data[-32:])


def _bad_files(backup: bytes) -> dict[str, tuple[bytes, str, str]]:
    """name -> (file, passphrase, what the page must say)"""
    flipped = bytearray(backup)
    flipped[fileformat.HEADER.size + 5] ^= 1
    return {
        "wrong passphrase": (backup, "another passphrase here", "the passphrase is wrong"),
        "no passphrase": (backup, "", "this backup is encrypted: type the passphrase"),
        "cut short": (backup[:-200], PASSPHRASE, "cut short"),
        "a bit flipped": (bytes(flipped), PASSPHRASE, "damaged: its checksum does not match"),
        "changed with the checksum remade": (_edit(backup, fileformat.HEADER.size + 5, b"\x00\x01"), PASSPHRASE,
                                             "the file was changed after it was made"),
        "another version": (_edit(backup, 8, struct.pack(">H", 2)), PASSPHRASE,
                            "a backup in format 2; this Faxbridge reads format 1 (made by a newer Faxbridge"),
        "huge": (backup + bytes(2 * 1024 * 1024), PASSPHRASE, "larger than 1024 KiB"),
        "not a backup": (b"PK\x03\x04 a zip file, renamed", PASSPHRASE, "not a Faxbridge backup (.fxbk file)"),
        "cut short, no passphrase": (backup[:5], "", "cut short: only 5 bytes"),
    }


@pytest.mark.parametrize("case", ["wrong passphrase", "no passphrase", "cut short", "a bit flipped",
                                  "changed with the checksum remade", "another version", "huge", "not a backup",
                                  "cut short, no passphrase"])
@pytest.mark.parametrize("where", ["/settings/restore", "/setup/restore"])
def test_a_bad_file_is_named_and_nothing_is_written(backup: bytes, fresh: tuple[FlaskClient, Path],
                                                    case: str, where: str) -> None:
    client, state = fresh
    data, passphrase, said = _bad_files(backup)[case]
    before = _snapshot(state)
    r = _restore(client, data, passphrase, where)
    text = _text(r)
    if case == "huge":  # over the request limit of a logged-in page: refused before any view
        assert r.status_code == 413 and "larger than 2048 KiB" in text
    else:
        assert r.status_code == 400 and said in text, text
        assert ("Nothing was changed" if where == "/settings/restore" else "Nothing was restored") in text
    assert _snapshot(state) == before


def test_a_huge_file_under_the_request_limit_is_refused_by_size(backup: bytes,
                                                                fresh: tuple[FlaskClient, Path]) -> None:
    client, state = fresh
    before = _snapshot(state)
    r = _restore(client, backup + bytes(1024 * 1024))
    assert r.status_code == 400 and "larger than 1024 KiB" in _text(r)
    assert _snapshot(state) == before


def _sealed(files: dict[str, str]) -> bytes:
    return fileformat.seal(Contents(files).to_bytes(), PASSPHRASE, fileformat.KdfParams(10, 8, 1))


def test_a_backup_this_box_cannot_take_is_refused_and_its_certificates_are_not_left_behind(
        backup: bytes, fresh: tuple[FlaskClient, Path]) -> None:
    """The files open, but the configuration is invalid here: the certificates it brought were
    written first (a configuration may name them) and are taken back."""
    client, state = fresh
    files = bundle.open_backup(backup, PASSPHRASE).files
    files["faxbridge.toml"] += '\n[fax]\nident = "not a number at all, far too long"\n'
    before = _snapshot(state)
    r = _restore(client, _sealed(files))
    assert r.status_code == 400 and "fax.ident" in _text(r)
    assert _snapshot(state) == before and not (state / "web" / "tls" / "owner-cert.pem").exists()


@pytest.mark.parametrize("change, said", [
    (lambda f: f.update({"tls/owner-key.pem": f["tls/owner-key.pem"].replace("A", "B", 3)}),
     "the web page's certificate in the backup"),
    (lambda f: f.update({"faxbridge.toml": f["faxbridge.toml"] + '[web]\nstate_dir = "/elsewhere"\n'}),
     "may not move the web state"),
    (lambda f: f.update({"secrets.toml": "[delivery\n"}), "the backup's secrets.toml is not valid TOML"),
    (lambda f: f.update({"faxbridge.toml": "[routing\n"}), "the backup's faxbridge.toml is not valid TOML"),
])
def test_what_the_backup_holds_is_checked_like_any_restore(backup: bytes, fresh: tuple[FlaskClient, Path],
                                                           change, said: str) -> None:  # type: ignore[no-untyped-def]
    client, state = fresh
    files = bundle.open_backup(backup, PASSPHRASE).files
    change(files)
    before = _snapshot(state)
    r = _restore(client, _sealed(files))
    assert r.status_code == 400 and said in _text(r), _text(r)
    assert _snapshot(state) == before


def test_a_plain_configuration_still_restores_and_keeps_the_secrets(old_box: Path, web: FlaskClient) -> None:
    plain = web.get("/settings/backup/config.toml").get_data()
    assert b"Zz9" not in plain
    r = _restore(web, plain.replace(b"faxes@example.com", b"all@example.com"), "", name="faxbridge.toml")
    assert r.status_code == 302, _text(r)
    assert Config.load(old_box).routing.default == "all@example.com"
    assert Config.load(old_box).delivery.password == "Zz9-very-secret-pw"


def test_the_wizard_restores_a_backup_and_goes_straight_to_the_end(backup: bytes,
                                                                    fresh: tuple[FlaskClient, Path]) -> None:
    client, state = fresh
    step1 = _text(client.get("/setup/system"))
    assert "Restore a backup instead" in step1 and 'action="/setup/restore"' in step1
    r = _restore(client, backup, url="/setup/restore")
    assert r.status_code == 302 and r.headers["Location"].endswith("/setup/done")
    done = _text(client.get("/setup/done"))
    assert ("Restored from the backup: the configuration (faxbridge.toml), the passwords and client secrets "
            "(secrets.toml), the web page's certificate you installed, the web page's certificate key you "
            "installed.") in done
    assert "frontdesk" in done and "faxes@example.com" in done  # the summary is the restored box's
    assert Config.load(state / "faxbridge.toml", state_dir=state).delivery.password == "Zz9-very-secret-pw"


def test_a_restore_that_changes_what_the_web_reads_at_start_raises_the_restart_banner(
        backup: bytes, fresh: tuple[FlaskClient, Path]) -> None:
    client, state = fresh
    files = bundle.open_backup(backup, PASSPHRASE).files
    files["faxbridge.toml"] += '\n[web]\nsession_hours = 4\n'
    r = _restore(client, _sealed(files), url="/setup/restore")
    assert r.status_code == 302, _text(r)
    page = _text(client.get("/setup/done"))
    banner = re.search(r'<div class="restart-needed"[^>]*>(.*?)</div>', page, re.S)
    assert banner and "how long a login lasts" in banner.group(1)


def test_a_sip_certificate_the_configuration_names_is_in_place_before_the_configuration_is_checked(
        tmp_path: Path, fresh: tuple[FlaskClient, Path]) -> None:
    """Loading a configuration checks that sip.tls_cert and tls_key exist: restored together,
    the certificate files go first, or a fresh box could never take such a backup."""
    from appliance.web import tls

    client, state = fresh
    cert, key = tls.ensure_certificate(tmp_path / "made", "127.0.0.1", "sip.example")
    main = ('[spool]\ndir = "spool"\n[sip]\nlisten = ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061"]\n'
            'tls_cert = "web/tls/sip-cert.pem"\ntls_key = "web/tls/sip-key.pem"\n')
    r = _restore(client, _sealed({"faxbridge.toml": main, "tls/sip-cert.pem": cert.read_text(),
                                  "tls/sip-key.pem": key.read_text()}))
    assert r.status_code == 302, _text(r)
    cfg = Config.load(state / "faxbridge.toml", state_dir=state)
    assert cfg.path(cfg.sip.tls_cert).read_bytes() == cert.read_bytes()
    assert "the SIP TLS certificate you uploaded" in _text(client.get("/settings/backup"))
