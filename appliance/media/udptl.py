"""UDPTL (T.38 Annex A) framing with redundancy and FEC recovery, sans-I/O.

A datagram is aligned-PER ``UDPTLPacket``: a 2-byte sequence number, the primary IFP as an open
type (length determinant + octets), then the error-recovery CHOICE: ``0x00`` + a SEQUENCE OF
older IFPs (redundancy, newest first), or ``0x80`` + ``fec-npackets`` (an unconstrained INTEGER,
``01 <span>`` in practice) + a SEQUENCE OF parity octet strings (FEC).

FEC layout (as Asterisk's udptl.c builds and repairs it, and as done here): a packet with
sequence ``s``, span ``S`` and ``E`` entries carries, in entry ``m`` (0 <= m < E), the XOR of the
``S`` IFPs with sequence numbers ``s + m - E*k`` for ``k = 1..S``, i.e. ``S`` earlier IFPs taken
with a stride of ``E``.  Shorter IFPs are zero-padded, so the parity is as long as the longest IFP
of its group.  Every IFP is thus protected exactly once by each of the next ``E*S`` packets, and
interleaving (``E > 1``) lets a burst of up to ``E`` consecutive losses be rebuilt from one
packet.  An IFP rebuilt from parity has the parity's length: if it was not the longest of its
group it comes back with trailing zero octets (the wire carries no length for it).

Peers are hostile (Asterisk AST-2016-003 crashed on crafted redundancy), so ``decode`` checks
every length against the datagram; the receiver counts what it rejects and never raises.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

MAX_DATAGRAM = 1400  # the most we accept, whatever was advertised
DEFAULT_FAR_MAX_DATAGRAM = 400  # what a far T38FaxMaxDatagram of 0 or > 1400 is taken as
MAX_SECONDARIES = 15
MAX_FEC_ENTRIES = 15
MAX_FEC_SPAN = 15
_SEQ_MOD = 1 << 16
_RECOVERY_CHOICE = 0x00
_FEC_CHOICE = 0x80


class UdptlError(ValueError):
    """A datagram that is not a well-formed UDPTL packet; the message names the problem."""


@dataclass(frozen=True)
class UdptlPacket:
    """One UDPTL datagram.  ``fec`` is implied by FEC fields; set it alone for ``80 01 00 00``."""

    seq: int
    primary: bytes
    secondaries: tuple[bytes, ...] = ()  # redundancy: older IFPs, newest first (seq-1, seq-2, ...)
    fec_span: int = 0  # FEC mode when fec_entries is non-empty
    fec_entries: tuple[bytes, ...] = ()
    fec: bool = False

    def __post_init__(self) -> None:
        if self.fec_entries or self.fec_span:
            object.__setattr__(self, "fec", True)
        if self.fec and self.secondaries:
            raise ValueError("a UDPTL packet carries either secondaries or FEC, not both")


# -- aligned-PER pieces ------------------------------------------------------------------------


def _length(n: int) -> bytes:
    """A PER length determinant: one octet below 128, two (``10xxxxxx``) below 16384."""
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return bytes([0x80 | n >> 8, n & 0xFF])
    raise ValueError(f"length {n} needs a fragmented encoding, which UDPTL never uses")


def _open_type(data: bytes) -> bytes:
    return _length(len(data)) + data


class _Reader:
    """Bounds-checked cursor: every read names what ran past the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise UdptlError(f"datagram ends before the {what}")
        self.pos += 1
        return self.data[self.pos - 1]

    def length(self, what: str) -> int:
        first = self.byte(f"length of the {what}")
        if first < 0x80:
            return first
        if first >= 0xC0:
            raise UdptlError(f"fragmented length (0x{first:02x}) for the {what} is not supported")
        return (first & 0x3F) << 8 | self.byte(f"second length octet of the {what}")

    def octets(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise UdptlError(f"{what} of {n} bytes runs past the end of the datagram")
        self.pos += n
        return bytes(self.data[self.pos - n : self.pos])

    def open_type(self, what: str) -> bytes:
        return self.octets(self.length(what), what)


def decode(data: bytes) -> UdptlPacket:
    """Parse one datagram strictly; anything malformed raises ``UdptlError``."""
    if len(data) > MAX_DATAGRAM:
        raise UdptlError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM}")
    r = _Reader(data)
    seq = r.byte("sequence number") << 8
    seq |= r.byte("sequence number")
    primary = r.open_type("primary IFP")
    if not primary:
        raise UdptlError("primary IFP is empty")
    choice = r.byte("error-recovery choice")
    secondaries: tuple[bytes, ...] = ()
    span, fec = 0, False
    entries: tuple[bytes, ...] = ()
    if choice == _RECOVERY_CHOICE:
        count = r.length("secondary IFP count")
        if count > MAX_SECONDARIES:
            raise UdptlError(f"{count} secondary IFPs exceed the limit of {MAX_SECONDARIES}")
        # zero-length secondaries are legal here (AST-2016-003 came from mishandling them)
        secondaries = tuple(r.open_type(f"secondary IFP {i}") for i in range(count))
    elif choice == _FEC_CHOICE:
        fec = True
        n = r.length("FEC span")
        if not 1 <= n <= 2:
            raise UdptlError(f"FEC span encoded in {n} octets, expected 1 or 2")
        raw = r.octets(n, "FEC span")
        span = int.from_bytes(raw, "big", signed=True)
        if not 0 <= span <= MAX_FEC_SPAN:
            raise UdptlError(f"FEC span {span} is outside 0..{MAX_FEC_SPAN}")
        count = r.length("FEC entry count")
        if count > MAX_FEC_ENTRIES:
            raise UdptlError(f"{count} FEC entries exceed the limit of {MAX_FEC_ENTRIES}")
        entries = tuple(r.open_type(f"FEC entry {i}") for i in range(count))
    else:
        raise UdptlError(f"error-recovery choice 0x{choice:02x} is neither 0x00 nor 0x80")
    if r.pos != len(data):
        raise UdptlError(f"{len(data) - r.pos} trailing byte(s) after the packet")
    return UdptlPacket(seq, primary, secondaries, span, entries, fec)


