"""``faxbridge backup`` and ``faxbridge restore`` as the owner runs them: real processes, real files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from appliance.backup import bundle
from appliance.config import Config

MAIN = '[spool]\ndir = "spool"\n[system]\nhostname = "frontdesk"\n[delivery]\nbackend = "smtp"\n' \
       'url = "smtp://127.0.0.1:2525"\nfrom = "fax@example.com"\nusername = "fax@example.com"\n' \
       '[routing]\ndefault = "faxes@example.com"\n'
SECRETS = '[delivery]\npassword = "Zz9-very-secret-pw"\n'
PASSPHRASE = "blue ocean seventeen kites"


def _faxbridge(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FAXBRIDGE_STATE_DIR"}
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          input=stdin, env=env, timeout=120)


def _box(state: Path) -> None:
    state.mkdir()
    (state / "faxbridge.toml").write_text(MAIN)
    (state / "secrets.toml").write_text(SECRETS)
    (state / "secrets.toml").chmod(0o600)


def test_backup_then_restore_on_a_fresh_state_directory(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _box(old)
    new.mkdir()
    pw = tmp_path / "pass.txt"
    pw.write_text(PASSPHRASE + "\n")
    out = tmp_path / "b.fxbk"
    made = _faxbridge("backup", "--state-dir", str(old), "--out", str(out), "--passphrase-file", str(pw))
    assert made.returncode == 0, made.stderr
    assert "encrypted" in made.stdout and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert b"Zz9" not in out.read_bytes()
    done = _faxbridge("restore", str(out), "--state-dir", str(new), "--passphrase-file", str(pw))
    assert done.returncode == 0, done.stderr
    assert "restored: the configuration (faxbridge.toml), the passwords and client secrets" in done.stdout
    assert "The fax service is not running" in done.stdout
    cfg = Config.load(new / "faxbridge.toml", state_dir=new)
    assert cfg.delivery.password == "Zz9-very-secret-pw" and cfg.system.hostname == "frontdesk"
    assert stat.S_IMODE((new / "secrets.toml").stat().st_mode) == 0o600


def test_a_wrong_passphrase_or_a_damaged_file_restores_nothing(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _box(old)
    new.mkdir()
    data = bundle.make(Config.load(old / "faxbridge.toml", state_dir=old), PASSPHRASE)
    out = tmp_path / "b.fxbk"
    out.write_bytes(data)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase at all\n")
    r = _faxbridge("restore", str(out), "--state-dir", str(new), "--passphrase-file", str(wrong))
    assert r.returncode == 1 and "the passphrase is wrong" in r.stderr
    out.write_bytes(data[:-10])
    right = tmp_path / "right.txt"
    right.write_text(PASSPHRASE)
    r = _faxbridge("restore", str(out), "--state-dir", str(new), "--passphrase-file", str(right))
    assert r.returncode == 1 and "cut short" in r.stderr
    assert list(new.iterdir()) == []


def test_without_a_terminal_or_a_passphrase_file_it_says_what_to_do(tmp_path: Path) -> None:
    state = tmp_path / "s"
    _box(state)
    r = _faxbridge("backup", "--state-dir", str(state), "--out", str(tmp_path / "b.fxbk"), stdin="")
    assert r.returncode != 0 and "--passphrase-file" in r.stderr and not (tmp_path / "b.fxbk").exists()


def test_a_weak_passphrase_makes_no_file(tmp_path: Path) -> None:
    state = tmp_path / "s"
    _box(state)
    pw = tmp_path / "p"
    pw.write_text("short\n")
    r = _faxbridge("backup", "--state-dir", str(state), "--out", str(tmp_path / "b.fxbk"), "--passphrase-file", str(pw))
    assert r.returncode == 1 and "at least 12 characters" in r.stderr and not (tmp_path / "b.fxbk").exists()


def test_the_passphrase_is_asked_for_on_a_terminal(tmp_path: Path) -> None:
    """Without --passphrase-file, on a terminal (a pty here): asked twice for a backup, each
    answer typed after its prompt (getpass flushes what was typed before it, as a terminal does)."""
    import pty
    import select

    state = tmp_path / "s"
    _box(state)
    out = tmp_path / "b.fxbk"
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "FAXBRIDGE_STATE_DIR"}
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "backup", "--state-dir", str(state), "--out", str(out)],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    said = b""
    answers = [b"Passphrase: ", b"Passphrase again: "]
    try:
        while True:
            readable, _, _ = select.select([master], [], [], 120)
            assert readable, f"no prompt: {said!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child exited and closed its end
                break
            if not chunk:
                break
            said += chunk
            if answers and said.endswith(answers[0]):
                answers.pop(0)
                os.write(master, PASSPHRASE.encode() + b"\n")
        assert proc.wait(timeout=120) == 0, said
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert not answers and PASSPHRASE.encode() not in said  # not echoed
    assert bundle.open_backup(out.read_bytes(), PASSPHRASE).files["faxbridge.toml"] == MAIN
