"""Request size limits, over real HTTP to the real server (cheroot, the web entry point): before
login a body may be 16 KiB, headers 16 KiB; after login the uploads still fit."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from served import ServedUI

from appliance.web.auth import ANONYMOUS_MAX_BYTES, LOGGED_IN_MAX_BYTES
from appliance.web.server import MAX_HEADER_BYTES

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[ServedUI]:
    with ServedUI(tmp_path).start() as served:
        yield served


def test_a_large_body_before_login_is_refused_unread(ui: ServedUI) -> None:
    token = ui.csrf("/login")
    big = f"csrf_token={token}&password=".encode() + b"x" * (4 * ANONYMOUS_MAX_BYTES)
    r = ui.request("POST", "/login", big, FORM)
    assert r.status == 413 and "larger than 16 KiB" in r.text and "before login" in r.text
    # answered from the headers: a body announced but never sent is not waited for
    r = ui.request("POST", "/login", None, {**FORM, "Content-Length": str(8 * ANONYMOUS_MAX_BYTES)}, timeout=10)
    assert r.status == 413
    # the API says it in JSON
    r = ui.request("POST", "/api/faxes/1/resend", b"{" + b" " * (2 * ANONYMOUS_MAX_BYTES) + b"}",
                   {"Content-Type": "application/json"})
    assert r.status == 413 and r.headers["Content-Type"].startswith("application/json")
    # just under the limit the form is read: a wrong password, not a size error
    small = f"csrf_token={token}&password=".encode() + b"x" * (ANONYMOUS_MAX_BYTES - 200)
    r = ui.request("POST", "/login", small, FORM)
    assert r.status == 401 and "Wrong password" in r.text


def test_headers_are_bounded(ui: ServedUI) -> None:
    r = ui.request("GET", "/login", headers={"X-Padding": "y" * (2 * MAX_HEADER_BYTES)})
    assert r.status == 413
    assert ui.request("GET", "/login", headers={"X-Padding": "y" * 1000}).status == 200


def test_a_logged_in_restore_of_a_large_backup_still_fits(ui: ServedUI) -> None:
    ui.login()
    token = ui.csrf("/settings/backup")
    comment = ("# " + "padding " * 12 + "\n") * 2000  # ~200 KiB of comments: a well-kept file
    text = f'{comment}[spool]\ndir = "spool"\n[routing]\ndefault = "restored@example.com"\n'
    assert ANONYMOUS_MAX_BYTES < len(text) < LOGGED_IN_MAX_BYTES
    r = ui.post_files("/settings/restore", {"csrf_token": token}, {"file": ("backup.toml", text.encode())})
    assert r.status == 302, r.text[-2000:]
    assert "restored@example.com" in ui.config.read_text()
    # beyond the logged-in limit the server answers from the headers alone, reading nothing
    r = ui.request("POST", "/settings/restore", None, {"Content-Type": "multipart/form-data; boundary=x",
                                                       "Content-Length": str(LOGGED_IN_MAX_BYTES + 1)})
    assert r.status == 413
