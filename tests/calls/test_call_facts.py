"""CallFacts, the one shape both front-ends report a call in, and its one way into the spool.

The spool's stored record must stay what it was when the facts were dictionaries: the legacy
dictionaries below are written out as the daemon and the drivers built them before, and the
records they made are compared with the ones CallFacts makes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from appliance.calls.facts import CallFacts, CaptureFacts, MediaFacts, PageFacts
from appliance.spool.store import FACT_FIELDS, FaxRecord, Spool

T0 = 1_700_000_000.0

SIP_ANSWER: dict[str, Any] = dict(line="sip:gw1", call_id="a84b4c76e66710@gw1", caller_number="+49 30 1234",
                                  caller_name="ACME", called_number="5551000")
SIP_ANSWER_EXTRA: dict[str, Any] = {"remote": "192.0.2.7:5060", "diversion": ["sip:100@pbx"], "peer": "gw1",
                                    "exchange_um": {"recipient": "a@example.com", "context": "fax",
                                                    "context_raw": "fax", "notes": []}}
PAGE = {"bad_rows": 3, "longest_bad_row_run": 2, "width": 1728, "length": 2200, "resolution": "204x196"}
RTP = {"received": 3000, "late": 1, "sent": 3001, "late_5ms": 0, "late_ticks": 0}


def sip_outcome() -> CallFacts:
    """A SIP call's outcome as ReceiveSession.facts and the daemon's finally block make it."""
    return CallFacts(remote_ident="+1 555 0100", bit_rate=14400, ecm=True, resolution="204x196", bad_rows=3,
                     duration=61.4, result_code=0, result_text="OK", pages=1, page_stats=[PageFacts(**PAGE)],
                     remote_vendor="", remote_model="", hangup_reason="", trace=["> DIS", "< DCS"],
                     end_reason="remote BYE",
                     media=MediaFacts(mode="G.711 PCMU", switches=[], rtp=dict(RTP), udptl={"received": 0}),
                     capture=CaptureFacts(packets=10, bytes=2000, left_out=0))


def legacy_sip_outcome() -> dict[str, Any]:
    """The same outcome as the dictionary ReceiveSession.facts and the daemon used to build."""
    return {"remote_ident": "+1 555 0100", "bit_rate": 14400, "ecm": True, "resolution": "204x196",
            "bad_rows": 3, "duration": 61.4, "result_code": 0, "result_text": "OK", "pages": 1,
            "extra": {"page_stats": [dict(PAGE)], "remote_vendor": "", "remote_model": "",
                      "hangup_reason": "", "trace": ["> DIS", "< DCS"], "end_reason": "remote BYE",
                      "mode": "G.711 PCMU", "switches": [], "rtp": dict(RTP), "udptl": {"received": 0},
                      "capture": {"packets": 10, "bytes": 2000, "left_out": 0}}}


@pytest.fixture
def spool(tmp_path: Path):
    s = Spool(tmp_path / "spool")
    yield s
    s.close()


def stored(rec: FaxRecord) -> dict[str, Any]:
    """A record without what only says which row it is."""
    return {k: v for k, v in dataclasses.asdict(rec).items() if k not in ("id", "uid")}


def test_the_columns_are_the_spools_fact_fields_but_pages() -> None:
    assert set(CallFacts().columns()) == set(FACT_FIELDS) - {"pages"}


def test_an_answer_is_recorded_as_the_answer_alone_was(spool: Spool) -> None:
    """begin_fax gets every column; the outcome's defaults are the spool's own defaults."""
    old = spool.begin_fax(T0, **SIP_ANSWER, extra=SIP_ANSWER_EXTRA)
    new = spool.begin_fax(T0, **CallFacts(**SIP_ANSWER, extra=SIP_ANSWER_EXTRA).columns())
    assert stored(new) == stored(old)
    assert new.caller_name == "ACME" and new.extra["peer"] == "gw1"


def test_a_sip_call_is_stored_as_before(spool: Spool) -> None:
    old = spool.begin_fax(T0, **SIP_ANSWER, extra=SIP_ANSWER_EXTRA)
    legacy = legacy_sip_outcome()
    legacy.pop("pages")
    legacy["extra"] = {**old.extra, **legacy["extra"]}
    old = spool.finish_fax(old.id, T0 + 70, complete=True, **legacy)

    new = spool.begin_fax(T0, **CallFacts(**SIP_ANSWER, extra=SIP_ANSWER_EXTRA).columns())
    facts = CallFacts.answered(new).ended_with(sip_outcome())
    new = spool.finish_fax(new.id, T0 + 70, complete=True, **facts.columns())

    assert stored(new) == stored(old)
    assert list(new.extra) == list(old.extra)  # the keys in the same order, too
    assert new.remote_ident == "+1 555 0100" and new.caller_number == "+49 30 1234"


def test_a_failed_modem_call_stores_only_what_it_reported(spool: Spool) -> None:
    """A driver that never returned: the line reports the why and the modem's history, nothing more."""
    answer = dict(line="modem:usb0", caller_number="5550100", caller_name="", called_number="")
    answer_extra = {"device": "/dev/ttyUSB0", "rings": 2, "caller_id": {"NMBR": "5550100"}}
    old = spool.begin_fax(T0, **answer, extra=answer_extra)
    old = spool.finish_fax(old.id, T0 + 5, complete=False, result_text="driver error",
                           extra={**old.extra, "hangup_reason": "driver error", "modem_history": "> ATA"})

    new = spool.begin_fax(T0, **CallFacts(**answer, extra=answer_extra).columns())
    outcome = CallFacts(result_text="driver error", hangup_reason="driver error", modem_history="> ATA")
    new = spool.finish_fax(new.id, T0 + 5, complete=False, **CallFacts.answered(new).ended_with(outcome).columns())

    assert stored(new) == stored(old)
    assert set(new.extra) == {"device", "rings", "caller_id", "hangup_reason", "modem_history"}


