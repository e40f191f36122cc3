"""Helpers for the web tests: real G4 fax TIFFs and faxes received through the real Spool."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from appliance.spool.store import FaxRecord, Spool

#: 2026-01-01 00:00 UTC; faxes in a test are one minute apart from here
T0 = 1_767_225_600.0
FAX_WIDTH = 1728
#: page heights of an A4 fax at standard (98 lpi) and fine (196 lpi) resolution
HEIGHT = {98: 1143, 196: 2287}
STANDARD, FINE = (204, 98), (204, 196)
XSS = "<script>alert(1)</script>"


def black_box(page: int) -> tuple[int, int, int, int]:
    """The black rectangle drawn on page `page` (1-based), in source pixels; pages 1-3 never overlap."""
    x0 = 200 + 500 * (page - 1)
    return (x0, 100, x0 + 400, 300)


def write_tiff(path: Path, dpis: Sequence[tuple[int, int]]) -> None:
    """A multi-page 1-bit G4 fax TIFF, one page per entry of `dpis`, each with its own box."""
    frames = []
    for n, dpi in enumerate(dpis, start=1):
        im = Image.new("1", (FAX_WIDTH, HEIGHT[dpi[1]]), 1)
        ImageDraw.Draw(im).rectangle(black_box(n), fill=0)
        im.encoderinfo = {"dpi": dpi, "compression": "group4"}
        frames.append(im)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, format="TIFF", save_all=True, append_images=frames[1:],
                   compression="group4", dpi=dpis[0])


def add_fax(spool: Spool, now: float, *, dpis: Sequence[tuple[int, int]] = (), complete: bool = True,
            recipients: Sequence[str] = (), **facts: Any) -> FaxRecord:
    """Receive one fax the way the daemon does: begin, write the TIFF, finish, route."""
    fax = spool.begin_fax(now, **facts)
    if dpis:
        write_tiff(spool.incoming_path(fax), dpis)
    fax = spool.finish_fax(fax.id, now + 30, complete=complete)
    if recipients and fax.state != "no_fax":
        spool.add_jobs(fax.id, list(recipients), now + 31)
    got = spool.get_fax(fax.id)
    assert got is not None
    return got
