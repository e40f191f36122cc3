"""HDLC framing for ECM at the image rates, done by the DTE (sans-I/O).

Most Class 1 modems (and spandsp's T.31) cannot frame HDLC at V.17/V.29/V.27ter rates
(``+FTH=146`` is ERROR), so ECM goes out as a plain ``+FTM`` bit stream that we frame ourselves,
as HylaFAX does: flags, the frame bit-stuffed (a 0 after five 1s), the CRC-16 FCS (ITU-T V.42 /
X.25), bits in transmission order packed first-bit-in-LSB as Class 1 data is.  The receiving
direction is spandsp's own HDLC receiver (``fb_ecm_rx_put`` in the binding).
"""

from __future__ import annotations

FLAG = 0x7E


def _crc16_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc16_table()


def fcs16(data: bytes) -> int:
    """The HDLC frame check sequence (CRC-16/X-25)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFF


class HdlcEncoder:
    """Frames in, Class 1 data bytes out; ``take()`` returns whole bytes produced so far."""

    def __init__(self) -> None:
        self._acc = 0
        self._nbits = 0
        self._out = bytearray()

    def _bit(self, bit: int) -> None:
        self._acc |= bit << self._nbits
        self._nbits += 1
        if self._nbits == 8:
            self._out.append(self._acc)
            self._acc = self._nbits = 0

    def flags(self, count: int) -> None:
        for _ in range(count):
            for i in range(8):
                self._bit((FLAG >> i) & 1)

    def frame(self, data: bytes) -> None:
        """One frame (address, control, information) with its FCS, between flags."""
        fcs = fcs16(data)
        ones = 0
        for byte in data + bytes([fcs & 0xFF, fcs >> 8]):
            for i in range(8):
                bit = (byte >> i) & 1
                self._bit(bit)
                if bit:
                    ones += 1
                    if ones == 5:
                        self._bit(0)
                        ones = 0
                else:
                    ones = 0
        self.flags(1)

    def take(self, flush: bool = False) -> bytes:
        """Bytes ready to send; ``flush`` pads the last partial byte with flag bits first."""
        if flush and self._nbits:
            i = 0
            while self._nbits:
                self._bit((FLAG >> i) & 1)
                i += 1
        out, self._out = bytes(self._out), bytearray()
        return out
