"""A UDPTL stream (appliance/media/udptl.py): the receiver's redundancy and FEC recovery.

Input, first byte even: hostile datagrams, each a 2-byte length and its bytes, fed to a
UdptlReceiver.  Contract: receive never raises; what it delivers is (seq, IFP) with a sequence
number in range and a non-empty IFP; one datagram releases at most MAX_GAP + 1 IFPs; the
history kept is bounded; the stats count what was delivered.

First byte odd: a round trip.  Bytes 1-5 choose the sender (FEC or redundancy, span, entries,
depth, the far end's datagram limit, the first sequence number); then records of a control byte
(bit 0: lose the datagram, bit 7: deliver it after the next, bits 1-6: IFP length - 1) and the
IFP.  Contract: every IFP delivered is the one sent with that sequence number (one rebuilt
from FEC parity may carry trailing zero octets, as the wire has no length for it), each sequence
number at most once, in order; with no loss and no reordering every IFP arrives.
"""
from __future__ import annotations

from appliance.media.udptl import MAX_FEC_SPAN, UdptlReceiver, UdptlSender

MAX_LEN = 4096


def _check_out(out: list[tuple[int, bytes]], receiver: UdptlReceiver) -> None:
    assert len(out) <= receiver.MAX_GAP + 1, len(out)
    for seq, ifp in out:
        assert 0 <= seq < 65536 and isinstance(ifp, bytes) and ifp, (seq, ifp)
    assert len(receiver._ifps) <= receiver.HISTORY + 1 and len(receiver._delivered) <= receiver.HISTORY + 1


def _hostile(data: bytes) -> None:
    receiver = UdptlReceiver()
    delivered = 0
    i = 0
    while i + 2 <= len(data):
        n = int.from_bytes(data[i:i + 2], "big") % 1600
        datagram, i = data[i + 2:i + 2 + n], i + 2 + n
        out = receiver.receive(datagram)
        _check_out(out, receiver)
        delivered += len(out)
    assert receiver.stats["delivered"] == delivered


def _round_trip(data: bytes) -> None:
    if len(data) < 6:
        return
    fec = bool(data[1] & 1)
    span, entries = data[1] >> 1 & 0x0F or 1, data[2] % 4 + 1
    sender = UdptlSender(far_max_datagram=data[3] * 8, redundancy=data[2] >> 2 & 0x0F, fec=fec,
                         fec_span=min(span, MAX_FEC_SPAN), fec_entries=entries,
                         first_seq=int.from_bytes(data[4:6], "big"))
    sent: dict[int, bytes] = {}
    wire: list[tuple[bytes, bool, bool]] = []
    i, seq = 6, int.from_bytes(data[4:6], "big")
    while i < len(data):
        control = data[i]
        ifp = data[i + 1:i + 2 + (control >> 1 & 0x3F)]
        i += 2 + (control >> 1 & 0x3F)
        if not ifp:
            break
        sent[seq % 65536] = ifp
        wire.append((sender.packet(ifp), bool(control & 1), bool(control & 0x80)))
        seq += 1
    order: list[bytes] = []
    held: bytes | None = None
    for datagram, lost, late in wire:
        if lost:
            continue
        if late and held is None:
            held = datagram
            continue
        order.append(datagram)
        if held is not None:
            order.append(held)
            held = None
    if held is not None:
        order.append(held)
    receiver = UdptlReceiver()
    got: list[int] = []
    for datagram in order:
        out = receiver.receive(datagram)
        _check_out(out, receiver)
        for s, ifp in out:
            want = sent[s]
            assert ifp[:len(want)] == want and not ifp[len(want):].strip(b"\0"), (s, ifp, want)
            assert len(ifp) == len(want) or fec, (s, ifp, want)
            got.append(s)
    assert len(got) == len(set(got)), got
    offsets = [(s - int.from_bytes(data[4:6], "big")) % 65536 for s in got]
    assert offsets == sorted(offsets), got
    assert receiver.stats["rejected"] == 0
    if all(not lost and not late for _, lost, late in wire):
        assert len(got) == len(wire), (len(got), len(wire))


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        _round_trip(data)
    else:
        _hostile(data[1:])