def encode(packet: UdptlPacket) -> bytes:
    """The datagram for ``packet``; zero-length IFPs are written as a bare ``00`` length."""
    if not 0 <= packet.seq < _SEQ_MOD:
        raise ValueError(f"sequence number {packet.seq} is outside 0..65535")
    if not packet.primary:
        raise ValueError("primary IFP is empty")
    out = bytearray(packet.seq.to_bytes(2, "big"))
    out += _open_type(packet.primary)
    if packet.fec:
        if not 0 <= packet.fec_span <= MAX_FEC_SPAN or len(packet.fec_entries) > MAX_FEC_ENTRIES:
            raise ValueError("FEC span or entry count out of range")
        out.append(_FEC_CHOICE)
        out += b"\x01" + bytes([packet.fec_span])  # an unconstrained INTEGER below 128
        out += _length(len(packet.fec_entries))
        for entry in packet.fec_entries:
            out += _open_type(entry)
    else:
        if len(packet.secondaries) > MAX_SECONDARIES:
            raise ValueError(f"more than {MAX_SECONDARIES} secondary IFPs")
        out.append(_RECOVERY_CHOICE)
        out += _length(len(packet.secondaries))
        for ifp in packet.secondaries:
            out += _open_type(ifp)
    return bytes(out)


def fec_group(seq: int, entry: int, span: int, entries: int) -> list[int]:
    """Sequence numbers XORed into FEC ``entry`` of packet ``seq`` (unwrapped, oldest first)."""
    return [seq + entry - entries * k for k in range(span, 0, -1)]


def xor_parity(ifps: list[bytes]) -> bytes:
    """XOR of ``ifps``, each zero-padded to the longest."""
    out = bytearray(max((len(p) for p in ifps), default=0))
    for p in ifps:
        for i, b in enumerate(p):
            out[i] ^= b
    return bytes(out)


