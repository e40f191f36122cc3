"""HylaFAX's faxsend as the far end that sends, over the virtual modem line, in real time.

HylaFAX (Debian's hylafax-server 6.0.7) sends a 3-page fax from port A of a ``VirtualLine``:

- to efax receiving on port B (one TIFF per page; efax has no ECM, so neither has the call),
  once with faxsend run directly (the helper other tests reuse) and once through the whole server:
  ``sendfax`` to a private hfaxd on 127.0.0.1, faxq converting (tiff2fax: MR) and running faxsend,
  which re-encodes to MH for efax;
- with ECM, to HylaFAX's own faxgetty receiving on port B (an ECM-capable Class 1 receiver):
  HylaFAX then frames the image itself (Class 1 ECM is done by the DTE) in 256-byte frames,
  re-encoded as MMR, with PPS-EOP/MCF per page: an ECM sender on the spandsp T.31 path.

Every received page must equal the sent one pixel for pixel: HylaFAX adds nothing (no tag line
is configured) and neither receiver adds a header.  See tests/modem/hylafax.py for how faxsend
and faxgetty run without faxq/hfaxd or the system spool.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from appliance.modem.virtual import VirtualLine

from .hylafax import (JOB_DONE, SEND_DONE, hylafax_receiver, hylafax_send, hylafax_sendfax, missing_tools,
                      write_tiff_f)

EFAX = shutil.which("efax")
_missing = missing_tools()
needs_hylafax = pytest.mark.skipif(bool(_missing), reason="needs Debian's " + ", ".join(_missing))
needs_efax = pytest.mark.skipif(EFAX is None, reason="needs Debian's efax")


def _rows(path: Path) -> list[bytes]:
    """Rows of a bilevel TIFF as packed bits, 1 = white, whatever its Photometric tag says."""
    with Image.open(path) as im:
        im = im.convert("L").point(lambda v: 255 if v >= 128 else 0).convert("1")
        w, h = im.size
        data = im.tobytes()
    stride = (w + 7) // 8
    return [data[i * stride:(i + 1) * stride] for i in range(h)]


def _hylafax_to_efax(tmp_path: Path, pages: int, ecm: bool = False, via_sendfax: bool = False):
    """faxsend (or sendfax, hfaxd, faxq and faxsend) on A, efax receiving on B;
    (faxsend rc or job state, efax rc, seconds, call, HylaFAX log, efax log, sent)."""
    from appliance.fax.testpages import demo_pages

    images = demo_pages(pages)
    sent = write_tiff_f(images, tmp_path / "send.tif")
    with VirtualLine(str(tmp_path / "ttyA"), str(tmp_path / "ttyB")) as ln:
        t0 = time.monotonic()
        with open(tmp_path / "rx.log", "w") as rxlog:
            rx = subprocess.Popen([EFAX, "-d", str(tmp_path / "ttyB"), "-o1", "-r", str(tmp_path / "rx")],
                                  stdout=rxlog, stderr=subprocess.STDOUT)
            try:
                assert ln.wait_for(lambda l: l.b.present, 5)
                time.sleep(1.5)  # efax initialises the modem, then waits for RING
                if via_sendfax:
                    tx_rc, log = hylafax_sendfax(str(tmp_path / "ttyA"), "5551000", sent, tmp_path,
                                                 timeout=60 + 60 * pages, ecm=ecm)
                else:
                    tx_rc, log = hylafax_send(str(tmp_path / "ttyA"), "5551000", sent, ecm, tmp_path,
                                              timeout=60 + 60 * pages)
                rx_rc = rx.wait(60)
            finally:
                if rx.poll() is None:
                    rx.kill()
                    rx.wait()
        elapsed = time.monotonic() - t0
        call = ln.calls[-1] if ln.calls else None
    return tx_rc, rx_rc, elapsed, call, log, (tmp_path / "rx.log").read_text(), images


def _assert_same_page(n: int, ref: Path, got: Path, page: int = 0) -> None:
    s = _rows(ref)
    with Image.open(got) as im:
        im.seek(page)
        frame = got.parent / f"{got.name}.{page}.pbm"
        im.convert("1").save(frame)
    r = _rows(frame)
    # no tag line, no header: row i sent is row i received; efax drops the last row now and then
    assert len(s) - 1 <= len(r) <= len(s), (n, len(s), len(r))
    assert all(row == b"\xff" * len(row) for row in s[len(r):]), f"page {n}: a row with ink was lost"
    bad = [i for i, (x, y) in enumerate(zip(s, r)) if x != y]
    assert not bad, f"page {n}: {len(bad)} of {len(r)} rows differ, first {bad[:5]}"


def _frames(log: str, direction: str) -> list[str]:
    """HDLC frames from a HylaFAX session log: direction '-->' (received) or '<--' (sent)."""
    return re.findall(rf"{direction} HDLC<\d+:([0-9A-F ]+)>", log)


@pytest.mark.slow
@pytest.mark.xdist_group("hylafax")
@needs_hylafax
@needs_efax
def test_hylafax_sends_three_pages_to_efax_over_the_virtual_line(tmp_path: Path) -> None:
    tx_rc, rx_rc, elapsed, call, log, rxlog, images = _hylafax_to_efax(tmp_path, 3)
    assert tx_rc == SEND_DONE, log[-4000:] + rxlog[-1500:]
    assert rx_rc == 0, rxlog[-2000:]
    assert call is not None and call.answered and call.pages == 3, call
    assert log.count("SEND recv MCF") == 3, log[-3000:]
    received = sorted(tmp_path.glob("rx.0*"))
    assert [p.name[-3:] for p in received] == ["001", "002", "003"], rxlog[-2000:]
    for n, (im, got) in enumerate(zip(images, received), 1):
        ref = tmp_path / f"ref{n}.pbm"
        im.save(ref)
        _assert_same_page(n, ref, got)
    print(f"HylaFAX -> efax, 3 pages: {elapsed:.1f} s, {len(_frames(log, '<--'))} frames sent")


@pytest.mark.slow
@pytest.mark.xdist_group("hylafax")
@needs_hylafax
@needs_efax
def test_hylafax_sendfax_through_hfaxd_and_faxq_sends_three_pages_to_efax(tmp_path: Path) -> None:
    """The issue's "HylaFAX's sendfax": the client submits to a private hfaxd on 127.0.0.1, faxq
    converts the TIFF (tiff2fax) and runs faxsend on port A; efax receives on port B."""
    state, rx_rc, elapsed, call, log, rxlog, images = _hylafax_to_efax(tmp_path, 3, via_sendfax=True)
    assert state == JOB_DONE, log[-5000:] + rxlog[-1500:]
    assert rx_rc == 0, rxlog[-2000:]
    assert call is not None and call.answered and call.pages == 3, call
    received = sorted(tmp_path.glob("rx.0*"))
    assert [p.name[-3:] for p in received] == ["001", "002", "003"], rxlog[-2000:]
    for n, (im, got) in enumerate(zip(images, received), 1):
        ref = tmp_path / f"ref{n}.pbm"
        im.save(ref)
        _assert_same_page(n, ref, got)
    print(f"sendfax -> hfaxd -> faxq -> faxsend -> efax, 3 pages: {elapsed:.1f} s")


@pytest.mark.slow
@pytest.mark.xdist_group("hylafax")
@needs_hylafax
def test_hylafax_sends_three_pages_with_ecm_to_faxgetty_over_the_virtual_line(tmp_path: Path) -> None:
    from appliance.fax.testpages import demo_pages

    images = demo_pages(3)
    sent = write_tiff_f(images, tmp_path / "send.tif")
    with VirtualLine(str(tmp_path / "ttyA"), str(tmp_path / "ttyB")) as ln:
        t0 = time.monotonic()
        with hylafax_receiver(str(tmp_path / "ttyB"), tmp_path / "rx", ecm=True) as rx:
            tx_rc, log = hylafax_send(str(tmp_path / "ttyA"), "5551000", sent, True, tmp_path, timeout=300)
            time.sleep(2)  # faxgetty files the fax after the DCN
        elapsed = time.monotonic() - t0
        call = ln.calls[-1] if ln.calls else None
    rxlog = "".join(p.read_text(errors="replace") for p in sorted(rx.glob("c*")))
    assert tx_rc == SEND_DONE, log[-4000:] + rxlog[-1500:]
    assert call is not None and call.answered and call.pages == 3, call
    # the ECM evidence: faxgetty's DIS offered it, HylaFAX's DCS chose it, pages went as frames
    assert "REMOTE supports T.30 Annex A, 256-byte ECM" in log, log[:3000]
    assert "USE error correction mode" in log, log[:3000]
    assert "REMOTE wants T.30 Annex A, 256-byte ECM" in rxlog, rxlog[:3000]
    assert log.count("SEND send PPS (partial page signal)") == 3, log[-3000:]
    assert log.count("SEND recv MCF") == 3, log[-3000:]
    faxes = sorted(rx.glob("fax*.tif"))
    assert len(faxes) == 1, (faxes, rxlog[-2000:])
    with Image.open(faxes[0]) as im:
        assert getattr(im, "n_frames", 1) == 3
    for n, image in enumerate(images, 1):
        ref = tmp_path / f"ref{n}.pbm"
        image.save(ref)
        _assert_same_page(n, ref, faxes[0], n - 1)
    print(f"HylaFAX -> faxgetty with ECM, 3 pages: {elapsed:.1f} s, "
          f"{log.count('SEND send frame number')} ECM frames sent")
