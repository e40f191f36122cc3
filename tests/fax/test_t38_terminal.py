"""spandsp's T.38 terminal through our binding: two terminals exchanging IFP packets in memory."""

from __future__ import annotations

import random

import pytest
from PIL import ImageChops

from appliance.fax.pages import FINE, STANDARD, read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.spandsp.t38 import T38FaxTerminal


def exchange(tx: T38FaxTerminal, rx: T38FaxTerminal, *, loss: float = 0.0, seconds: float = 300,
             rng: random.Random | None = None) -> float:
    """Step both terminals 20 ms at a time, moving packets both ways with optional loss."""
    rng = rng or random.Random(5)
    seqs = {id(tx): 0, id(rx): 0}
    steps = 0
    while (tx.finished is None or rx.finished is None) and steps < seconds * 50:
        for src, dst in ((tx, rx), (rx, tx)):
            src.advance(160)
            for ifp, count in src.packets_to_send():
                seq = seqs[id(src)]
                seqs[id(src)] += 1
                # spandsp asks for `count` copies of important packets: the same seq each time
                if any(rng.random() >= loss for _ in range(count)):
                    dst.receive_ifp(seq, ifp)
        steps += 1
    return steps * 0.02


@pytest.mark.parametrize("ecm,dpi,rate_management", [(True, FINE, "transferredTCF"),
                                                     (False, STANDARD, "localTCF")])
def test_t38_pages_arrive_pixel_identical(tmp_path, ecm, dpi, rate_management):
    pages = demo_pages(2, dpi)
    write_fax_tiff(pages, tmp_path / "tx.tif", dpi)
    tx = T38FaxTerminal(calling=True, ecm=ecm, tx_file=tmp_path / "tx.tif", ident="+1 555 0100",
                        rate_management=rate_management, pacing=False)
    rx = T38FaxTerminal(calling=False, ecm=ecm, rx_file=tmp_path / "rx.tif", ident="5551000",
                        rate_management=rate_management, pacing=False)
    exchange(tx, rx)
    assert rx.finished is not None and rx.finished.ok, rx.finished
    assert rx.finished.stats.remote_ident == "+1 555 0100"
    assert rx.finished.stats.ecm is ecm
    rx.close(), tx.close()
    got = read_pages(tmp_path / "rx.tif")
    assert len(got) == 2
    for g, s in zip(got, pages):
        assert ImageChops.difference(g, s.convert("L")).getbbox() is None


def test_indicator_repetition_is_requested_by_spandsp(tmp_path):
    write_fax_tiff(demo_pages(1, STANDARD), tmp_path / "tx.tif", STANDARD)
    tx = T38FaxTerminal(calling=True, tx_file=tmp_path / "tx.tif")
    counts = []
    for _ in range(300):
        tx.advance(160)
        counts += [c for _, c in tx.packets_to_send()]
    assert counts and max(counts) > 1  # indicators are asked for more than once
    tx.close()


def test_bad_arguments():
    with pytest.raises(ValueError):
        T38FaxTerminal(calling=True)
    with pytest.raises(ValueError, match="T38FaxRateManagement"):
        T38FaxTerminal(calling=False, rate_management="bogus")


def test_garbage_ifp_does_not_crash(tmp_path):
    rx = T38FaxTerminal(calling=False, rx_file=tmp_path / "rx.tif")
    rng = random.Random(9)
    for seq in range(2000):
        rx.receive_ifp(seq, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 60))))
        rx.advance(160)
    rx.close()
