"""The spandsp binding doing real modulation: two terminals back to back over G.711 in memory."""

from __future__ import annotations

import random

import pytest
from PIL import ImageChops

from appliance.config import FaxConfig
from appliance.fax.pages import FINE, STANDARD, read_pages, write_fax_tiff
from appliance.fax.session import ReceiveSession
from appliance.fax.testpages import demo_pages
from appliance.spandsp.audio import AudioFaxTerminal
from appliance.spandsp.t30 import CALL_DROPPED, PageDone, PhaseB, PhaseE, result_text


def run_pair(tx: AudioFaxTerminal, rx: AudioFaxTerminal, *, loss: float = 0.0, seconds: float = 400,
             stop_tx_after_pages: int | None = None) -> float:
    rng = random.Random(3)
    blocks = 0
    while (tx.finished is None or rx.finished is None) and blocks < seconds * 50:
        a, b = tx.transmit_g711(160), rx.transmit_g711(160)
        if rng.random() < loss:
            rx.receive_fillin(160)
        else:
            rx.receive_g711(a)
        tx.receive_g711(b)
        blocks += 1
        if stop_tx_after_pages is not None and rx.stats().pages_rx >= stop_tx_after_pages:
            break
    return blocks * 0.02


@pytest.mark.parametrize("codec,ecm,dpi", [("PCMU", True, FINE), ("PCMA", False, STANDARD)])
def test_pages_arrive_pixel_identical(tmp_path, codec, ecm, dpi):
    pages = demo_pages(2, dpi)
    write_fax_tiff(pages, tmp_path / "tx.tif", dpi)
    tx = AudioFaxTerminal(calling=True, codec=codec, ecm=ecm, tx_file=tmp_path / "tx.tif", ident="+1 555 0100")
    rx = AudioFaxTerminal(calling=False, codec=codec, ecm=ecm, rx_file=tmp_path / "rx.tif", ident="5551000")
    run_pair(tx, rx)
    assert rx.finished is not None and rx.finished.ok, rx.finished
    assert rx.finished.stats.remote_ident == "+1 555 0100"
    assert tx.finished.stats.remote_ident == "5551000"
    assert rx.finished.stats.ecm is ecm
    assert rx.finished.stats.resolution == f"{dpi[0]}x{dpi[1]}"
    events = []
    while (ev := rx.next_event()) is not None:
        events.append(ev)
    assert isinstance(events[0], PhaseB)
    assert [e.frame for e in events if isinstance(e, PageDone)] == ["MPS", "EOP"]
    assert isinstance(events[-1], PhaseE)
    assert any("DCS" in line for line in rx.trace), "the T.30 trace records frames"
    rx.close(), tx.close()
    got = read_pages(tmp_path / "rx.tif")
    assert len(got) == 2
    for g, s in zip(got, pages):
        assert ImageChops.difference(g, s.convert("L")).getbbox() is None


def test_terminate_mid_call_keeps_received_pages_and_reports_call_dropped(tmp_path):
    pages = demo_pages(3, STANDARD)
    write_fax_tiff(pages, tmp_path / "tx.tif", STANDARD)
    tx = AudioFaxTerminal(calling=True, tx_file=tmp_path / "tx.tif")
    rx = AudioFaxTerminal(calling=False, rx_file=tmp_path / "rx.tif")
    run_pair(tx, rx, stop_tx_after_pages=2)
    rx.terminate()
    assert rx.finished is not None and rx.finished.code == CALL_DROPPED
    rx.close(), tx.close()
    got = read_pages(tmp_path / "rx.tif")
    assert len(got) == 2
    assert ImageChops.difference(got[1], pages[1].convert("L")).getbbox() is None


def test_result_text_and_bad_codec():
    assert result_text(0) == "OK"
    assert "dropped" in result_text(CALL_DROPPED).lower()
    with pytest.raises(ValueError):
        AudioFaxTerminal(calling=False, codec="G722")
    with pytest.raises(ValueError):
        AudioFaxTerminal(calling=True)


def test_session_hangs_up_when_no_fax_signal(tmp_path):
    rx = AudioFaxTerminal(calling=False, rx_file=tmp_path / "rx.tif")
    s = ReceiveSession(rx, started=100.0, cfg=FaxConfig(no_signal_timeout=30))
    for _ in range(50 * 29):  # 29 s of silence
        rx.receive_g711(b"\xff" * 160)
    assert s.poll(129.0) is None
    assert s.poll(130.0) == "no fax signal"
    assert s.facts(130.0).result_text.startswith("no fax signal")
    rx.close()


def test_session_hangs_up_when_far_end_stays_after_phase_e(tmp_path):
    write_fax_tiff(demo_pages(1, STANDARD), tmp_path / "tx.tif", STANDARD)
    tx = AudioFaxTerminal(calling=True, tx_file=tmp_path / "tx.tif")
    rx = AudioFaxTerminal(calling=False, rx_file=tmp_path / "rx.tif")
    s = ReceiveSession(rx, started=0.0, cfg=FaxConfig(post_phase_e_timeout=10, no_signal_timeout=30))
    run_pair(tx, rx)
    assert s.poll(50.0) is None and s.complete
    assert s.poll(59.0) is None
    assert s.poll(60.0) == "far end did not hang up after the fax ended"
    facts = s.facts(60.0)
    assert facts.pages == 1 and facts.result_code == 0 and facts.bit_rate == 14400
    rx.close(), tx.close()


def test_session_enforces_max_duration(tmp_path):
    rx = AudioFaxTerminal(calling=False, rx_file=tmp_path / "rx.tif")
    s = ReceiveSession(rx, started=0.0, cfg=FaxConfig(max_call_duration=120, no_signal_timeout=30))
    s.signal_at = 1.0  # a fax signal was seen, so only the overall limit applies
    assert s.poll(119.0) is None
    assert s.poll(120.0) == "call exceeded the maximum duration"
    rx.close()


def test_stats_after_close_are_the_last_ones_not_freed_memory(tmp_path):
    write_fax_tiff(demo_pages(1, STANDARD), tmp_path / "tx.tif", STANDARD)
    tx = AudioFaxTerminal(calling=True, tx_file=tmp_path / "tx.tif", ident="+1 555 0100")
    rx = AudioFaxTerminal(calling=False, rx_file=tmp_path / "rx.tif")
    run_pair(tx, rx)
    rx.close(), tx.close()
    assert rx.stats().remote_ident == "+1 555 0100" and rx.stats().pages_rx == 1
    never = AudioFaxTerminal(calling=False, rx_file=tmp_path / "rx2.tif")
    never.close()
    assert never.stats().pages_rx == 0