# -- receiving ---------------------------------------------------------------------------------


class UdptlReceiver:
    """Feed datagrams in arrival order; get IFP packets in sequence order, each exactly once.

    No packet is held back waiting for a gap to fill: T.38 is timed, and spandsp's t38_core copes
    with a missing sequence number.  When a datagram moves the stream forward, the IFPs it skips
    over are rebuilt from its secondaries or from FEC parity where possible and delivered first;
    the rest count as ``lost``, and a straggler arriving afterwards is dropped as ``late``.

    ``stats``: received (every datagram fed), rejected (malformed), delivered, duplicates,
    late, recovered_redundancy, recovered_fec, lost, resyncs.
    """

    #: a jump further than this, either way, is a peer that restarted its sequence numbers
    MAX_GAP = 500
    #: IFPs kept for FEC repair: enough for the largest span x entries we accept
    HISTORY = MAX_FEC_SPAN * MAX_FEC_ENTRIES + 16

    def __init__(self) -> None:
        self.stats: collections.Counter[str] = collections.Counter()
        self._next: int | None = None  # unwrapped sequence number of the next IFP to deliver
        self._ifps: dict[int, bytes] = {}  # known IFPs by unwrapped seq (recent only)
        self._delivered: dict[int, bool] = {}  # recent seqs behind _next: delivered or lost

    def receive(self, data: bytes) -> list[tuple[int, bytes]]:
        self.stats["received"] += 1
        try:
            packet = decode(data)
        except UdptlError:
            self.stats["rejected"] += 1
            return []
        if self._next is None:
            return self._start(packet, packet.seq)
        ahead = (packet.seq - self._next) % _SEQ_MOD
        if ahead >= _SEQ_MOD // 2:
            ahead -= _SEQ_MOD
        seq = self._next + ahead  # unwrapped
        if ahead > self.MAX_GAP or ahead < -self.MAX_GAP:
            self.stats["resyncs"] += 1
            return self._start(packet, seq)
        if ahead < 0:
            # behind the delivery point: a repeat, or a straggler already given up on
            self.stats["duplicates" if self._delivered.get(seq, True) else "late"] += 1
            return []
        return self._advance(packet, seq, count_lost=True)

    def _start(self, packet: UdptlPacket, seq: int) -> list[tuple[int, bytes]]:
        """First packet (or a restarted peer): its secondaries are the stream's first IFPs."""
        self._ifps.clear()
        self._delivered.clear()
        self._next = seq - len(packet.secondaries)
        return self._advance(packet, seq, count_lost=False)

    def _advance(self, packet: UdptlPacket, seq: int, *, count_lost: bool) -> list[tuple[int, bytes]]:
        assert self._next is not None
        self._ifps[seq] = packet.primary
        for i, ifp in enumerate(packet.secondaries):
            older = seq - 1 - i
            if ifp and older >= self._next and older not in self._ifps:
                self._ifps[older] = ifp
                self.stats["recovered_redundancy"] += 1
        if packet.fec_span and packet.fec_entries:
            self._repair_fec(seq, packet.fec_span, packet.fec_entries)
        out: list[tuple[int, bytes]] = []
        for s in range(self._next, seq + 1):
            got = self._ifps.get(s)
            if got is None:
                if count_lost:
                    self.stats["lost"] += 1
                self._delivered[s] = False
            else:
                out.append((s % _SEQ_MOD, got))
                self._delivered[s] = True
        self.stats["delivered"] += len(out)
        self._next = seq + 1
        self._prune()
        return out

    def _repair_fec(self, seq: int, span: int, blobs: tuple[bytes, ...]) -> None:
        """Rebuild, from this packet's parity, each missing IFP that is alone in its group.

        Only the newest packet can help: an earlier FEC packet protects only IFPs older than
        itself, all delivered or given up on when it arrived.  One packet's groups are disjoint
        (one per residue modulo ``entries``), so one repair never enables another.
        """
        assert self._next is not None
        for m, parity in enumerate(blobs):
            group = fec_group(seq, m, span, len(blobs))
            missing = [s for s in group if s not in self._ifps]
            if len(missing) != 1 or missing[0] < self._next:
                continue
            known = [self._ifps[s] for s in group if s in self._ifps]
            if any(len(p) > len(parity) for p in known):
                continue  # inconsistent parity: leave it alone
            rebuilt = xor_parity([parity, *known])
            if rebuilt:
                self._ifps[missing[0]] = rebuilt
                self.stats["recovered_fec"] += 1

    def _prune(self) -> None:
        assert self._next is not None
        floor = self._next - self.HISTORY
        for table in (self._ifps, self._delivered):
            for s in [s for s in table if s < floor]:
                del table[s]


