"""The contract between a modem line (rings, caller ID, the spool) and a fax-class driver.

Sending is the mirror image: :class:`ModemSendJob` in, :class:`ModemSendResult` out of a
:class:`SendDriver`, which dials, sends and hangs up; it never raises for what the modem, the
line or the far end does either.  The line (``ModemLine.send``) runs it between two idle waits,
so a line never answers while it sends and never dials while a call is in.

The line decides *when* to answer and records the call; the driver answers (ATA means different
things in Class 1 and Class 2), receives the fax into ``call.tiff_path`` and reports what
happened.  A driver never raises for anything the modem or the far end does: a modem that stops
answering, a caller that hangs up, a USB modem pulled out mid-page all end in a result whose pages
are kept.  The facts are the same :class:`appliance.calls.facts.CallFacts` a SIP call reports, so
the spool and routing treat a modem fax exactly like a SIP one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from appliance.calls.facts import CallFacts
from appliance.modem.serial_port import ModemPort


@dataclass
class ModemCall:
    """What the line knows when it answers."""

    device: str  # the configured path (a /dev/serial/by-id link, a virtual link)
    line: str  # "modem:<name>", for routing and the spool
    tiff_path: Path  # where the received pages go (the spool's incoming file)
    ident: str  # our CSI
    ecm: bool = True
    caller_number: str = ""
    caller_name: str = ""
    called_number: str = ""  # NDID, where the modem reports it
    max_call_duration: float = 900.0
    quirks: frozenset[str] = frozenset()
    answer: str = "ATA"  # the quirks table's answer command (ATA on every modem known so far)


@dataclass
class ModemCallResult:
    complete: bool
    #: the outcome and its diagnostics; the daemon adds what it knew when the call was answered
    facts: CallFacts = field(default_factory=CallFacts)


class ReceiveDriver(Protocol):
    async def receive(self, port: ModemPort, call: ModemCall) -> ModemCallResult: ...


def _nothing(*_: object) -> None:
    return None


@dataclass
class ModemSendJob:
    """One fax to send through a modem line: what ``ModemLine.send`` hands the driver."""

    dial: str  # the digits (and , pauses) to dial, as the route made them
    tiff_path: Path
    ident: str  # our TSI
    ecm: bool = True
    on_connected: Callable[[], None] = _nothing  # the far end's fax answered (T.30 phase B)
    on_page: Callable[[int], None] = _nothing  # pages confirmed so far (MCF), after each page
    cancel: asyncio.Event | None = None
    max_call_duration: float = 900.0
    #: how long ATD may take to connect (ringing, answer, the far end's first signal)
    answer_timeout: float = 90.0
    quirks: frozenset[str] = frozenset()
    dial_command: str = "ATDT"


@dataclass
class ModemSendResult:
    """What happened, as the modem said it; ``appliance.outbound.modem_send`` words it."""

    #: ATD's final result: CONNECT/OK (answered), BUSY, NO ANSWER, NO CARRIER, NO DIALTONE,
    #: ERROR, "timeout"; "" when the dial command never ran
    dial_result: str = ""
    fax_answered: bool = False  # the far end's fax identified itself (DIS): on_connected ran
    complete: bool = False  # every page confirmed
    pages_sent: int = 0  # pages the far end confirmed
    pages_total: int = 0
    t30_code: int | None = None  # spandsp's T30_ERR_* (Class 1)
    t30_text: str = ""
    hangup_code: str = ""  # Class 2/2.0 +FHS/+FHNG code, as T.32 hex ("00", "25", ...)
    reason: str = ""  # why the call ended, in the driver's words
    remote_ident: str = ""
    bit_rate: int = 0
    ecm: bool = False
    cancelled: bool = False
    device_lost: bool = False
    modem_class: str = ""
    trace: list[str] = field(default_factory=list)
    modem_history: str = ""


class SendDriver(Protocol):
    async def send(self, port: ModemPort, job: ModemSendJob) -> ModemSendResult: ...
