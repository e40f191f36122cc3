"""The Class 1 front-end: spandsp's T.30 driving a Class 1 modem.

The pure parts (modulation codes, HDLC framing for ECM) are tested like a library here; the
rules (Class1FrontEnd) on a fake clock in test_class1_frontend.py.  The asyncio driver is
replayed against recorded modem dialogues on a pty in test_class1_dialogues.py, and runs real
calls as the daemon's line in test_line_efax.py (efax; a caller hanging up after page 2) and
test_hylafax_line.py (HylaFAX's sendfax; HylaFAX with ECM).
"""

from __future__ import annotations

import random

import pytest

from appliance.modem.class1_frontend import modulation_code
from appliance.modem.hdlc import HdlcEncoder, fcs16
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