# -- sending -----------------------------------------------------------------------------------


class UdptlSender:
    """Our outgoing UDPTL stream: sequence numbers from ``first_seq``, redundancy sized to the far end.

    Redundancy carries up to ``redundancy`` previous IFPs, newest first, as many as fit within
    the far end's T38FaxMaxDatagram, counting every length determinant exactly.  With
    ``fec=True`` each packet instead carries ``fec_entries`` parity blobs over ``fec_span`` IFPs
    (layout in the module docstring), wound up from zero at the start of the stream as Asterisk
    does so that no parity refers to an IFP before the first.  FEC packets are not trimmed to
    the far end's limit: parity is as long as the longest IFP it covers.
    """

    def __init__(
        self,
        far_max_datagram: int = 400,
        redundancy: int = 3,
        fec: bool = False,
        fec_span: int = 3,
        fec_entries: int = 1,
        first_seq: int = 0,
    ) -> None:
        if far_max_datagram <= 0 or far_max_datagram > MAX_DATAGRAM:
            far_max_datagram = DEFAULT_FAR_MAX_DATAGRAM
        if not 0 <= redundancy <= MAX_SECONDARIES:
            raise ValueError(f"redundancy {redundancy} is outside 0..{MAX_SECONDARIES}")
        if fec and not (1 <= fec_span <= MAX_FEC_SPAN and 1 <= fec_entries <= MAX_FEC_ENTRIES):
            raise ValueError("FEC span and entries must be 1..15")
        self.far_max_datagram = far_max_datagram
        self.redundancy = redundancy
        self.fec = fec
        self.fec_span = fec_span
        self.fec_entries = fec_entries
        self._seq = first_seq % _SEQ_MOD
        self._history: collections.deque[bytes] = collections.deque(
            maxlen=max(redundancy, fec_span * fec_entries if fec else 0)
        )

    def packet(self, ifp: bytes) -> bytes:
        """The datagram carrying ``ifp`` (which is never empty: every IFP has a type octet)."""
        if not ifp:
            raise ValueError("an IFP is never empty")
        seq = self._seq
        if self.fec:
            data = encode(self._fec_packet(seq, ifp))
        else:
            size = 2 + len(_open_type(ifp)) + 1 + 1  # seq, primary, choice, count (< 128)
            carried: list[bytes] = []
            for old in reversed(self._history):  # newest first
                if len(carried) == self.redundancy:
                    break
                size += len(_open_type(old))
                if size > self.far_max_datagram:
                    break
                carried.append(old)
            data = encode(UdptlPacket(seq, ifp, tuple(carried)))
        if self._history.maxlen:
            self._history.append(ifp)
        self._seq = (seq + 1) % _SEQ_MOD
        return data

    def _fec_packet(self, seq: int, ifp: bytes) -> UdptlPacket:
        span, entries = self.fec_span, self.fec_entries
        sent = len(self._history)  # how many earlier IFPs we still have, at most span*entries
        if sent < span * entries:
            entries = sent // span  # wind up: no group may reach before the first IFP
        history = list(self._history)  # oldest first; history[-1] is seq-1
        blobs = []
        for m in range(entries):
            group = fec_group(seq, m, span, entries)
            blobs.append(xor_parity([history[s - seq] for s in group]))
        return UdptlPacket(seq, ifp, fec=True, fec_span=span if entries else 0, fec_entries=tuple(blobs))
