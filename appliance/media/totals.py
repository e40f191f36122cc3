"""Media counters over every call since the daemon started, for the control socket and /metrics.

A call's counters join the totals when it ends; calls in progress are added live, so each total
only ever grows (a Prometheus counter) and a stall shows while the call it hurt still runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from appliance.media.channel import MediaChannel
from appliance.media.clock import MediaClock

#: what we sent: packets, those more than 5 ms late or never sent (a stall), those never sent
SENT = ("sent", "late_5ms", "not_sent")
#: what we received: packets kept, dropped as late, dropped as overflow; fill-in samples; slips
#: (late audio played after all, the delay growing) and the samples they added
RECEIVED = ("received", "late", "overflow", "fillin", "slips", "slipped")
NAMES = (*SENT, *(f"rx_{name}" for name in RECEIVED))


def counters(channel: MediaChannel) -> dict[str, int]:
    """One call's counters: the sent side as named in its facts' "rtp", the received side
    prefixed ``rx_`` (both sides have a "late")."""
    out = {name: int(channel.stats[name]) for name in SENT}
    out.update({f"rx_{name}": int(channel.playout.stats[name]) for name in RECEIVED})
    return out


class MediaTotals:
    def __init__(self) -> None:
        self.calls_ended = 0
        self.ended = dict.fromkeys(NAMES, 0)

    def add(self, channel: MediaChannel) -> None:
        """A call ended: its counters join the totals (call this as it leaves the live set)."""
        self.calls_ended += 1
        for name, value in counters(channel).items():
            self.ended[name] += value

    def snapshot(self, live: Iterable[MediaChannel], clock: MediaClock) -> dict[str, Any]:
        """The totals with the calls in progress, and the shared clock's ticks and skipped ticks."""
        totals = dict(self.ended)
        for channel in live:
            for name, value in counters(channel).items():
                totals[name] += value
        clocked = clock.status()
        return {
            **totals,
            "calls_ended": self.calls_ended,
            "clock_ticks": clocked["ticks"],
            "clock_skipped": clocked["skipped"],
        }
