"""The pure table of T.30 completion codes says what the installed spandsp says, code by code."""

from __future__ import annotations

from appliance.fax import t30codes
from appliance.spandsp import t30


def test_every_code_reads_as_spandsp_words_it() -> None:
    for code in range(-2, 70):
        assert t30codes.result_text(code) == t30.result_text(code), code


def test_the_named_codes_are_spandsps() -> None:
    assert t30codes.OK == t30.OK
    assert t30codes.CALL_DROPPED == t30.CALL_DROPPED
