"""A fax terminal on 8 kHz G.711 audio: spandsp's ``fax_state`` behind a small, sans-I/O API.

The caller feeds received G.711 payloads (or fill-in for lost ones) and pulls G.711 to send.
"""

from __future__ import annotations

import os
import struct

from appliance.spandsp._spandsp import ffi, lib
from appliance.spandsp.t30 import T30Terminal

_RTP_HEADER = struct.Struct("!BBHII")


class AudioFaxTerminal(T30Terminal):
    """One fax call's terminal: answering (receives into ``rx_file``) or calling (sends ``tx_file``)."""

    def __init__(
        self,
        *,
        calling: bool,
        codec: str = "PCMU",
        ident: str = "",
        ecm: bool = True,
        rx_file: str | os.PathLike[str] | None = None,
        tx_file: str | os.PathLike[str] | None = None,
        trace: bool = True,
    ) -> None:
        super().__init__()
        self._fax = ffi.NULL
        if codec not in ("PCMU", "PCMA"):
            raise ValueError(f"codec must be PCMU or PCMA, not {codec!r}")
        if calling and tx_file is None:
            raise ValueError("a calling terminal needs tx_file")
        self.calling = calling
        self._fax = lib.fax_init(ffi.NULL, 1 if calling else 0)
        if self._fax == ffi.NULL:
            raise MemoryError("fax_init failed")
        self._codec = lib.g711_init(ffi.NULL, lib.G711_ULAW if codec == "PCMU" else lib.G711_ALAW)
        self._out = ffi.new("uint8_t[1024]")
        self._packet = ffi.new("uint8_t[1036]")  # an RTP header and up to 1024 samples
        lib.fax_set_transmit_on_idle(self._fax, 1)
        lib.fax_set_tep_mode(self._fax, 0)
        self._setup_t30(
            lib.fax_get_t30_state(self._fax),
            calling=calling,
            ident=ident,
            ecm=ecm,
            rx_file=rx_file,
            tx_file=tx_file,
            trace=trace,
            logs=[],
        )

    def receive_g711(self, payload: bytes) -> None:
        """Feed one received G.711 payload (any length: 10, 20 or 30 ms packets)."""
        if self.alive and payload:
            lib.fb_rx_g711(self._fax, self._codec, payload, len(payload))

    def receive_fillin(self, samples: int) -> None:
        """Tell the modems that ``samples`` of audio were lost, so their timing stays right."""
        if self.alive and samples > 0:
            lib.fax_rx_fillin(self._fax, samples)

    def transmit_g711(self, samples: int = 160) -> bytes:
        """The next ``samples`` of our audio as G.711 (silence where spandsp has nothing to say)."""
        if not self.alive:
            return b"\xff" * samples
        lib.fb_tx_g711(self._fax, self._codec, self._out, samples)
        return bytes(ffi.buffer(self._out, samples))

    def rtp_tick(self, due: bytes | int | None, header: tuple[int, int, int, int], samples: int = 160) -> bytes:
        """A call's 20 ms tick in one C call: feed ``due`` (received G.711, or the number of samples
        lost), then return our next ``samples`` as an RTP packet with ``header`` (the fields after
        the first byte: marker and payload type, sequence, timestamp, SSRC; ``RtpStream.next_header``)."""
        if not self.alive:
            return _RTP_HEADER.pack(0x80, *header) + b"\xff" * samples
        b1, seq, ts, ssrc = header
        if due is None or isinstance(due, int):
            rx, rx_len, fillin = ffi.NULL, 0, due or 0
        else:
            rx, rx_len, fillin = due, len(due), 0
        n = lib.fb_g711_tick(self._fax, self._codec, rx, rx_len, fillin, self._packet, b1, seq, ts, ssrc, samples)
        return ffi.buffer(self._packet, n)[:]

    def _free(self) -> None:
        lib.fax_free(self._fax)
        lib.g711_free(self._codec)
        self._fax = ffi.NULL
