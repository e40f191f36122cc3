"""Restoring a backup never moves web.state_dir (where the administrator password lives), also
when the backup leaves the key out and its default would resolve elsewhere."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from webauth import csrf

from appliance.config import Config
from appliance.web.app import create_app

BOX_TOML = """[spool]
dir = "spool"

[web]
state_dir = "private/web"   # not the default, web

[routing]
default = "faxes@example.com"
"""


def _restore(client: FlaskClient, text: str):  # type: ignore[no-untyped-def]
    return client.post("/settings/restore", content_type="multipart/form-data",
                       data={"csrf_token": csrf(client), "file": (io.BytesIO(text.encode()), "backup.toml")})


def test_a_backup_without_state_dir_would_move_it_and_is_refused(web: FlaskClient, box: Path) -> None:
    r = _restore(web, '[spool]\ndir = "spool"\n[routing]\ndefault = "other@example.com"\n')
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "Nothing was changed" in html
    assert "may not move the web state" in html and "no web.state_dir (the default)" in html
    assert str((box.parent / "private" / "web").resolve()) in html  # what to put in the file
    assert box.read_text() == BOX_TOML
    # the box still knows its password after a restart: no first-start page for anyone
    fresh = create_app(Config.load(box)).test_client()
    assert fresh.get("/faxes").headers["Location"].startswith("/login")


@pytest.mark.parametrize("state_dir", ["private/web", "./private//web/", "{abs}"])
def test_a_backup_naming_the_same_directory_is_restored(web: FlaskClient, box: Path, state_dir: str) -> None:
    state_dir = state_dir.format(abs=box.parent / "private" / "web")
    r = _restore(web, f'[spool]\ndir = "spool"\n[web]\nstate_dir = "{state_dir}"\n'
                      '[routing]\ndefault = "other@example.com"\n')
    assert r.status_code == 302, r.get_data(as_text=True)
    assert Config.load(box).routing.default == "other@example.com"
