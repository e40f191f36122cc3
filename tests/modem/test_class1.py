"""The Class 1 front-end: spandsp's T.30 driving a Class 1 modem.

The pure parts (modulation codes, HDLC framing for ECM) are tested like a library; the driver is
tested against spandsp's T.31 modems on the virtual line with our own Class 1 sender, ECM on (efax
has no ECM).  efax and HylaFAX as the far end of the daemon's line: test_line_efax.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from PIL import ImageChops

from appliance.fax.pages import FINE, STANDARD, read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.modem.at import Unsolicited
from appliance.modem.class1 import Class1Receiver, Class1Sender, modulation_code
from appliance.modem.driver import ModemCall, ModemCallResult
from appliance.modem.hdlc import HdlcEncoder, fcs16
from appliance.modem.serial_port import ModemPort
from appliance.modem.virtual import LineOptions, VirtualLine
from appliance.spandsp.frontend import Modem



# -- pure ------------------------------------------------------------------------------------

def test_modulation_codes_follow_t31_table_4() -> None:
    assert modulation_code(Modem.V21, 300) == 3
    assert modulation_code(Modem.V27TER, 4800) == 48
    assert modulation_code(Modem.V29, 9600) == 96
    assert modulation_code(Modem.V17, 14400) == 145
    assert modulation_code(Modem.V17, 14400, short_train=True) == 146
    assert modulation_code(Modem.V17, 7200, short_train=True) == 74
    with pytest.raises(ValueError, match="V29 at 14400"):
        modulation_code(Modem.V29, 14400)


def test_fcs16_is_the_x25_crc() -> None:
    assert fcs16(b"123456789") == 0x906E  # the CRC-16/X-25 check value
    assert fcs16(b"") == 0x0000


def _deframe(data: bytes) -> list[bytes]:
    """An independent HDLC receiver: bits LSB first, flags, unstuffing, FCS checked."""
    bits = [(b >> i) & 1 for b in data for i in range(8)]
    frames, cur, ones, in_frame = [], [], 0, False
    for bit in bits:
        if bit:
            ones += 1
            cur.append(1)
            continue
        if ones == 5:  # a stuffed zero
            ones = 0
            continue
        if ones == 6:  # a flag: 0111111 0 -> the frame ends here
            body = cur[:-7]  # the flag 01111110 began with the 0 already taken as data
            if in_frame and len(body) >= 32 and len(body) % 8 == 0:
                octets = bytes(sum(body[i + k] << k for k in range(8)) for i in range(0, len(body), 8))
                frames.append(octets)
            cur, ones, in_frame = [], 0, True
            continue
        ones = 0
        cur.append(0)
    good = []
    for f in frames:
        payload, fcs = f[:-2], f[-2] | (f[-1] << 8)
        assert fcs16(payload) == fcs, f"bad FCS on {payload[:4].hex()}"
        good.append(payload)
    return good


def test_hdlc_encoder_frames_survive_an_independent_deframer() -> None:
    rng = random.Random(7)
    frames = [b"\xff\x03\x06\x00" + bytes(rng.randrange(256) for _ in range(256)) for _ in range(5)]
    frames.append(b"\xff\x13\x86")  # RCP
    frames.append(b"\xff\x03\x06\x01" + b"\xff" * 64 + b"\x7e" * 64)  # worst case for stuffing
    enc = HdlcEncoder()
    enc.flags(10)
    out = b""
    for f in frames:
        enc.frame(f)
        out += enc.take()
    enc.flags(2)
    out += enc.take(flush=True)
    assert _deframe(out) == frames
    assert out[:10] == b"\x7e" * 10


def test_hdlc_encoder_never_lets_six_ones_through_inside_a_frame() -> None:
    enc = HdlcEncoder()
    enc.frame(b"\xff" * 100)
    bits = "".join(f"{b:08b}"[::-1] for b in enc.take(flush=True))
    inside = bits[: bits.rfind("01111110")]
    assert "111111" not in inside


# -- against the virtual line ------------------------------------------------------------------

async def _answer(path: str, tiff: Path, *, rings: int = 2, ecm: bool = True) -> ModemCallResult:
    port = await ModemPort.open(path, flow="none")
    try:
        for cmd in ("ATZ", "ATE0", "AT+FCLASS=1"):
            await port.command(cmd)
        seen = 0
        while seen < rings:
            ev = await asyncio.wait_for(port.events.get(), 60)
            if isinstance(ev, Unsolicited) and ev.line == "RING":
                seen += 1
        call = ModemCall(device=path, line="modem:test", tiff_path=tiff, ident="+1 555 1000", ecm=ecm,
                         max_call_duration=300)
        return await Class1Receiver().receive(port, call)
    finally:
        port.close()


async def _send(path: str, tiff: Path, *, ecm: bool) -> tuple[bool, dict]:
    port = await ModemPort.open(path, flow="none")
    try:
        for cmd in ("ATZ", "ATE0", "AT+FCLASS=1"):
            await port.command(cmd)
        return await Class1Sender("5551000", tiff, ident="+1 555 0100", ecm=ecm, max_duration=300).send(port)
    finally:
        port.close()


def _assert_same_pages(tiff: Path, sent: list) -> None:
    got = read_pages(tiff)
    assert len(got) == len(sent), f"{len(got)} pages received, {len(sent)} sent"
    for n, (g, s) in enumerate(zip(got, sent), 1):
        assert g.size == s.size, f"page {n}: {g.size} != {s.size}"
        assert ImageChops.difference(g.convert("L"), s.convert("L")).getbbox() is None, f"page {n} differs"


@pytest.mark.slow
@pytest.mark.xdist_group("class1-ecm")
def test_ecm_sender_to_class1_receiver_pixel_exact(tmp_path: Path) -> None:
    """ECM both ways through spandsp's T.31 modems: frames at 14400 framed by the DTE."""
    pages = demo_pages(3, STANDARD, seed=11)
    src = tmp_path / "send.tif"
    write_fax_tiff(pages, src, STANDARD)
    rx_tiff = tmp_path / "rx.tif"

    async def main() -> tuple[ModemCallResult, tuple[bool, dict]]:
        rx = asyncio.create_task(_answer(str(tmp_path / "B"), rx_tiff))
        await asyncio.sleep(0.5)
        tx = await _send(str(tmp_path / "A"), src, ecm=True)
        return await rx, tx

    with VirtualLine(str(tmp_path / "A"), str(tmp_path / "B")) as line:
        t0 = time.monotonic()
        result, (sent_ok, sent) = asyncio.run(main())
        elapsed = time.monotonic() - t0
        assert line.calls[-1].pages == 3
    assert sent_ok, sent["result"]
    assert result.complete, (result.facts["result_text"], result.facts["extra"].get("modem_history", "")[-2000:])
    assert result.facts["ecm"] is True and sent["ecm"] is True
    assert result.facts["pages"] == 3 and result.facts["bit_rate"] == 14400
    assert result.facts["remote_ident"] == "+1 555 0100"
    assert result.facts["extra"]["class1"]["frames_bad"] == 0
    _assert_same_pages(rx_tiff, pages)
    print(f"class 1 ECM, 3 pages standard: {elapsed:.1f} s, {sent['class1']['frames_tx']} frames sent")


@pytest.mark.slow
@pytest.mark.xdist_group("class1-ecm")
def test_caller_hanging_up_after_page_two_keeps_two_pages(tmp_path: Path) -> None:
    pages = demo_pages(3, FINE, seed=5)
    src = tmp_path / "send.tif"
    write_fax_tiff(pages, src, FINE)
    rx_tiff = tmp_path / "rx.tif"

    async def main() -> ModemCallResult:
        rx = asyncio.create_task(_answer(str(tmp_path / "B"), rx_tiff))
        await asyncio.sleep(0.5)
        await _send(str(tmp_path / "A"), src, ecm=False)
        return await asyncio.wait_for(rx, 120)

    with VirtualLine(str(tmp_path / "A"), str(tmp_path / "B"),
                     options=LineOptions(hangup_after_page=2, hangup_linger=1.0)) as line:
        result = asyncio.run(main())
        assert line.calls[-1].pages == 2
    assert not result.complete
    assert result.facts["pages"] == 2
    assert "modem_history" in result.facts["extra"]  # the failure dump for support
    _assert_same_pages(rx_tiff, pages[:2])
