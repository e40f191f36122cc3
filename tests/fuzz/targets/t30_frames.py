"""T.30 frames as the far end sends them (appliance/fax/t30decode.py): the trace keeps them and the
fax page and the diagnostics file read them back in words.  The first byte says the direction (its
low bit: received), the rest is the frame as spandsp hands it over (address, control, FCF, FIF).

Contract: decode_frame never raises and keeps the frame; record_frame puts one line in the trace
for a frame of three bytes or more, and parse_trace reads that line back as one item, which
trace_text writes out; a DIS, DTC or DCS always has its capabilities read.
"""
from __future__ import annotations

import collections

from appliance.fax.t30decode import Frame, ImageData, decode_frame, parse_trace, record_frame, trace_text

MAX_LEN = 300


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    received, frame = bool(data[0] & 1), data[1:]
    item = decode_frame(frame, received)
    assert item.raw == frame and item.received == received
    assert all(isinstance(d, str) for d in item.details)
    if item.name in ("DIS", "DTC", "DCS"):
        assert item.caps is not None and item.caps.resolutions and item.caps.compression
    if len(frame) < 3:
        return
    trace: collections.deque[str] = collections.deque(maxlen=4)
    record_frame(trace, received, frame)
    (back,) = parse_trace(trace)
    if isinstance(back, Frame):
        assert back.raw == frame and back.name == item.name and back.details == item.details
    else:
        assert isinstance(back, ImageData) and back.received == received
    assert trace_text([back])
