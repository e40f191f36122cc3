"""HylaFAX as the far end that sends to the appliance's Class 1 line, over the virtual modem line.

HylaFAX (Debian's hylafax-server 6.0.7) sends a 3-page fax from port A of a ``VirtualLine`` to
the daemon, whose modem line on port B answers with the Class 1 driver:

- through the whole HylaFAX server: ``sendfax`` to a private hfaxd on 127.0.0.1, faxq converting
  (tiff2fax) and running faxsend;
- with ECM, faxsend run directly: HylaFAX frames the image itself in 256-byte frames (Class 1
  ECM is done by the DTE), so this is an ECM sender other than our own.

Every mailed page must equal the sent one pixel for pixel: HylaFAX adds nothing (no tag line is
configured) and the appliance adds no header.  See tests/modem/hylafax.py for how the HylaFAX
programs run without the system spool.
"""

from __future__ import annotations

import asyncio
import email.message
from pathlib import Path

import pytest
from PIL import Image

from tests.provided import provided

from .hylafax import JOB_DONE, SEND_DONE, hylafax_send, hylafax_sendfax, missing_tools, write_tiff_f
from .lines import fax_to_the_daemon, mailed_tiff
from .test_daemon_modem import appliance_side_effects  # noqa: F401 (fixture)

_missing = missing_tools()
needs_hylafax = provided(not _missing, "needs Debian's " + ", ".join(_missing) + " (make test installs them)")


def _rows(path: Path) -> list[bytes]:
    """Rows of a bilevel TIFF as packed bits, 1 = white, whatever its Photometric tag says."""
    with Image.open(path) as im:
        im = im.convert("L").point(lambda v: 255 if v >= 128 else 0).convert("1")
        w, h = im.size
        data = im.tobytes()
    stride = (w + 7) // 8
    return [data[i * stride:(i + 1) * stride] for i in range(h)]


async def _in_thread(func, *args, **kwargs):  # type: ignore[no-untyped-def]
    """HylaFAX's programs block: run them off the daemon's event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: func(*args, **kwargs))


def _assert_mail_pages(tmp_path: Path, msg: email.message.Message, images: list) -> None:  # type: ignore[type-arg]
    got = tmp_path / "mailed.tif"
    got.write_bytes(mailed_tiff(msg))
    with Image.open(got) as im:
        assert getattr(im, "n_frames", 1) == len(images)
    for n, image in enumerate(images, 1):
        ref = tmp_path / f"ref{n}.pbm"
        image.save(ref)
        _assert_same_page(n, ref, got, n - 1)


def _assert_same_page(n: int, ref: Path, got: Path, page: int = 0) -> None:
    """No tag line, no header: sent row i is received row i, pixel for pixel.  HylaFAX's page
    encoder now and then leaves out a blank last row (seen with efax and with spandsp receiving,
    so it is the sender's): a missing row must be blank, every row with ink must be there."""
    s = _rows(ref)
    with Image.open(got) as im:
        im.seek(page)
        frame = got.parent / f"{got.name}.{page}.pbm"
        im.convert("1").save(frame)
    r = _rows(frame)
    assert len(s) - 1 <= len(r) <= len(s), (n, len(s), len(r))
    assert all(row == b"\xff" * len(row) for row in s[len(r):]), f"page {n}: a row with ink was lost"
    bad = [i for i, (x, y) in enumerate(zip(s, r)) if x != y]
    assert not bad, f"page {n}: {len(bad)} of {len(r)} rows differ, first {bad[:5]}"


@pytest.mark.slow
@pytest.mark.xdist_group("hylafax")
@needs_hylafax
def test_hylafax_sendfax_sends_three_pages_to_the_appliance(tmp_path: Path, appliance_side_effects: None) -> None:  # noqa: F811
    """The issue's "HylaFAX's sendfax": the client submits to a private hfaxd on 127.0.0.1, faxq
    converts the TIFF (tiff2fax: MR) and runs faxsend on port A; the appliance's Class 1 line
    answers on port B, and the mail carries the three pages unchanged."""
    from appliance.fax.testpages import demo_pages

    images = demo_pages(3)
    src = write_tiff_f(images, tmp_path / "send.tif")
    (state, log), fax, msg, call = fax_to_the_daemon(
        tmp_path, lambda dev: _in_thread(hylafax_sendfax, dev, "5551000", src, tmp_path, timeout=300))
    assert state == JOB_DONE, log[-5000:]
    assert call is not None and call.pages == 3, call
    assert fax.complete and fax.pages == 3 and fax.line == "modem:ttyB"
    assert fax.called_number == "5551000" and "sales@example.test" in msg["To"]
    _assert_mail_pages(tmp_path, msg, images)


@pytest.mark.slow
@pytest.mark.xdist_group("hylafax")
@needs_hylafax
def test_hylafax_sends_with_ecm_to_the_appliance(tmp_path: Path, appliance_side_effects: None) -> None:  # noqa: F811
    """ECM on the Class 1 path with a real third-party sender: the appliance's DIS offers ECM,
    HylaFAX chooses it (its own HDLC framing at 14400) and the appliance deframes it."""
    from appliance.fax.testpages import demo_pages

    images = demo_pages(3, seed=4)
    src = write_tiff_f(images, tmp_path / "send.tif")
    (rc, log), fax, msg, call = fax_to_the_daemon(
        tmp_path, lambda dev: _in_thread(hylafax_send, dev, "5551000", src, True, tmp_path, timeout=300))
    assert rc == SEND_DONE, log[-4000:]
    assert "REMOTE supports T.30 Annex A, 256-byte ECM" in log, log[:3000]
    assert "USE error correction mode" in log, log[:3000]
    assert log.count("SEND recv MCF") == 3, log[-3000:]
    assert fax.complete and fax.pages == 3 and fax.ecm is True
    _assert_mail_pages(tmp_path, msg, images)
    print(f"HylaFAX -> appliance with ECM, 3 pages: {log.count('SEND send frame number')} frames")
