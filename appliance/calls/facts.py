"""What one fax call tells the daemon and the spool, from either front-end (SIP or a modem line).

A call's facts are made in two steps by two parties.  When the call is answered the daemon knows
who and where (line, Call-ID, numbers, the caller's name, notes such as the SIP peer or the modem's
rings) and records the call before any page arrives.  When it ends, the front-end's T.30 session
(``fax/session.py`` for SIP and Class 1, the Class 2 session for a modem's own T.30) reports the
outcome and its diagnostics; ``ended_with`` joins the two.  ``columns`` is the one way into the
spool's record: the typed diagnostics become keys of the record's ``extra`` exactly as the fax page
(``web/callview.py``) and the diagnostics file read them, a diagnostic a call did not report (None)
is left out rather than stored empty, and ``extra`` keeps whatever else a front-end noted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from appliance.spool.store import FaxRecord

#: the columns the answer fills in; the rest of a record's columns are the outcome's
ANSWER_FIELDS = ("line", "call_id", "caller_number", "caller_name", "called_number")
#: page_stats' keys every front-end reports; a Class 2 modem adds its own (``PageFacts.more``)
_PAGE_KEYS = ("bad_rows", "longest_bad_row_run", "width", "length", "resolution")


@dataclass
class PageFacts:
    """One received page as T.30 saw it (the record's ``extra["page_stats"]``)."""

    bad_rows: int
    longest_bad_row_run: int
    width: int
    length: int
    resolution: str
    #: what a Class 2 modem adds about the page: partial, post_page, copy_quality
    more: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, page: Mapping[str, Any]) -> PageFacts:
        """From a page's dictionary: the common keys, the rest kept in ``more``."""
        return cls(**{k: page[k] for k in _PAGE_KEYS}, more={k: v for k, v in page.items() if k not in _PAGE_KEYS})

    def as_dict(self) -> dict[str, Any]:
        return {
            "bad_rows": self.bad_rows,
            "longest_bad_row_run": self.longest_bad_row_run,
            "width": self.width,
            "length": self.length,
            "resolution": self.resolution,
            **self.more,
        }


@dataclass
class MediaFacts:
    """How a SIP call's media went: what it ran on, what it switched between, its counters."""

    mode: str  # "T.38", "G.711 PCMU" or "G.711 PCMA"
    switches: list[str]
    #: the playout buffer's and the sender's counters, and when the clock ticked late
    rtp: dict[str, Any]
    udptl: dict[str, int]


@dataclass
class CaptureFacts:
    """What the pcap of a call's media holds (capture on for its peer)."""

    packets: int
    bytes: int
    left_out: int


@dataclass
class CallFacts:
    """Everything one call reports, the same for both front-ends (see the module docstring)."""

    # -- known when the call is answered
    line: str = ""
    call_id: str = ""
    caller_number: str = ""
    caller_name: str = ""
    called_number: str = ""
    # -- the outcome, from the T.30 session
    remote_ident: str = ""
    bit_rate: int = 0
    ecm: bool = False
    resolution: str = ""
    bad_rows: int = 0
    duration: float = 0.0
    result_code: int = 0
    result_text: str = ""
    #: pages as the front-end counted them (None: it could not tell); the spool counts the file
    pages: int | None = None
    # -- diagnostics: None is "not reported", left out of the record
    page_stats: list[PageFacts] | None = None
    remote_vendor: str | None = None
    remote_model: str | None = None
    #: why the appliance ended the call itself ("" when it did not)
    hangup_reason: str | None = None
    trace: list[str] | None = None
    #: how the call ended as the SIP side or the modem driver saw it
    end_reason: str | None = None
    modem_class: str | None = None
    #: the modem's last exchanges, kept when a modem call did not complete
    modem_history: str | None = None
    media: MediaFacts | None = None
    capture: CaptureFacts | None = None
    #: anything else a front-end or the daemon noted (SIP peer and address, Exchange UM fields, a
    #: modem's rings and caller ID, driver counters): stored as given, never over a typed key
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def answered(cls, record: FaxRecord) -> CallFacts:
        """The answer's part of a call the spool recorded (its columns and its ``extra``)."""
        return cls(**{k: getattr(record, k) for k in ANSWER_FIELDS}, extra=dict(record.extra))

    def ended_with(self, outcome: CallFacts) -> CallFacts:
        """These answered facts with the front-end's ``outcome``: who and where from here, what
        happened from there; diagnostics from the outcome where it has them; ``extra`` merged."""
        joined = dataclasses.replace(
            outcome, **{k: getattr(self, k) for k in ANSWER_FIELDS}, extra={**self.extra, **outcome.extra}
        )
        for f in _DIAGNOSTICS:
            if getattr(joined, f) is None:
                setattr(joined, f, getattr(self, f))
        return joined

    def extra_record(self) -> dict[str, Any]:
        """The record's ``extra``: the typed diagnostics under their stored keys, then the rest."""
        out: dict[str, Any] = {}
        if self.page_stats is not None:
            out["page_stats"] = [p.as_dict() for p in self.page_stats]
        for key in (
            "remote_vendor",
            "remote_model",
            "hangup_reason",
            "trace",
            "end_reason",
            "modem_class",
            "modem_history",
        ):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        if self.media is not None:
            out.update(mode=self.media.mode, switches=self.media.switches, rtp=self.media.rtp, udptl=self.media.udptl)
        if self.capture is not None:
            out["capture"] = dataclasses.asdict(self.capture)
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def columns(self) -> dict[str, Any]:
        """The spool's columns for ``begin_fax``/``finish_fax`` (``spool.store.FACT_FIELDS``), the
        answer's included: a front-end's outcome goes through ``ended_with`` first.

        ``pages`` is not among them: the spool counts the pages the file really holds."""
        out = {k: getattr(self, k) for k in _COLUMNS}
        out["extra"] = self.extra_record()
        return out


_DIAGNOSTICS = (
    "page_stats",
    "remote_vendor",
    "remote_model",
    "hangup_reason",
    "trace",
    "end_reason",
    "modem_class",
    "modem_history",
    "media",
    "capture",
)
_COLUMNS = (
    *ANSWER_FIELDS,
    "remote_ident",
    "bit_rate",
    "ecm",
    "resolution",
    "bad_rows",
    "duration",
    "result_code",
    "result_text",
)


class CallProgress(TypedDict):
    """A call in progress as the dashboard shows it (the control socket's ``calls``), either front-end."""

    line: str
    mode: str  # "t38", "g711" or "modem"
    codec: str
    bit_rate: int
    ecm: bool | None  # None: not known yet
    pages: int
    page: int | None  # the page arriving now, if one is
    remote_ident: str
