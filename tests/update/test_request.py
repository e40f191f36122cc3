"""The root service reads only what the service user may hand over: a small regular request
file, and a regular bundle under the size limit at its fixed name, through a directory that is
not a link.  Everything else is refused with words, and the request is gone so the path unit
does not start the service again for it."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from appliance.update import request
from appliance.update.request import BUNDLE, REQUEST, RequestError
from appliance.update.status import Status


@pytest.fixture
def state(tmp_path: Path) -> Path:
    s = tmp_path / "state"
    (s / "update").mkdir(parents=True)
    return s


def upd(state: Path) -> Path:
    return state / "update"


def take(state: Path) -> dict[str, object]:
    fd = request.open_update_dir(state)
    try:
        return request.take_request(fd)
    finally:
        os.close(fd)


def copy(state: Path, work: Path, limit: int = request.MAX_BUNDLE) -> Path:
    fd = request.open_update_dir(state)
    try:
        return request.copy_bundle(fd, work, limit)
    finally:
        os.close(fd)


def test_the_request_the_web_ui_writes_is_taken_and_removed(state: Path) -> None:
    request.write_request(state, "web")
    assert request.pending(state)
    assert take(state)["by"] == "web"
    assert not request.pending(state)
    assert not list(upd(state).iterdir()), "no temp file left"


def test_a_symlinked_request_is_refused_and_removed_without_reading_its_target(state: Path, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text('{"bundle": "bundle.raucb", "by": "root"}')
    (upd(state) / REQUEST).symlink_to(secret)
    with pytest.raises(RequestError, match="not a regular file"):
        take(state)
    assert not os.path.lexists(upd(state) / REQUEST) and secret.exists()


def test_a_request_that_is_a_fifo_a_directory_or_too_big_is_refused(state: Path) -> None:
    os.mkfifo(upd(state) / REQUEST)  # opening it must not hang waiting for a writer
    with pytest.raises(RequestError, match="not a regular file"):
        take(state)
    assert not os.path.lexists(upd(state) / REQUEST)
    (upd(state) / REQUEST).mkdir()
    with pytest.raises(RequestError, match="not a regular file"):
        take(state)
    assert not os.path.lexists(upd(state) / REQUEST)
    (upd(state) / REQUEST).write_text(" " * (request.MAX_REQUEST + 1))
    with pytest.raises(RequestError, match="more than"):
        take(state)
    assert not os.path.lexists(upd(state) / REQUEST)


def test_a_request_naming_another_file_is_refused(state: Path) -> None:
    for body, words in ((json.dumps({"bundle": "/etc/shadow"}), "only bundle.raucb"),
                        (json.dumps({"bundle": "../../x.raucb"}), "only bundle.raucb"),
                        ("[1, 2]", "not a JSON object"), ("\x00\xff", "not JSON")):
        (upd(state) / REQUEST).write_text(body)
        with pytest.raises(RequestError, match=words):
            take(state)
        assert not os.path.lexists(upd(state) / REQUEST)


def test_a_symlinked_update_directory_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (state / "update").symlink_to(elsewhere)
    with pytest.raises(RequestError, match="not a directory"):
        request.open_update_dir(state)


def test_the_bundle_is_copied_into_roots_directory_and_the_original_removed(state: Path, tmp_path: Path) -> None:
    data = os.urandom(3 * request.CHUNK + 17)
    (upd(state) / BUNDLE).write_bytes(data)
    work = tmp_path / "work"
    got = copy(state, work)
    assert got == work / BUNDLE and got.read_bytes() == data
    assert (work.stat().st_mode & 0o777) == 0o700 and (got.stat().st_mode & 0o777) == 0o600
    assert not (upd(state) / BUNDLE).exists()


def test_hostile_bundles_are_refused(state: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    target = tmp_path / "device"
    target.write_bytes(b"x" * 100)
    (upd(state) / BUNDLE).symlink_to(target)
    with pytest.raises(RequestError, match="not a regular file"):
        copy(state, work)
    (upd(state) / BUNDLE).unlink()
    os.mkfifo(upd(state) / BUNDLE)
    with pytest.raises(RequestError, match="not a regular file"):
        copy(state, work)
    (upd(state) / BUNDLE).unlink()
    with open(upd(state) / BUNDLE, "wb") as f:  # sparse: 4 GiB announced, nothing written
        f.truncate(4 * 1024 ** 3)
    with pytest.raises(RequestError, match="more than"):
        copy(state, work, limit=1024 ** 3)
    (upd(state) / BUNDLE).write_bytes(b"")
    with pytest.raises(RequestError, match="empty"):
        copy(state, work)
    (upd(state) / BUNDLE).unlink()
    with pytest.raises(RequestError, match="no update file"):
        copy(state, work)
    assert not work.exists() or not any(work.iterdir())


def test_the_work_directory_must_not_be_a_link(state: Path, tmp_path: Path) -> None:
    (upd(state) / BUNDLE).write_bytes(b"bundle")
    (tmp_path / "elsewhere").mkdir()
    work = tmp_path / "work"
    work.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RequestError, match="not a directory"):
        copy(state, work)
    assert not any((tmp_path / "elsewhere").iterdir())


def test_status_is_written_through_the_directory_even_when_the_path_is_swapped(state: Path, tmp_path: Path) -> None:
    """root keeps writing into the directory it opened; a link put in its place later gets nothing."""
    fd = request.open_update_dir(state)
    try:
        os.rename(upd(state), state / "moved")
        victim = tmp_path / "victim"
        victim.mkdir()
        (state / "update").symlink_to(victim)
        request.write_status(fd, Status(phase="checking", message="x"))
    finally:
        os.close(fd)
    assert not any(victim.iterdir())
    written = json.loads((state / "moved" / "status.json").read_text())
    assert written["phase"] == "checking" and written["busy"] is True
    assert ((state / "moved" / "status.json").stat().st_mode & 0o777) == 0o644


def test_a_status_file_replaced_by_a_link_is_not_followed(state: Path, tmp_path: Path) -> None:
    target = tmp_path / "important"
    target.write_text("keep")
    (upd(state) / "status.json").symlink_to(target)
    fd = request.open_update_dir(state)
    try:
        assert request.read_status_at(fd).phase == "idle"
        request.write_status(fd, Status(phase="failed", error="e"))
    finally:
        os.close(fd)
    assert target.read_text() == "keep"
    assert not (upd(state) / "status.json").is_symlink()


def test_the_web_side_stores_whole_files_only(state: Path) -> None:
    import io

    with pytest.raises(RequestError, match="larger than"):
        request.store_bundle(state, io.BytesIO(b"x" * 2048), limit=1024)
    assert not list(upd(state).iterdir()), "a refused upload leaves nothing"
    with pytest.raises(RequestError, match="empty"):
        request.store_bundle(state, io.BytesIO(b""))
    assert request.store_bundle(state, io.BytesIO(b"y" * 5000)) == 5000
    assert (upd(state) / BUNDLE).read_bytes() == b"y" * 5000


def test_a_busy_update_refuses_another(state: Path) -> None:
    assert request.busy_reason(state) == ""
    request.write_request(state, "web")
    assert "waits for the installer" in request.busy_reason(state)
    take(state)
    fd = request.open_update_dir(state)
    request.write_status(fd, Status(phase="installing", message="Copying"))
    os.close(fd)
    assert "under way" in request.busy_reason(state)


def test_the_bundle_is_not_read_past_what_fstat_said(state: Path, tmp_path: Path) -> None:
    """A writer appending while root copies is caught: the copy is refused, not silently cut."""
    path = upd(state) / BUNDLE
    path.write_bytes(b"a" * request.CHUNK * 2)
    fd = request.open_update_dir(state)
    grew = threading.Event()

    def grow(done: int, size: int) -> None:
        if not grew.is_set():
            with open(path, "ab") as f:
                f.write(b"more")
            grew.set()

    try:
        with pytest.raises(RequestError, match="grew"):
            request.copy_bundle(fd, tmp_path / "work", request.MAX_BUNDLE, grow)
    finally:
        os.close(fd)
    assert not any((tmp_path / "work").iterdir())
