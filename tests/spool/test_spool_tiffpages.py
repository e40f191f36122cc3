"""Page counting and trimming (tiffpages.py), the crash hook, and the page checks' edge cases.

A received file may end anywhere: cut mid-strip, mid-IFD, or be no TIFF at all.  The count must
never claim a page that does not decode, and trimming must keep the good pages byte for byte.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops

from appliance.spool import crashpoint
from appliance.spool.store import Spool
from appliance.fsutil import fsync_dir, fsync_file
from appliance.spool.tiffpages import PageScan, keep_first_pages, readable_pages, scan_pages
from spool_helpers import damage_last_page, make_tiff

REPO = Path(__file__).resolve().parents[2]
THREE = make_tiff(3)


def write(tmp_path: Path, data: bytes, name: str = "f.tif") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def pixels(path: Path) -> list[bytes]:
    with Image.open(path) as im:
        out = []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(im.convert("1").tobytes())
        return out


@pytest.mark.parametrize("data, expect", [
    (THREE, (3, 3)),
    (make_tiff(1), (1, 1)),
    (make_tiff(2, compression="group3"), (2, 2)),
    (b"", (0, 0)),
    (b"II*\x00", (0, 0)),
    (b"not a tiff at all", (0, 0)),
])
def test_readable_pages(tmp_path: Path, data: bytes, expect: tuple[int, int]):
    assert readable_pages(write(tmp_path, data)) == expect


def test_a_missing_file_has_no_pages(tmp_path: Path):
    assert scan_pages(tmp_path / "none.tif") == PageScan(0, 0)


def test_a_png_is_not_a_fax(tmp_path: Path):
    buf = io.BytesIO()
    Image.new("1", (100, 100), 1).save(buf, format="PNG")
    assert readable_pages(write(tmp_path, buf.getvalue())) == (0, 0)


def test_a_damaged_last_page_is_claimed_but_not_readable(tmp_path: Path):
    scan = scan_pages(write(tmp_path, damage_last_page(THREE)))
    assert (scan.readable, scan.claimed, scan.refused, scan.deliverable) == (2, 3, (), 2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, len(THREE)))
def test_a_file_cut_anywhere_is_finished_without_error(tmp_path_factory, cut: int):
    """The engine was stopped after ``cut`` bytes: finish_fax keeps what decodes and never raises."""
    with Spool(tmp_path_factory.mktemp("s") / "spool") as spool:
        fax = spool.begin_fax(0.0)
        spool.incoming_path(fax).write_bytes(THREE[:cut])
        scan = scan_pages(spool.incoming_path(fax))
        assert 0 <= scan.readable <= scan.claimed <= 3
        done = spool.finish_fax(fax.id, 1.0, complete=cut == len(THREE))
        assert done.state in ("received", "no_fax") and 0 <= done.pages <= scan.readable
        if done.state == "no_fax":
            assert done.image is None and list(spool.incoming_dir.iterdir()) == []
        else:
            kept = scan_pages(spool.image_path(done))
            assert kept.readable == kept.claimed  # a damaged tail never survives finishing
            assert kept.deliverable == done.pages
        if cut == len(THREE):
            assert (done.state, done.pages, done.complete) == ("received", 3, True)


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_keep_first_pages_copies_the_pages_exactly(tmp_path: Path, keep: int):
    original = write(tmp_path, THREE, "orig.tif")
    trimmed = write(tmp_path, THREE, "trim.tif")
    keep_first_pages(trimmed, keep)
    assert readable_pages(trimmed) == (keep, keep)
    assert pixels(trimmed) == pixels(original)[:keep]
    with Image.open(trimmed) as a, Image.open(original) as b:
        for i in range(keep):
            a.seek(i)
            b.seek(i)
            assert a.info.get("compression") == b.info.get("compression") == "group4"
            assert a.info["dpi"] == b.info["dpi"]
            assert ImageChops.difference(a.convert("L"), b.convert("L")).getbbox() is None
    assert not (tmp_path / "trim.tif.trim").exists()


def test_keep_first_pages_of_a_damaged_file_drops_only_the_tail(tmp_path: Path):
    path = write(tmp_path, damage_last_page(THREE))
    keep_first_pages(path, 2)
    assert readable_pages(path) == (2, 2)
    assert pixels(path) == pixels(write(tmp_path, THREE, "whole.tif"))[:2]


def test_keep_first_pages_refuses_zero_pages_and_leaves_the_file(tmp_path: Path):
    path = write(tmp_path, THREE)
    with pytest.raises(ValueError):
        keep_first_pages(path, 0)
    assert path.read_bytes() == THREE


def test_a_trim_that_fails_leaves_the_original_file(tmp_path: Path):
    data = THREE[: len(THREE) - 200]  # the file ends inside the last page's data or IFD
    path = write(tmp_path, data)
    with pytest.raises(Exception):  # noqa: B017 - whichever error Pillow raises for this cut
        keep_first_pages(path, 3)
    assert path.read_bytes() == data and not (tmp_path / "f.tif.trim").exists()


def test_fsync_helpers_accept_files_and_directories_and_refuse_missing(tmp_path: Path):
    path = write(tmp_path, b"x")
    fsync_file(path)
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_file(tmp_path / "gone")
    with pytest.raises(NotADirectoryError):
        fsync_dir(path)


# -- the crash hook ------------------------------------------------------------------------------

def test_crash_point_does_nothing_unless_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FAXBRIDGE_CRASH_AT", raising=False)
    crashpoint.crash_point("finish.fsynced")
    monkeypatch.setenv("FAXBRIDGE_CRASH_AT", "finish.renamed")
    crashpoint.crash_point("finish.fsynced")  # another label: still alive


@pytest.mark.parametrize("label, code", [("here", 137), ("elsewhere", 0)])
def test_crash_point_exits_at_once_without_cleanup(tmp_path: Path, label: str, code: int):
    marker = tmp_path / "cleanup-ran"
    prog = ("import atexit, pathlib, sys\n"
            f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('x'))\n"
            "from appliance.spool.crashpoint import crash_point\n"
            "crash_point('here')\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), FAXBRIDGE_CRASH_AT=label)
    done = subprocess.run([sys.executable, "-c", prog], env=env, timeout=60)
    assert done.returncode == code
    assert marker.exists() == (code == 0)  # os._exit: no atexit, no flush, as SIGKILL would leave it