def test_a_call_without_an_outcome_leaves_its_answer_unchanged(spool: Spool) -> None:
    """A call refused after it was recorded (no fax session): finishing writes what was there."""
    fax = spool.begin_fax(T0, **CallFacts(**SIP_ANSWER, extra=SIP_ANSWER_EXTRA).columns())
    done = spool.finish_fax(fax.id, T0 + 1, complete=False, **CallFacts.answered(fax).columns())
    untouched = spool.begin_fax(T0, **SIP_ANSWER, extra=SIP_ANSWER_EXTRA)
    untouched = spool.finish_fax(untouched.id, T0 + 1, complete=False)
    assert stored(done) == stored(untouched)


def test_ended_with_takes_who_from_the_answer_and_what_from_the_outcome() -> None:
    answer = CallFacts(**SIP_ANSWER, extra={"peer": "gw1", "note": "answer"})
    outcome = dataclasses.replace(sip_outcome(), line="ignored", call_id="ignored",
                                  extra={"note": "outcome", "class1": {"frames": 3}})
    joined = answer.ended_with(outcome)
    assert (joined.line, joined.call_id, joined.caller_name) == ("sip:gw1", SIP_ANSWER["call_id"], "ACME")
    assert (joined.remote_ident, joined.pages, joined.trace) == ("+1 555 0100", 1, ["> DIS", "< DCS"])
    assert joined.extra == {"peer": "gw1", "note": "outcome", "class1": {"frames": 3}}
    assert answer.remote_ident == "" and outcome.line == "ignored", "neither side is changed"


def test_a_diagnostic_not_reported_is_left_out_and_extra_never_overrides_a_typed_one() -> None:
    facts = CallFacts(hangup_reason="no fax signal", extra={"hangup_reason": "from extra", "rings": 3})
    assert facts.extra_record() == {"hangup_reason": "no fax signal", "rings": 3}
    assert CallFacts().extra_record() == {}
    assert CallFacts(remote_vendor="", trace=[]).extra_record() == {"remote_vendor": "", "trace": []}


def test_a_class2_page_keeps_its_own_keys_in_their_order() -> None:
    page = {**PAGE, "partial": True, "post_page": None, "copy_quality": "RTN"}
    facts = PageFacts.of(page)
    assert (facts.bad_rows, facts.more) == (3, {"partial": True, "post_page": None, "copy_quality": "RTN"})
    assert list(facts.as_dict().items()) == list(page.items())
