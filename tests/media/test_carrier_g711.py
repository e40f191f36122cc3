"""The recorded carrier fax over G.711 A-law (shared/fixtures/pcaps/README.md) through the
appliance's real-time receive path, on a simulated clock: deterministic, whatever the load.

What the capture holds, measured: TSI and DCS (V.17 14400, non-ECM) at 1.7-2.0 s after its
first packet, the V.17 training and the TCF (1.5 s of zeros) from 2.0 to 5.0 s, the page until
33 s, EOP three times, DCN at 40.3 s.  Inside the TCF, at 4.2 s, one burst of packets comes
up to 160 ms late.  A 60 ms fixed playout buffer plays fill-in in their place and dropped
them: the V.17 descrambler lost its place, the run of zeros broke, and the appliance answered
FTT at every answer timing.  The same packets fed to the terminal in arrival order give the
page.  The blind replay cannot hear our DIS, so answer timings where our DIS would cover the
recorded DCS (about 2.6-4.2 s before its first packet) fail in either feed and are not used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rtp_helpers import carrier_rtp, replay_offline, replay_real_time  # noqa: E402

from PIL import ImageChops  # noqa: E402

from appliance.fax.pages import read_pages  # noqa: E402

#: seconds between our answer and the recording's first packet
ANSWER_LEADS = (0.0, 0.5, 1.0, 2.0, 4.5, 6.0, 8.0)


@pytest.fixture(scope="module")
def packets():
    return carrier_rtp()


def test_the_capture_is_the_one_described(packets):
    """The properties the tests below rely on: one A-law stream, the timestamp jump without the
    marker bit, and the late burst inside the TCF."""
    assert len(packets) == 2016
    assert {(p.payload_type, p.ssrc, len(p.payload)) for _, p in packets} == {(8, 400097588, 160)}
    jumps = [(i, (b.timestamp - a.timestamp) & 0xFFFFFFFF) for i, ((_, a), (_, b)) in
             enumerate(zip(packets, packets[1:]), 1) if (b.timestamp - a.timestamp) & 0xFFFFFFFF != 160]
    assert jumps == [(14, (-347200) & 0xFFFFFFFF)] and not packets[14][1].marker
    t14, ts14 = packets[14][0], packets[14][1].timestamp
    lateness = [t - t14 - (p.timestamp - ts14) / 8000 for t, p in packets[14:]]
    assert max(lateness) > 0.15  # the burst: 160 ms behind the stream's own clock
    assert 4.2 < packets[14 + lateness.index(max(lateness))][0] < 4.5


@pytest.mark.parametrize("lead", ANSWER_LEADS)
def test_the_carrier_fax_is_received_in_real_time_as_in_arrival_order(packets, tmp_path, lead):
    offline = replay_offline(packets, tmp_path / "offline.tif", answer_lead=lead)
    assert offline.finished is not None and offline.finished.ok, offline.finished  # the reference
    offline.close()
    [expected] = read_pages(tmp_path / "offline.tif")
    assert expected.size == (1728, 1143)

    heard = replay_real_time(packets, tmp_path / "rx.tif", answer_lead=lead)
    term = heard.terminal
    # every packet reached spandsp once, in arrival order: nothing dropped as late
    assert bytes(heard.audio) == b"".join(p.payload for _, p in packets)
    # fill-in inside the signal comes in whole 10 ms (whole carrier cycles and symbols)
    gaps: dict[int, int] = {}
    for at, n in heard.fillins:
        gaps[at] = gaps.get(at, 0) + n
    inside = {at: n for at, n in gaps.items() if 160 * 20 <= at < len(heard.audio)}  # after the jump's gap
    assert inside and all(n % 80 == 0 for n in inside.values()), inside
    assert term.finished is not None and term.finished.ok, (term.finished, list(term.trace)[-12:])
    stats = term.stats()
    term.close()
    # the recording's own two bad rows (the original call had them too), nothing more
    assert (stats.pages_rx, stats.bit_rate, stats.ecm, stats.bad_rows) == (1, 14400, False, 2)
    [page] = read_pages(tmp_path / "rx.tif")
    assert ImageChops.difference(page, expected).getbbox() is None
