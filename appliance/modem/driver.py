"""The contract between a modem line (rings, caller ID, the spool) and a fax-class driver.

The line decides *when* to answer and records the call; the driver answers (ATA means different
things in Class 1 and Class 2), receives the fax into ``call.tiff_path`` and reports what
happened.  A driver never raises for anything the modem or the far end does: a modem that stops
answering, a caller that hangs up, a USB modem pulled out mid-page all end in a result whose pages
are kept.  The facts are the same :class:`appliance.calls.facts.CallFacts` a SIP call reports, so
the spool and routing treat a modem fax exactly like a SIP one.
"""

from __future__ import annotations

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
