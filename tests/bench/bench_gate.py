"""`make bench`: what one hostile datagram costs the event loop at the SIP call gate.

The loop that runs the gate also sends every call's RTP every 20 ms, so the cost per datagram
decides how hard one flooding host can push. Times CallGate.check (sans-I/O, as SipEndpoint calls
it) per datagram for what a flood sends: a datagram over the size cap, one that finds its
source's bucket empty, junk that the parser refuses, a well-formed stranger's INVITE (403), and
the worst a parser can be made to do within the caps (8 KB, 32 Via values, 100 fields). Before
the caps, a 56 KB ACK with 1300 Via values cost about 11 ms; that case is printed too, as the
parser alone.
"""

from __future__ import annotations

import statistics
import time

from appliance.config import PeerConfig
from appliance.sip.events import Local
from appliance.sip.message import parse_message
from appliance.calls.sip_setup import peer_table
from appliance.sip.policy import CallGate, RateLimiter

UDP = Local("udp", "192.0.2.1", 5060)
PEER = ("192.0.2.50", 5060)
STRANGER = ("203.0.113.9", 5060)


def request(method: str, n: int, extra: str = "", body: str = "") -> bytes:
    head = (f"{method} sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bK{n};rport\r\n"
            f"From: <sip:1@192.0.2.50>;tag=f{n}\r\nTo: <sip:100@192.0.2.1>\r\nCall-ID: c{n}@x\r\n"
            f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}")
    return (head + f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


def per_call(fn, count: int) -> float:  # type: ignore[no-untyped-def]
    """Median of 5 runs of `count` calls, in microseconds per call."""
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for i in range(count):
            fn(i)
        runs.append((time.perf_counter() - t) / count * 1e6)
    return statistics.median(runs)


def main() -> None:
    peers = peer_table([PeerConfig(name="gw", match="192.0.2.50")])
    vias = "".join(f"Via: SIP/2.0/UDP 10.0.{i}.1:5060;branch=z9hG4bKv{i};received=10.0.{i}.1;rport=5060\r\n"
                   for i in range(31))
    pad = "".join(f"X-H{i}: {'a' * 40}\r\n" for i in range(60))
    worst = request("OPTIONS", 0, vias + pad)
    worst = worst[:8000] if len(worst) > 8192 else worst
    cases = {
        "over the size cap (9 KB)": (request("OPTIONS", 0, "X-Pad: " + "a" * 9000 + "\r\n"), PEER, None),
        "bucket empty (flooding host)": (request("OPTIONS", 0), PEER, 0.0),
        "junk the parser refuses": (b"\x16\x03\x01" + bytes(range(256)) * 4, PEER, None),
        "stranger's INVITE (403)": (request("INVITE", 0), STRANGER, None),
        "peer's OPTIONS (passed on)": (request("OPTIONS", 0), PEER, None),
        f"worst within the caps ({len(worst)} B, 32 Via, 93 fields)": (worst, PEER, None),
    }
    print("SIP call gate, cost per datagram on the event loop (CallGate.check, median of 5 runs):")
    for name, (data, source, rate) in cases.items():
        gate = CallGate(peers, RateLimiter(rate=rate if rate is not None else 1e9, burst=0 if rate == 0.0 else 10**9,
                                           max_sources=10))
        if rate == 0.0:
            gate.limiter._buckets[source[0]] = (0.0, 0.0)
        us = per_call(lambda i: gate.check(data, source, UDP, 0.0), 2000)
        print(f"  {name:52s} {us:8.1f} us   ({20000 / us:7.0f} per 20 ms tick)")
    huge = request("ACK", 0, "".join(f"Via: SIP/2.0/UDP 10.0.{i // 256}.{i % 256}:5060;branch=z9hG4bK{i}\r\n"
                                     for i in range(1300)))
    try:
        parse_message(huge)
    except Exception:  # noqa: BLE001 - the caps refuse it; the cost is what counts
        pass
    us = per_call(lambda i: _parse_quietly(huge), 50)
    print(f"  {'a 56 KB ACK with 1300 Via, parser alone (now refused)':52s} {us:8.1f} us "
          f"(the gate drops it before parsing: see 'over the size cap')")


def _parse_quietly(data: bytes) -> None:
    try:
        parse_message(data)
    except Exception:  # noqa: BLE001
        pass


if __name__ == "__main__":
    main()
