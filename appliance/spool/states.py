"""The spool's three state machines (a fax, a delivery job, a dead letter's alert) and their moves.

The states are ``StrEnum``s: a member is the very string the database, the pages, the API and
/metrics have always carried, so nothing outside changes.  Each machine has one table of the moves
our own code may make; ``move`` raises ``LocalProtocolError`` for any other, so a bug that would
write, say, a delivered job back to ``delivering`` fails loudly instead of corrupting the spool.

A fax's life::

    receiving ─► received ─► routed ⇄ delivering ⇄ failed_retrying ⇄ delivered ⇄ dead
             └─► no_fax       (once it has jobs, its state is derived from them: any to any)

A job's life::

    queued ─► delivering ─► delivered | failed_retrying | dead
       ▲          │  failed_retrying ─► delivering;  delivered | dead ─► queued (a resend)
       └──────────┘  (released unattempted, or requeued by recover)

An alert: pending ─► pending (retry) | sent | abandoned.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from appliance.protocol import Transitions
from appliance.sip.errors import LocalProtocolError


class FaxState(StrEnum):
    RECEIVING = "receiving"
    RECEIVED = "received"
    NO_FAX = "no_fax"
    ROUTED = "routed"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED_RETRYING = "failed_retrying"
    DEAD = "dead"


class JobState(StrEnum):
    QUEUED = "queued"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED_RETRYING = "failed_retrying"
    DEAD = "dead"


class AlertState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    ABANDONED = "abandoned"


#: the states a fax with jobs takes, derived from its jobs (``derived_fax_state``)
DELIVERY_STATES = (FaxState.ROUTED, FaxState.DELIVERING, FaxState.DELIVERED, FaxState.FAILED_RETRYING, FaxState.DEAD)

FAX_MOVES: frozenset[tuple[FaxState, FaxState]] = frozenset(
    {(FaxState.RECEIVING, FaxState.RECEIVED), (FaxState.RECEIVING, FaxState.NO_FAX)}
    | {(FaxState.RECEIVED, d) for d in DELIVERY_STATES}
    | {(a, b) for a in DELIVERY_STATES for b in DELIVERY_STATES if a != b}
)

JOB_MOVES: frozenset[tuple[JobState, JobState]] = frozenset(
    {
        (JobState.QUEUED, JobState.DELIVERING),
        (JobState.FAILED_RETRYING, JobState.DELIVERING),
        (JobState.DELIVERING, JobState.QUEUED),  # released unattempted, or requeued at start-up
        (JobState.DELIVERING, JobState.DELIVERED),
        (JobState.DELIVERING, JobState.FAILED_RETRYING),
        (JobState.DELIVERING, JobState.DEAD),
        (JobState.DELIVERED, JobState.QUEUED),  # a deliberate resend re-arms the row
        (JobState.DEAD, JobState.QUEUED),
    }
)

ALERT_MOVES: frozenset[tuple[AlertState, AlertState]] = frozenset(
    {
        (AlertState.PENDING, AlertState.PENDING),  # a failed try waits for the next
        (AlertState.PENDING, AlertState.SENT),
        (AlertState.PENDING, AlertState.ABANDONED),
    }
)

#: jobs in these states are still owed an attempt: their fax is neither deleted nor purged
OPEN_JOB_STATES = (JobState.QUEUED, JobState.DELIVERING, JobState.FAILED_RETRYING)
#: jobs waiting for their next attempt (the ones ``claim_due_jobs`` takes)
WAITING_JOB_STATES = (JobState.QUEUED, JobState.FAILED_RETRYING)

S = TypeVar("S", FaxState, JobState, AlertState)


def move(table: frozenset[tuple[S, S]], current: S, to: S, what: str = "") -> S:
    """``to``, if the table allows the move from ``current``; else LocalProtocolError (our bug)."""
    if (current, to) not in table:
        raise LocalProtocolError(f"{what or type(to).__name__}: no move from {current!s} to {to!s}")
    return to


def derived_fax_state(jobs: list[JobState]) -> FaxState:
    """A routed fax's state from its jobs' (worst job wins, delivered only when all are)."""
    if all(s == JobState.DELIVERED for s in jobs):
        return FaxState.DELIVERED
    if JobState.DEAD in jobs:
        return FaxState.DEAD
    if JobState.FAILED_RETRYING in jobs:
        return FaxState.FAILED_RETRYING
    if JobState.DELIVERING in jobs or JobState.DELIVERED in jobs:
        return FaxState.DELIVERING
    return FaxState.ROUTED


# -- the outbound queue (issue 14) --------------------------------------------------------------
# Written as `appliance.protocol.Transitions` tables, as the tables above will be later.


class OutState(StrEnum):
    """An outbound fax's life::

    queued ─► sending ─► sent | failed | cancelled
      ▲  │       │ ▲
      │  │       ▼ │
      │  │   retry_wait ─► cancelled
      │  └─► cancelled
      └── sending (recovered after a crash, or released before dialling)
    """

    QUEUED = "queued"
    SENDING = "sending"
    RETRY_WAIT = "retry_wait"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ReportState(StrEnum):
    """The report mail owed to an outbound fax's sender: ``none`` until the fax is finished (and
    for ever when nobody is to get one), then ``pending`` until ``sent`` or ``abandoned``."""

    NONE = "none"
    PENDING = "pending"
    SENT = "sent"
    ABANDONED = "abandoned"


OUT_MOVES: Transitions[OutState] = Transitions(
    "outbound fax",
    {
        # failed without a call: its document went missing from the spool (found by recover)
        OutState.QUEUED: (OutState.SENDING, OutState.CANCELLED, OutState.FAILED),
        OutState.RETRY_WAIT: (OutState.SENDING, OutState.CANCELLED, OutState.FAILED),
        OutState.SENDING: (
            OutState.SENT,
            OutState.FAILED,
            OutState.CANCELLED,
            OutState.RETRY_WAIT,
            OutState.QUEUED,  # recovered after a crash, or released before dialling
        ),
    },
)

REPORT_MOVES: Transitions[ReportState] = Transitions(
    "outbound report",
    {
        ReportState.NONE: (ReportState.PENDING,),
        ReportState.PENDING: (ReportState.PENDING, ReportState.SENT, ReportState.ABANDONED),
    },
)

#: outbound faxes still owed an attempt: never deleted nor purged
OPEN_OUT_STATES = (OutState.QUEUED, OutState.SENDING, OutState.RETRY_WAIT)
#: outbound faxes waiting for their next attempt (the ones ``claim_due`` takes)
WAITING_OUT_STATES = (OutState.QUEUED, OutState.RETRY_WAIT)
#: outbound faxes whose life is over
FINAL_OUT_STATES = (OutState.SENT, OutState.FAILED, OutState.CANCELLED)
