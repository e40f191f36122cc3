"""How one outbound attempt ended, in the words the report uses.

Both ways out (SIP and modem) reduce what happened to one `Outcome`; the queue decides from its
`Result` whether to try again, and the report tells the sender in plain words. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Result(StrEnum):
    SENT = "sent"  # every page confirmed (T.30 MCF on the last page)
    BUSY = "busy"  # SIP 486/600, modem BUSY
    NO_ANSWER = "no_answer"  # SIP 408/480/487 or no final answer in time, modem NO ANSWER
    NO_CARRIER = "no_carrier"  # answered, but no fax machine answered (no CED/DIS), modem NO CARRIER
    REFUSED = "refused"  # the network or far end refused the call (SIP 4xx-6xx other than the above)
    TRAINING_FAILED = "training_failed"  # fax tones, but no speed could be agreed (T.30 phase B)
    DROPPED = "dropped"  # the line went away or the far end stopped mid-fax (some pages may be confirmed)
    FAR_END_ERROR = "far_end_error"  # the far end refused a page or the document (T.30 DCN, RTN, ...)
    CANCELLED = "cancelled"  # the sender (or the owner) cancelled it
    NO_ROUTE = "no_route"  # no line could be used (none configured, modem gone, trunk down)
    UNKNOWN = "unknown"  # the box restarted during the attempt: whether it arrived is not known
    ERROR = "error"  # our own failure (a bug, a file that went missing); said as such


#: results worth another attempt on the route's schedule; the others end the job
RETRYABLE = frozenset(
    {Result.BUSY, Result.NO_ANSWER, Result.NO_CARRIER, Result.TRAINING_FAILED, Result.DROPPED, Result.NO_ROUTE}
)

WORDS: dict[Result, str] = {
    Result.SENT: "sent: every page was confirmed by the receiving fax machine",
    Result.BUSY: "the number was busy",
    Result.NO_ANSWER: "nobody answered",
    Result.NO_CARRIER: "the call was answered, but not by a fax machine",
    Result.REFUSED: "the call was refused",
    Result.TRAINING_FAILED: "the fax machines could not agree on a speed (the line may be poor)",
    Result.DROPPED: "the line was dropped during the fax",
    Result.FAR_END_ERROR: "the receiving fax machine stopped the fax",
    Result.CANCELLED: "the fax was cancelled",
    Result.NO_ROUTE: "no line was available to send it",
    Result.UNKNOWN: "the fax box restarted during the call; whether the fax arrived is not known",
    Result.ERROR: "the fax box failed to send it (an internal error)",
}


@dataclass
class Outcome:
    """One attempt's end. ``detail`` is the technical cause (SIP status, T.30 result text, modem
    reply) shown under the plain words; ``pages_confirmed`` counts pages the far end confirmed."""

    result: Result
    detail: str = ""
    pages_confirmed: int = 0
    pages_total: int = 0
    remote_ident: str = ""  # the far end's CSI, cleaned by whoever reads it from the line
    duration: float = 0.0  # seconds from dialling to hang-up
    bit_rate: int = 0
    ecm: bool = False
    way: str = ""  # "SIP G.711 PCMU", "SIP T.38", "modem ttyACM0 Class 1", ...
    sip_status: int | None = None
    t30_code: int | None = None
    trace: list[str] = field(default_factory=list)

    @property
    def retryable(self) -> bool:
        return self.result in RETRYABLE

    def words(self) -> str:
        """The plain sentence for the report: "the line was dropped during the fax (page 3 of 5)"."""
        text = WORDS[self.result]
        if self.result is Result.DROPPED and self.pages_total:
            text += f" (on page {min(self.pages_confirmed + 1, self.pages_total)} of {self.pages_total})"
        return text
