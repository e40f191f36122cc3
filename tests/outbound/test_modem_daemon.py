"""The daemon sends over its modem line: a fax queued with the daemon goes out through the
worker, the route's `modem:any`, `ModemManager.acquire` and the line's Class 1 driver, on the
virtual line to efax answering on the other port; the pages efax stored are the queued pages
below the header line, the job ends sent with the far end's pages confirmed.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from appliance.config import Config
from appliance.daemon import Appliance
from appliance.fax.pages import FINE, read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.modem.virtual import LineOptions, VirtualLine
from appliance.outbound.header import HEADER_MM
from appliance.outbound.submit import SubmitRequest
from tests.budgets import LOADED
from tests.conftest import free_port
from tests.modem.lines import until
from tests.modem.test_daemon_modem import appliance_side_effects  # noqa: F401 - a fixture
from tests.provided import provided

pytestmark = [pytest.mark.slow, provided(shutil.which("efax"), "needs Debian's efax (make test installs it)")]


def config(tmp_path: Path, device: str) -> Config:
    return Config.from_dict(
        {
            "sip": {"listen": [f"udp:127.0.0.1:{free_port()}"]},
            "spool": {"dir": str(tmp_path / "spool")},
            "delivery": {"backend": "maildir", "url": str(tmp_path / "Maildir")},
            "routing": {"default": "faxes@example.test"},
            "web": {"enabled": False},
            "fax": {"ident": "+1 555 0199"},
            "modem": {"devices": [device], "rings": 2, "flow_control": "none", "class_preference": ["1"]},
            "outbound": {
                "enabled": True,
                "country_code": "1",
                "area_code": "555",
                "routes": [{"name": "line", "match": "^\\+1", "via": "modem:any", "number_format": "local"}],
            },
        }
    )


def test_a_queued_fax_goes_out_over_the_daemons_modem_line_to_efax(
    tmp_path: Path, appliance_side_effects: None  # noqa: F811 - the fixture
) -> None:
    ours, theirs = str(tmp_path / "ttyA"), str(tmp_path / "ttyB")
    cfg = config(tmp_path, ours)
    pages = demo_pages(2, FINE)
    doc = tmp_path / "doc.tif"
    write_fax_tiff(pages, doc, FINE)

    async def main(ln: VirtualLine) -> tuple[str, int, str, Path]:
        app = Appliance(cfg)
        await app.start()
        rx = None
        try:
            assert app.modems is not None
            line = app.modems.lines[ours]
            await until(lambda: line.state == "idle", LOADED, "our line idle")
            log = open(tmp_path / "rx.log", "w")  # noqa: SIM115 - closed below
            rx = subprocess.Popen(["efax", "-d", theirs, "-o1", "-r", str(tmp_path / "rx")],
                                  stdout=log, stderr=subprocess.STDOUT)
            assert ln.wait_for(lambda line_: line_.b.present, LOADED)
            await asyncio.sleep(1.5)  # efax initialises its modem and waits for the call
            job = await app.outbound.submit(SubmitRequest("555-1000", [("doc.tif", doc)], source="cli"))
            await until(lambda: (j := app.outbound.queue.get(job.id)) is not None and j.final, 400, "job ended")
            done = app.outbound.queue.get(job.id)
            assert done is not None
            await asyncio.get_running_loop().run_in_executor(None, rx.wait, 60)
            log.close()
            return done.state, done.pages_confirmed, done.last_detail, app.outbound.queue.document_path(done)
        finally:
            if rx is not None and rx.poll() is None:
                rx.kill()
            await app.stop()

    with VirtualLine(ours, theirs, options=LineOptions()) as ln:
        state, confirmed, detail, queued = asyncio.run(asyncio.wait_for(main(ln), 600))
    assert (state, confirmed) == ("sent", 2), (state, confirmed, detail, (tmp_path / "rx.log").read_text()[-2000:])
    received = sorted(tmp_path.glob("rx.0*"))
    assert len(received) == 2, received
    want = read_pages(queued)
    rows = math.ceil(HEADER_MM / 25.4 * FINE[1])
    for n, (path, w) in enumerate(zip(received, want), 1):
        with Image.open(path) as im:
            got = im.convert("L")
        h = min(got.height, w.height)
        box = ImageChops.difference(got.crop((0, 0, w.width, h)), w.convert("L").crop((0, 0, w.width, h))).getbbox()
        assert box is not None and box[3] <= rows, f"page {n}: differs from the queued page at {box}"
