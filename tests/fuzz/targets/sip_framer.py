"""The TCP/TLS framer (appliance/sip/framing.py StreamFramer), fed one stream in random chunks.

Input: 4 bytes that seed the chunk sizes, then the stream.  Contract: the frames (messages and
keep-alives) and the error, if any, do not depend on how the stream was cut into chunks; after
each chunk is drained nothing beyond the limit stays buffered; every frame is within the limit;
the only error is SipParseError (its reason may differ: a header block cut short by the limit is
"too large" before its Content-Length can be read).
"""
from __future__ import annotations

import random

from appliance.sip.framing import KeepAlive, StreamFramer
from appliance.sip.message import SipParseError

MAX_LEN = 4096
DICTS = ("sip", "_text")
LIMIT = 1024  # small, so that the fuzzer reaches it with small inputs


def _frames(chunks: list[bytes]) -> tuple[list[bytes | str], str | None]:
    framer = StreamFramer(max_message_size=LIMIT)
    out: list[bytes | str] = []
    for chunk in chunks:
        framer.feed(chunk)
        try:
            for item in framer:
                assert isinstance(item, (bytes, KeepAlive)), item
                if isinstance(item, KeepAlive):
                    out.append("keepalive")
                else:
                    assert 0 < len(item) <= LIMIT, len(item)
                    out.append(item)
        except SipParseError:
            return out, "error"
        assert framer.buffered <= LIMIT, framer.buffered
    return out, None


def TestOneInput(data: bytes) -> None:
    if len(data) < 4:
        return
    rng = random.Random(data[:4])
    stream = data[4:]
    whole = _frames([stream])
    chunks, i = [], 0
    while i < len(stream):
        size = rng.choice((1, 2, 3, rng.randint(1, 64), rng.randint(1, 1500)))
        chunks.append(stream[i:i + size])
        i += size
    cut = _frames(chunks)
    assert cut == whole, (cut, whole)
