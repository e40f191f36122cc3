"""The SIP messages of each call, kept for its diagnostics file: per Call-ID, bounded, sans-I/O.

The transport hands the log every message the call gate let through (``received``) and every
message it sends (``sent``); only calls being followed keep anything.  A call is followed from the
INVITE the gate admitted (``follow``); the daemon takes its messages when the call ends (``take``)
and stores them with the fax, or drops them for a call it refused before recording it (``forget``).

Bounds, because the messages come from outside: each message is kept up to MESSAGE_BYTES; a call
keeps its first HEAD messages (at most HEAD_BYTES of them) and then only its last TAIL, counting
the ones in between; at most CALLS calls are followed at once, the oldest dropped first (a call the
daemon never took, e.g. one the user agent refused itself).
"""

from __future__ import annotations

import collections
import datetime
from dataclasses import dataclass, field

from appliance.sip.events import Local
from appliance.sip.policy import prescan_call_id

MESSAGE_BYTES = 8192
HEAD = 32
HEAD_BYTES = 96 * 1024
TAIL = 16
CALLS = 32


@dataclass(frozen=True)
class LoggedMessage:
    when: float  # wall-clock seconds
    outgoing: bool
    transport: str
    local: tuple[str, int]
    remote: tuple[str, int]
    data: bytes  # cut at MESSAGE_BYTES
    size: int  # as it was on the wire


@dataclass
class CallMessages:
    head: list[LoggedMessage] = field(default_factory=list)
    head_bytes: int = 0
    tail: collections.deque[LoggedMessage] = field(default_factory=lambda: collections.deque(maxlen=TAIL))
    #: messages between the head and the tail that were not kept
    left_out: int = 0

    def add(self, msg: LoggedMessage) -> None:
        if not self.tail and len(self.head) < HEAD and self.head_bytes + len(msg.data) <= HEAD_BYTES:
            self.head.append(msg)
            self.head_bytes += len(msg.data)
            return
        if len(self.tail) == TAIL:
            self.left_out += 1
        self.tail.append(msg)


class MessageLog:
    """Bounded records of the SIP messages of the calls being followed, by Call-ID."""

    def __init__(self, calls: int = CALLS) -> None:
        self.max_calls = calls
        self._calls: collections.OrderedDict[str, CallMessages] = collections.OrderedDict()

    @property
    def following(self) -> bool:
        """Whether any call is followed (else sending costs nothing more)."""
        return bool(self._calls)

    def follow(self, call_id: str) -> None:
        if call_id in self._calls:
            return
        while len(self._calls) >= self.max_calls:
            self._calls.popitem(last=False)
        self._calls[call_id] = CallMessages()

    def received(self, call_id: str, data: bytes, remote: tuple[str, int], local: Local, when: float) -> None:
        self._add(call_id, False, data, remote, local, when)

    def sent(self, data: bytes, remote: tuple[str, int], local: Local, when: float) -> None:
        """A message we sent; its Call-ID is read from it only while some call is followed."""
        if not self._calls:
            return
        call_id = prescan_call_id(data)
        if call_id is not None:
            self._add(call_id, True, data, remote, local, when)

    def _add(
        self, call_id: str, outgoing: bool, data: bytes, remote: tuple[str, int], local: Local, when: float
    ) -> None:
        record = self._calls.get(call_id)
        if record is not None:
            record.add(
                LoggedMessage(
                    when,
                    outgoing,
                    local.transport,
                    (local.host, local.port),
                    (remote[0], remote[1]),
                    bytes(data[:MESSAGE_BYTES]),
                    len(data),
                )
            )

    def take(self, call_id: str) -> CallMessages | None:
        """The call's messages; it is no longer followed."""
        return self._calls.pop(call_id, None)

    def forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)


def _stamp(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _one(msg: LoggedMessage) -> str:
    local = f"{msg.local[0]}:{msg.local[1]}"
    remote = f"{msg.remote[0]}:{msg.remote[1]}"
    route = (
        f"sent over {msg.transport.upper()} from {local} to {remote}"
        if msg.outgoing
        else f"received over {msg.transport.upper()} from {remote} at {local}"
    )
    cut = f", cut at {len(msg.data)} of {msg.size} bytes" if msg.size > len(msg.data) else ""
    body = msg.data.decode("utf-8", "replace").replace("\r\n", "\n")
    return f"=== {_stamp(msg.when)}  {route} ({msg.size} bytes{cut})\n{body.rstrip(chr(10))}\n"


def messages_text(record: CallMessages) -> str:
    """The call's messages as text, one after the other, as a support engineer reads a sngrep dump."""
    parts = [_one(m) for m in record.head]
    if record.left_out:
        parts.append(
            f"=== {record.left_out} message(s) left out here (only the first {HEAD} and the last "
            f"{TAIL} of a call are kept)\n"
        )
    parts += [_one(m) for m in record.tail]
    return "\n".join(parts)
