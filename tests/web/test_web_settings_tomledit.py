"""tomledit: edits keep the owner's file as written, secrets follow their entries, writes are
atomic and validated first."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from appliance.config import Config, ConfigError
from appliance.web.tomledit import ConfigDoc, TomlEditError

FILE = """# front desk
[sip]
listen = ["udp:127.0.0.1:5060"]  # loopback only

[[sip.peers]]
name = "gw1"   # the old gateway
match = "192.0.2.1"

[[sip.peers]]
name = "gw2"
match = "192.0.2.2"
username = "gw2"

[[sip.peers]]
name = "gw3"
match = "192.0.2.3"

[routing]
default = "faxes@example.com"
"""
SECRETS = '[[sip.peers]]\nname = "gw2"\npassword = "gw2-secret"\n'


@pytest.fixture
def box(tmp_path: Path) -> Path:
    (tmp_path / "faxbridge.toml").write_text(FILE)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(SECRETS)
    secrets.chmod(0o600)
    return tmp_path / "faxbridge.toml"


def test_adding_and_deleting_entries_leaves_the_rest_of_the_text_alone(box: Path) -> None:
    doc = ConfigDoc.load(box)
    peers = doc.entries("sip", "peers")
    assert peers[1] == {"name": "gw2", "match": "192.0.2.2", "username": "gw2"}  # no password here
    # drop gw3, add gw4 at the end
    doc.set_entries("sip", "peers", [peers[0], peers[1], {"name": "gw4", "match": "192.0.2.4"}], [0, 1, None])
    doc.save()
    want = FILE.replace('[[sip.peers]]\nname = "gw3"\nmatch = "192.0.2.3"\n',
                        '[[sip.peers]]\nname = "gw4"\nmatch = "192.0.2.4"\n')
    assert box.read_text() == want
    assert Config.load(box).sip.peers[1].password == "gw2-secret"


def test_secrets_follow_a_renamed_entry_and_leave_with_a_deleted_one(box: Path) -> None:
    doc = ConfigDoc.load(box)
    peers = doc.entries("sip", "peers")
    doc.set_entries("sip", "peers", [peers[0], {**peers[1], "name": "pbx"}, peers[2]])
    doc.rename_secret_entry("sip", "peers", "gw2", "pbx")
    doc.save()
    assert Config.load(box).sip.peers[1].password == "gw2-secret"
    assert 'name = "pbx"' in (box.parent / "secrets.toml").read_text()

    doc = ConfigDoc.load(box)
    peers = doc.entries("sip", "peers")
    doc.set_entries("sip", "peers", [peers[0], peers[2]], [0, 2])
    doc.save()  # the secret of the deleted entry goes too: else the file would not load
    assert "gw2-secret" not in (box.parent / "secrets.toml").read_text()
    assert [p.name for p in Config.load(box).sip.peers] == ["gw1", "gw3"]


def test_an_invalid_result_raises_and_writes_nothing(box: Path) -> None:
    before = {p.name: p.read_bytes() for p in box.parent.iterdir()}
    doc = ConfigDoc.load(box)
    doc.set("routing", "default", "nobody")
    doc.set_secret("delivery", "password", "never-written")
    with pytest.raises(ConfigError) as e:
        doc.save()
    assert "routing.default: 'nobody' is not a mail address: an email address must have an @-sign" in e.value.errors
    assert {p.name: p.read_bytes() for p in box.parent.iterdir()} == before  # no temp file left either


def test_writes_are_atomic_files_with_the_right_modes(box: Path) -> None:
    box.chmod(0o640)
    doc = ConfigDoc.load(box)
    doc.set_secret("delivery", "password", "pw")
    doc.set("delivery", "backend", "smtp")
    doc.set("delivery", "url", "smtp://127.0.0.1:25")
    doc.set("delivery", "username", "fax")
    doc.save()
    assert stat.S_IMODE(box.stat().st_mode) == 0o640  # the owner's mode kept
    assert stat.S_IMODE((box.parent / "secrets.toml").stat().st_mode) == 0o600
    assert sorted(os.listdir(box.parent)) == ["faxbridge.toml", "secrets.toml"]
    assert Config.load(box).delivery.password == "pw"


def test_a_file_that_is_not_toml_is_named(box: Path) -> None:
    box.write_text("[sip\n")
    with pytest.raises(TomlEditError, match="not valid TOML"):
        ConfigDoc.load(box)


def test_a_file_that_is_not_utf8_is_named(box: Path) -> None:
    box.write_bytes(b'[routing]\ndefault = "fax\xba@example.com"\n')
    with pytest.raises(TomlEditError, match="faxbridge.toml: not UTF-8 text"):
        ConfigDoc.load(box)


@pytest.mark.parametrize("text", [
    '[[sip.peers]]\nname = ["gw1"]\nmatch = "192.0.2.1"\nusername = "u"\npassword = "p"\n',
    '[sip]\npeers = [1, 2]\n',
])
def test_a_backup_with_odd_entries_is_refused_not_a_crash(box: Path, text: str) -> None:
    # found by fuzzing: prune_secret_entries put each entry's name in a set (a list is
    # unhashable) and called .get on whatever the array held
    before = box.read_text()
    with pytest.raises(ConfigError):
        ConfigDoc.load(box).restore(text)
    assert box.read_text() == before


def test_a_backup_with_secrets_survives_a_secrets_file_holding_odd_names(box: Path) -> None:
    secrets = box.with_name("secrets.toml")
    secrets.write_text(SECRETS + '\n[[sip.peers]]\nname = ["gw9"]\npassword = "x"\n')
    assert "gw2-secret" in ConfigDoc.load(box).with_secrets()


def test_a_new_file_in_the_state_directory_keeps_every_path_where_the_defaults_put_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    running = Config.from_dict({}, base_dir=state)  # embedded defaults, relative to the state directory
    doc = ConfigDoc.for_config(running)
    assert doc.path == state / "faxbridge.toml" and not doc.exists
    doc.set("routing", "default", "x@example.com")
    cfg = doc.save()
    assert "spool" not in doc.main_text() and "state_dir" not in doc.main_text()  # nothing to restate
    loaded = Config.load(doc.path, state_dir=state)
    for c in (cfg, loaded):
        assert c.path(c.spool.dir).resolve() == running.path(running.spool.dir).resolve()
        assert c.path(c.delivery.url).resolve() == running.path(running.delivery.url).resolve()
        assert c.path(c.web.state_dir).resolve() == running.path(running.web.state_dir).resolve()
        assert c.path(c.system.control_socket).resolve() == running.path(running.system.control_socket).resolve()
    assert loaded.source == doc.path.resolve()


def test_an_empty_password_in_a_backup_keeps_the_current_secret(box: Path) -> None:
    # found by fuzzing (config_restore): 'password = ""' stayed in the main file and hid the secret
    backup = FILE.replace('username = "gw2"\n', 'username = "gw2"\npassword = ""\n')
    cfg = ConfigDoc.load(box).restore(backup)
    assert "password" not in box.read_text()
    assert [p.password for p in cfg.sip.peers if p.name == "gw2"] == ["gw2-secret"]
