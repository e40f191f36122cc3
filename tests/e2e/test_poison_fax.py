"""A poison fax over SIP to the running appliance: kept with its reason, the good page delivered.

The sender (spandsp, `faxbridge send-test-fax`) transmits a good page and then a page of
1728 x 80,000 rows, 10 KB of G4 that ECM carries in one block.  The daemon stores the fax as it
came, records why page 2 is refused, mails page 1 alone with a note, and never decodes page 2.
"""

from __future__ import annotations

import io
import re
import sqlite3
from pathlib import Path

import pytest
from PIL import ImageChops

from appliance.fax.pagelimits import open_tiff
from tests.poisonfax import POISON_ROWS, fax_tiff, good_page, poison_page

from .conftest import finish, send_fax, tiff_attachment

pytestmark = pytest.mark.slow

#: the daemon's peak memory must stay below what decoding the poison page alone would take
#: (Pillow, one byte per pixel); a daemon that decoded it once peaked well above this
POISON_DECODED = 1728 * POISON_ROWS


def vm_hwm(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


@pytest.mark.xdist_group("calls-poison")
def test_an_over_long_page_is_kept_with_its_reason_and_the_good_page_is_delivered(tmp_path, smtp,
                                                                                 appliance_factory):
    app = appliance_factory(smtp.port)
    app.start()
    first, coded = good_page(1)
    path = tmp_path / "poison.tif"
    path.write_bytes(fax_tiff([coded, poison_page()]))
    rc, out = finish(send_fax(app.uri("5551000"), path), timeout=120)
    assert rc == 0 and "2 page(s) sent" in out, out
    (msg,) = smtp.wait_for(1, timeout=60)
    assert msg["Subject"] == "Incomplete fax from 5550100 (1 page, 1 refused as too large)", msg["Subject"]
    assert msg["X-FaxNumberOfPages"] == "1"
    body = msg.get_body(("plain",)).get_content()
    assert "PAGE REFUSED: page 2 is 80,000 rows long at 196 lines per inch" in body
    with open_tiff(io.BytesIO(tiff_attachment(msg))) as im:
        assert im.n_frames == 1
        assert ImageChops.difference(im.convert("L"), first.convert("L")).getbbox() is None
    db = sqlite3.connect(app.workdir / "spool" / "spool.db")
    state, pages, complete, result, image = db.execute(
        "SELECT state, pages, complete, result_text, image FROM faxes").fetchone()
    assert (state, pages, complete) == ("delivered", 1, 0)
    assert result.startswith("1 of 2 pages refused, not delivered: page 2 is 80,000 rows long"), result
    with open_tiff(app.workdir / "spool" / image) as im:  # kept as it came: both pages
        assert im.n_frames == 2
        im.seek(1)
        assert im.size == (1728, POISON_ROWS)
    peak = vm_hwm(app.proc.pid)
    assert peak < POISON_DECODED, f"the daemon peaked at {peak / 2**20:.0f} MiB"
