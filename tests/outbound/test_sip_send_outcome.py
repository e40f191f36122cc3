"""The pure parts of sip_send: every way a call ends mapped to its Result, the T.38 choices,
caller ID, and which [[sip.registrations]] entry's credentials a route's host gets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.config import RegistrationConfig
from appliance.fax import t30codes
from appliance.fax.pages import STANDARD, write_fax_tiff
from appliance.fax.sender import SendResult
from appliance.fax.testpages import demo_pages
from appliance.outbound.outcome import Outcome, Result
from appliance.outbound.sip_send import (
    credentials_for,
    display_name,
    from_user,
    outcome_of,
    send_over_sip,
    t38_mode,
)


def answered(**kw: object) -> SendResult:
    r = SendResult(False, "", answered=True, fax_answered=True, mode="G.711 PCMU")
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def failed(status: int, reason: str) -> SendResult:
    return SendResult(False, f"call failed: {status} {reason}", sip_status=status, sip_reason=reason)


@pytest.mark.parametrize(
    ("status", "reason", "result"),
    [
        (486, "Busy Here", Result.BUSY),
        (600, "Busy Everywhere", Result.BUSY),
        (408, "Request Timeout", Result.NO_ANSWER),
        (480, "Temporarily Unavailable", Result.NO_ANSWER),
        (487, "Request Terminated", Result.NO_ANSWER),
        (403, "Forbidden", Result.REFUSED),
        (404, "Not Found", Result.REFUSED),
        (401, "Unauthorized", Result.REFUSED),
        (488, "Not Acceptable Here", Result.REFUSED),
        (503, "Service Unavailable", Result.REFUSED),
        (603, "Decline", Result.REFUSED),
    ],
)
def test_sip_final_answers(status: int, reason: str, result: Result) -> None:
    o = outcome_of(failed(status, reason), 3)
    assert (o.result, o.detail, o.sip_status, o.pages_total, o.way) == (
        result,
        f"SIP {status} {reason}",
        status,
        3,
        "SIP",
    )


def test_no_final_answer_ring_timeout_and_cancel_while_ringing() -> None:
    ring = SendResult(False, "no answer within 45 s", sip_status=487, ring_timeout=True)
    assert (outcome_of(ring, 1).result, outcome_of(ring, 1).detail) == (Result.NO_ANSWER, "no answer within 45 s")
    silent = SendResult(False, "timed out", timed_out=True)
    assert outcome_of(silent, 1).result is Result.NO_ANSWER
    cancelled = SendResult(False, "cancelled", sip_status=487, cancelled=True)
    o = outcome_of(cancelled, 2)
    assert (o.result, o.detail) == (Result.CANCELLED, "cancelled while the call was ringing")


@pytest.mark.parametrize(
    ("code", "fax_answered", "result"),
    [
        (2, False, Result.NO_CARRIER),  # T0: no DIS
        (3, False, Result.NO_CARRIER),  # T1
        (6, True, Result.TRAINING_FAILED),  # cannot train
        (14, True, Result.TRAINING_FAILED),  # bad response to DCS/TCF
        (20, True, Result.TRAINING_FAILED),  # no response to DCS/TCF
        (21, True, Result.DROPPED),  # no response after a page
        (49, True, Result.DROPPED),  # call dropped
        (49, False, Result.NO_CARRIER),
        (15, True, Result.FAR_END_ERROR),  # DCN after a page
        (17, True, Result.FAR_END_ERROR),  # DCN instead of DIS
        (18, True, Result.FAR_END_ERROR),  # invalid response after a page
        (48, True, Result.FAR_END_ERROR),  # retries exhausted (RTN)
        (11, True, Result.FAR_END_ERROR),  # cannot receive at this resolution
        (55, True, Result.FAR_END_ERROR),  # sender identification refused
        (41, True, Result.ERROR),  # our TIFF
        (999, True, Result.FAR_END_ERROR),  # a code this spandsp does not know
    ],
)
def test_t30_completion_codes(code: int, fax_answered: bool, result: Result) -> None:
    o = outcome_of(answered(result_code=code, fax_answered=fax_answered, pages_sent=1), 3)
    assert o.result is result
    assert o.detail == f"T.30: {t30codes.result_text(code)}" and o.t30_code == code and o.pages_confirmed == 1


def test_every_known_t30_code_has_a_result_other_than_sent() -> None:
    for code in t30codes.RESULT_TEXT:
        if code != t30codes.OK:
            assert outcome_of(answered(result_code=code), 1).result not in (Result.SENT, Result.UNKNOWN)


def test_sent_and_the_ends_of_an_answered_call() -> None:
    ok = answered(ok=True, result_code=0, pages_sent=2, remote_ident="+1 555\x07 1000", bit_rate=14400, ecm=True)
    o = outcome_of(ok, 2)
    assert (o.result, o.pages_confirmed, o.remote_ident, o.bit_rate, o.ecm) == (
        Result.SENT,
        2,
        "+1 555 1000",
        14400,
        True,
    )
    assert o.way == "SIP G.711 PCMU"
    bye = outcome_of(answered(remote_hangup=True, pages_sent=1), 3)
    assert (bye.result, bye.words()) == (Result.DROPPED, "the line was dropped during the fax (on page 2 of 3)")
    early_bye = outcome_of(answered(remote_hangup=True, fax_answered=False), 3)
    assert early_bye.result is Result.NO_CARRIER
    assert outcome_of(answered(timed_out=True, fax_answered=False), 1).result is Result.NO_CARRIER
    assert outcome_of(answered(timed_out=True, pages_sent=2), 3).result is Result.DROPPED
    cancel = outcome_of(answered(cancelled=True, pages_sent=1), 3)
    assert (cancel.result, cancel.pages_confirmed) == (Result.CANCELLED, 1)
    # cancelled too late: the last page was confirmed, the fax is sent
    assert outcome_of(answered(cancelled=True, ok=True, result_code=0, pages_sent=3), 3).result is Result.SENT
    refused = outcome_of(answered(t38_refused="488 Not Acceptable Here", ok=True, result_code=0), 1)
    assert refused.way == "SIP G.711 PCMU (T.38 refused: 488 Not Acceptable Here)"
    assert outcome_of(answered(mode="T.38", ok=True, result_code=0), 1).way == "SIP T.38"


def test_t38_choices_caller_id_and_display_name() -> None:
    assert [t38_mode(c) for c in ("off", "accept", "request")] == ["off", "accept", "reinvite"]
    with pytest.raises(ValueError, match="off, accept or request"):
        t38_mode("reinvite")
    assert from_user("+1 555 1000") == "+15551000"
    assert from_user("030 1234-5") == "03012345"
    assert from_user("ACME") == from_user("") == "anonymous"
    assert display_name("ACME\r\nX-Evil: 1") == "ACMEX-Evil: 1"
    assert len(display_name("x" * 500)) == 64


def test_credentials_come_from_the_registration_of_the_routes_host() -> None:
    regs = [
        RegistrationConfig(name="other", registrar="sip:other.example", user="o", password="op"),
        RegistrationConfig(
            name="pbx", registrar="sip:PBX.example.com:5070", user="100", auth_user="a100", password="pw"
        ),
        RegistrationConfig(name="trunk", registrar="sip:reg.trunk.test", user="t", password="tp", domain="trunk.test"),
        RegistrationConfig(
            name="via-proxy", registrar="sip:far.test", outbound_proxy="sip:10.0.0.5:5060", user="p", password="pp"
        ),
        RegistrationConfig(name="nopass", registrar="sip:nopass.test", user="n"),
    ]
    assert credentials_for("sip:+15551234@pbx.example.com:5070", regs) == ("a100", "pw")
    assert credentials_for("sip:+15551234@pbx.example.com", regs) == ("a100", "pw")  # no port named: host decides
    assert credentials_for("sip:+15551234@pbx.example.com:5080", regs) is None  # another service on that host
    assert credentials_for("sip:5551234@trunk.test;transport=tcp", regs) == ("t", "tp")  # the AoR's domain
    assert credentials_for("sip:5551234@10.0.0.5", regs) == ("p", "pp")
    assert credentials_for("sip:5551234@nopass.test", regs) is None
    assert credentials_for("sip:5551234@elsewhere.test", regs) is None
    assert credentials_for("not a uri", regs) is None


def test_a_target_that_cannot_be_called_and_a_missing_document(tmp_path: Path) -> None:
    doc = tmp_path / "doc.tif"
    write_fax_tiff(demo_pages(1, STANDARD, seed=1), doc, STANDARD)

    async def attempt(target: str, tiff: Path) -> Outcome:
        return await send_over_sip(
            target,
            tiff,
            ident="+1 555 1000",
            t38="off",
            caller="",
            local_ip="127.0.0.1",
            credentials=None,
            on_connected=lambda: None,
            on_page=lambda n: None,
            cancel=asyncio.Event(),
            timeout=10.0,
        )

    missing = asyncio.run(attempt("sip:5551234@127.0.0.1", tmp_path / "gone.tif"))
    assert (missing.result, missing.detail) == (Result.ERROR, "the document gone.tif could not be read")
    bad = asyncio.run(attempt("sip:5551234@127.0.0.1;transport=sctp", doc))
    assert bad.result is Result.NO_ROUTE and "sctp" in bad.detail, bad
    garbage = asyncio.run(attempt("not a sip uri", doc))
    assert garbage.result is Result.NO_ROUTE and garbage.detail.startswith("the call could not be placed"), garbage
