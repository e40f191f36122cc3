"""Fax numbers as people type them (appliance/outbound/numbers.py): to E.164, their kind, and what
a route dials; NANP, German, UK and Italian numbering, and every refusal in its exact words."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.config import OutboundConfig, OutboundRouteConfig
from appliance.outbound.numbers import (
    EMERGENCY,
    KINDS,
    NumberRefused,
    dial_digits,
    kind_words,
    normalise,
    number_kind,
    number_kinds,
)

US = OutboundConfig(country_code="1", area_code="212", international_prefix="011", national_prefix="1")
DE = OutboundConfig(country_code="49", area_code="30")
UK = OutboundConfig(country_code="44", area_code="20")
IT = OutboundConfig(country_code="39", national_prefix="")  # no trunk prefix: numbers are written whole
NOWHERE = OutboundConfig()  # no country configured: only international forms work
DE_NO_AREA = OutboundConfig(country_code="49")
US_NO_AREA = OutboundConfig(country_code="1", international_prefix="011", national_prefix="1")
BE = OutboundConfig(country_code="32", area_code="2")  # no table for Belgium: the general rules
CONFIGS = {"BE": BE, "US": US, "DE": DE, "UK": UK, "IT": IT, "NOWHERE": NOWHERE, "DE_NO_AREA": DE_NO_AREA,
           "US_NO_AREA": US_NO_AREA}
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


@pytest.mark.parametrize("where, typed, e164, kind", [
    # NANP: 10-digit national numbers, with or without the trunk 1, 7-digit local ones
    ("US", "(212) 555-0123", "+12125550123", "local"),
    ("US", "212-555-0123", "+12125550123", "local"),
    ("US", "212.555.0123", "+12125550123", "local"),
    ("US", "1 212 555 0123", "+12125550123", "local"),
    ("US", "1-617-555-0123", "+16175550123", "national"),
    ("US", "555-0123", "+12125550123", "local"),
    ("US", "5550123", "+12125550123", "local"),
    ("US", "+1 (617) 555-0123", "+16175550123", "national"),
    ("US", "  617 555 0123\t", "+16175550123", "national"),
    ("US", "416 555 0123", "+14165550123", "national"),  # Canada: same plan, same rates
    ("US", "011 49 30 1234567", "+49301234567", "international"),
    ("US", "011-44-20-7946-0000", "+442079460000", "international"),
    ("US", "+44 (0)20 7946 0000", "+442079460000", "international"),
    ("US", "876 555 0123", "+18765550123", "international"),  # Jamaica shares +1
    ("US", "1 809 555 0123", "+18095550123", "international"),  # Dominican Republic
    ("US", "1-900-555-0123", "+19005550123", "premium"),
    ("US", "212 976 0123", "+12129760123", "premium"),  # NXX 976
    ("US", "+49 900 1234567", "+499001234567", "premium"),  # premium abroad: premium first
    # Germany: trunk 0, international 00, area 30 (Berlin)
    ("DE", "030 1234567", "+49301234567", "local"),
    ("DE", "030/123 45 67", "+49301234567", "local"),
    ("DE", "(030) 1234567", "+49301234567", "local"),
    ("DE", "2345678", "+49302345678", "local"),
    ("DE", "089 1234567", "+49891234567", "national"),
    ("DE", "0151 12345678", "+4915112345678", "national"),
    ("DE", "+49 (0)30 1234567", "+49301234567", "local"),
    ("DE", "+49 030 1234567", "+49301234567", "local"),  # the trunk 0 written after the country code
    ("DE", "+ 44 ( 0 ) 20-7946-0000", "+442079460000", "international"),
    ("NOWHERE", "+352 (0) 123456", "+352123456", "international"),  # "(0)" also where no table knows the plan
    ("NOWHERE", "+352 123 (0) 456", "+3521230456", "international"),  # not after the country code: a digit
    ("DE", "0049 030 1234567", "+49301234567", "local"),
    ("DE", "+44 020 7946 0000", "+442079460000", "international"),
    ("BE", "+32 02 345 67 89", "+3223456789", "local"),
    ("BE", "02 345 67 89", "+3223456789", "local"),
    ("BE", "345 67 89", "+3223456789", "local"),
    ("DE", "+49 30 1234567", "+49301234567", "local"),
    ("DE", "0049 30 1234567", "+49301234567", "local"),
    ("DE", "0049-89-1234567", "+49891234567", "national"),
    ("DE", "0900 1234567", "+499001234567", "premium"),
    ("DE", "0137 1234567", "+491371234567", "premium"),
    ("DE", "00 1 212 555 0123", "+12125550123", "international"),
    ("DE", "0043 1 5555555", "+4315555555", "international"),
    ("DE", "0043 900 123456", "+43900123456", "premium"),
    ("DE", "+33 1 23 45 67 89", "+33123456789", "international"),
    ("DE", "+33 8 99 12 34 56", "+33899123456", "premium"),
    ("DE", "+31 900 1234567", "+319001234567", "premium"),
    ("DE", "+41 906 123456", "+41906123456", "premium"),
    ("DE", "+352 123456", "+352123456", "international"),  # Luxembourg: no table, never "premium"
    ("DE", "+352 900 12345", "+35290012345", "international"),
    # UK: trunk 0, area 20 (London)
    ("UK", "020 7946 0000", "+442079460000", "local"),
    ("UK", "7946 0000", "+442079460000", "local"),
    ("UK", "0161 496 0000", "+441614960000", "national"),
    ("UK", "0118 496 0000", "+441184960000", "national"),  # Reading, not directory enquiries
    ("UK", "07700 900000", "+447700900000", "national"),
    ("UK", "09 1234 56789", "+449123456789", "premium"),
    ("UK", "0871 234 5678", "+448712345678", "premium"),
    ("UK", "0870 234 5678", "+448702345678", "national"),  # no longer a service-charge range
    ("UK", "+44 20 7946 0000", "+442079460000", "local"),
    # Italy: no trunk prefix, the 0 belongs to the number; no area code configured: nothing is local
    ("IT", "06 1234 5678", "+390612345678", "national"),
    ("IT", "+39 06 1234 5678", "+390612345678", "national"),
    ("IT", "00 49 30 1234567", "+49301234567", "international"),
    # no country configured: international forms only, and every number is international
    ("NOWHERE", "+49 30 1234567", "+49301234567", "international"),
    ("NOWHERE", "0049 30 1234567", "+49301234567", "international"),
    ("NOWHERE", "+1 900 555 0123", "+19005550123", "premium"),
    ("DE_NO_AREA", "030 1234567", "+49301234567", "national"),
])
def test_what_people_type_becomes_e164_with_its_kind(where: str, typed: str, e164: str, kind: str) -> None:
    cfg = CONFIGS[where]
    assert normalise(typed, cfg) == e164
    assert number_kind(e164, cfg) == kind
    assert normalise(e164, cfg) == e164  # the E.164 form is accepted as it is


@pytest.mark.parametrize("where, typed, message", [
    ("DE", "", "no fax number was given"),
    ("DE", "   ", "no fax number was given"),
    ("DE", "fax=0301234567", "'fax=0301234567' is not a fax number: letters are not allowed in one "
                             "(only digits, spaces and + - . / ( ))"),
    ("US", "1-800-FLOWERS", "'1-800-FLOWERS' is not a fax number: letters are not allowed in one "
                            "(only digits, spaces and + - . / ( ))"),
    ("US", "212 555 0123 x12", "'212 555 0123 x12' is not a fax number: letters are not allowed in one "
                               "(only digits, spaces and + - . / ( ))"),
    ("DE", "030 123;4567", "'030 123;4567' is not a fax number: ';' is not allowed in one "
                           "(only digits, spaces and + - . / ( ))"),
    ("DE", "030\n1234567", "'030\\n1234567' is not a fax number: '\\n' is not allowed in one "
                           "(only digits, spaces and + - . / ( ))"),
    # digits of other scripts (fullwidth, Arabic-Indic): str.isdigit() says yes, a modem cannot dial them
    ("DE", "030 \uff11\uff12\uff13\uff14\uff15\uff16\uff17", "'030 \uff11\uff12\uff13\uff14\uff15\uff16\uff17' is "
     "not a fax number: '\uff11' is not allowed in one (only digits, spaces and + - . / ( ))"),
    ("DE", "\u0660\u0663\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667", "'\u0660\u0663\u0660\u0661\u0662\u0663"
     "\u0664\u0665\u0666\u0667' is not a fax number: '\u0660' is not allowed in one "
     "(only digits, spaces and + - . / ( ))"),
    ("DE", "49+30", "'49+30' is not a fax number: a '+' may only come first"),
    ("DE", "++49 30 1234567", "'++49 30 1234567' is not a fax number: a '+' may only come first"),
    ("DE", "(-)", "'(-)' is not a fax number: it has no digits"),
    ("DE", "+", "'+' is not a fax number: it has no digits"),
    ("DE", "1" * 41, f"'{'1' * 40}...' is too long for a fax number (at most 40 characters)"),
    ("DE", "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0", "'1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0' has too many digits "
                                                    "for a fax number (at most 15)"),
    ("DE", "+49 30 1234567890123", "+49301234567890123 is too long: an international number has at most 15 digits "
                                   "(E.164), this one 17"),
    ("DE", "0049 30 1234567890123", "+49301234567890123 is too long: an international number has at most 15 digits "
                                    "(E.164), this one 17"),
    ("DE", "+49 30 12", "+493012 is too short: a fax number has at least 7 digits with its country code"),
    ("DE", "030 12", "+493012 is too short: a fax number has at least 7 digits with its country code"),
    ("DE", "+030 1234567", "+0301234567 is not a valid number: no country code starts with 0 "
                           "(write +49 30 ... or 030 ..., not +030 ...)"),
    ("DE", "+(0)30 1234567", "+0301234567 is not a valid number: no country code starts with 0 "
                             "(write +49 30 ... or 030 ..., not +030 ...)"),
    ("DE", "000 1234567", "+01234567 is not a valid number: no country code starts with 0 "
                          "(write +49 30 ... or 030 ..., not +030 ...)"),
    # emergency numbers, every way they can be written
    ("DE", "112", "112 is an emergency number: faxes are never sent to emergency numbers"),
    ("DE", "110", "110 is an emergency number: faxes are never sent to emergency numbers"),
    ("DE", "0112", "0112 is an emergency number: faxes are never sent to emergency numbers"),
    ("DE", "+49 112", "+49112 is an emergency number: faxes are never sent to emergency numbers"),
    ("DE", "0049 110", "+49110 is an emergency number: faxes are never sent to emergency numbers"),
    ("DE", "116 117", "116117 is an emergency number: faxes are never sent to emergency numbers"),
    ("US", "911", "911 is an emergency number: faxes are never sent to emergency numbers"),
    ("US", "9-1-1", "911 is an emergency number: faxes are never sent to emergency numbers"),
    ("US", "1 911", "1911 is an emergency number: faxes are never sent to emergency numbers"),
    ("US", "+1 911", "+1911 is an emergency number: faxes are never sent to emergency numbers"),
    ("US", "988", "988 is an emergency number: faxes are never sent to emergency numbers"),
    ("US", "011 44 999", "+44999 is an emergency number: faxes are never sent to emergency numbers"),
    ("UK", "999", "999 is an emergency number: faxes are never sent to emergency numbers"),
    ("UK", "112", "112 is an emergency number: faxes are never sent to emergency numbers"),
    ("UK", "+44 999", "+44999 is an emergency number: faxes are never sent to emergency numbers"),
    ("IT", "113", "113 is an emergency number: faxes are never sent to emergency numbers"
     if "113" in EMERGENCY else "+39113 is too short: a fax number has at least 7 digits with its country code"),
    ("NOWHERE", "+61 000", "+61000 is an emergency number: faxes are never sent to emergency numbers"),
    ("NOWHERE", "+353 112", "+353112 is an emergency number: faxes are never sent to emergency numbers"),
    ("NOWHERE", "112", "112 is an emergency number: faxes are never sent to emergency numbers"),
    # short codes where subscriber numbers never start with 1
    ("DE", "11880", "'11880' is a service number (short codes start with 1 here: emergency, directory enquiries, "
                    "...), not a fax number; write a fax number with its area code (0...)"),
    ("UK", "118 500", "'118 500' is a service number (short codes start with 1 here: emergency, directory "
                      "enquiries, ...), not a fax number; write a fax number with its area code (0...)"),
    # what the configuration cannot resolve
    ("NOWHERE", "030 1234567", "'030 1234567': write the number in international form (+49 30 1234567): the "
                               "country this box dials from is not configured (outbound.country_code)"),
    ("DE_NO_AREA", "1234567", "'1234567' is a service number (short codes start with 1 here: emergency, directory "
                              "enquiries, ...), not a fax number; write a fax number with its area code (0...)"),
    ("DE_NO_AREA", "2345678", "'2345678': write the number with its area code (0...): no area code is configured "
                              "for local numbers (outbound.area_code)"),
    ("US_NO_AREA", "555-0123", "'555-0123': write the number with its area code ((555) 123-4567): no area code is "
                               "configured for local numbers (outbound.area_code)"),
    # the NANP's fixed length
    ("US", "9911", "'9911' is not a valid number: numbers in the NANP have 10 digits (or 7 within the area "
                   "code), not 4"),
    ("US", "212 555 01234", "'212 555 01234' is not a valid number: numbers in the NANP have 10 digits (or 7 within "
                            "the area code), not 11"),
    ("DE", "+1 212 555 012", "+1212555012 is not a valid number: numbers in the NANP (+1) have 10 digits after the "
                             "1, this one 9"),
    ("DE", "001 212 555 01234", "+121255501234 is not a valid number: numbers in the NANP (+1) have 10 digits after "
                                "the 1, this one 11"),
    ("DE", "+1 012 555 0123", "+10125550123 is not a valid number: no area code in the NANP (+1) starts with 0"),
    ("US", "1 123 555 0123", "+11235550123 is not a valid number: no area code in the NANP (+1) starts with 1"),
    ("US", "1 911 555 0123", "+19115550123 is not a valid number: 911 is a service code in the NANP, not an area code"),
    ("DE", "+1 411 555 0123", "+14115550123 is not a valid number: 411 is a service code in the NANP, not an area "
                              "code"),
    ("DE", "+49 0030 1234567", "+490301234567 is not a valid number: numbers of +49 do not start with 0 after the "
                               "country code"),
    ("US", "+44 00 20 7946 0000", "+4402079460000 is not a valid number: numbers of +44 do not start with 0 after "
                                  "the country code"),
    ("IT", "+39 00 1234 5678", "+390012345678 is not a valid number: numbers of +39 do not start with 00 after the "
                               "country code"),
])
def test_refusals_say_what_is_wrong(where: str, typed: str, message: str) -> None:
    with pytest.raises(NumberRefused) as err:
        normalise(typed, CONFIGS[where])
    assert str(err.value) == message


def test_a_number_that_is_not_text_is_refused() -> None:
    with pytest.raises(NumberRefused, match=r"^the fax number must be text$"):
        normalise(4930123456, DE)  # type: ignore[arg-type]


@pytest.mark.parametrize("e164, where, kinds", [
    ("+12125550123", "US", {"local"}),
    ("+12135550123", "US", {"national"}),
    ("+19005550123", "US", {"premium", "national"}),
    ("+18765550123", "US", {"international"}),
    ("+18769765550", "US", {"international", "premium"}),  # NXX 976 in a foreign NANP area
    ("+19005550123", "DE", {"premium", "international"}),
    ("+499001234567", "DE", {"premium", "national"}),
    ("+49301234567", "DE", {"local"}),
    ("+49301234567", "DE_NO_AREA", {"national"}),
    ("+49301234567", "NOWHERE", {"international"}),
    ("+49112", "DE", {"emergency", "national"}),
    ("+1911", "US", {"emergency", "national"}),
    ("+44999", "DE", {"emergency", "international"}),
    ("+442012345678", "UK", {"local"}),
    ("+4420", "UK", {"national"}),  # just the area code is no local number
    ("+44999", "UK", {"emergency", "national"}),  # not premium although 9... is
])
def test_kinds_of_a_number(e164: str, where: str, kinds: set[str]) -> None:
    assert number_kinds(e164, CONFIGS[where]) == kinds
    assert number_kind(e164, CONFIGS[where]) == next(k for k in KINDS if k in kinds)


@pytest.mark.parametrize("bad", ["49301234567", "+49 30 1234567", "", "+", "+4930x", "+" + "1" * 21])
def test_number_kinds_wants_e164(bad: str) -> None:
    with pytest.raises(NumberRefused, match=r"is not a number in E\.164 form \(\+ and digits\)$"):
        number_kinds(bad, DE)


def test_the_configuration_knows_the_countries_the_tables_know() -> None:
    """config.py refuses a country code that is only the start of one the tables know ("4")."""
    from appliance.config import _KNOWN_CODES
    from appliance.outbound.numbers import PREMIUM, SHORT_CODE_COUNTRIES

    assert set(_KNOWN_CODES) == set(PREMIUM) | SHORT_CODE_COUNTRIES


def test_kind_words() -> None:
    assert [kind_words(k) for k in KINDS] == [
        "emergency", "premium-rate", "international", "national (long-distance)", "local"]


def _route(fmt: str, prefix: str = "") -> OutboundRouteConfig:
    return OutboundRouteConfig(name="r", match=".", via="modem:any", number_format=fmt, dial_prefix=prefix)


@pytest.mark.parametrize("where, e164, fmt, prefix, dialled", [
    ("DE", "+49301234567", "e164", "", "+49301234567"),
    ("DE", "+49301234567", "international", "", "0049301234567"),
    ("DE", "+49301234567", "national", "", "0301234567"),
    ("DE", "+49302345678", "local", "", "2345678"),
    ("DE", "+49302345678", "local", "0", "02345678"),  # a PBX's outside line
    # a subscriber number that could be misread alone is dialled in national form
    ("DE", "+49301234567", "local", "", "0301234567"),  # 1...: a short code in Germany
    ("DE", "+49300234567", "local", "", "0300234567"),  # 0...: the trunk prefix
    ("BE", "+3221123456", "local", "", "021123456"),  # 112...: an exchange connects at the third digit
    ("BE", "+3223456789", "local", "", "3456789"),
    ("US", "+12129111234", "local", "", "12129111234"),  # 911-1234
    ("US", "+12120111234", "local", "", "12120111234"),  # 011...: the international prefix
    ("DE", "+49891234567", "local", "0", "00891234567"),
    ("DE", "+49891234567", "national", "", "0891234567"),
    ("DE", "+12125550123", "national", "", "0012125550123"),  # abroad: always international
    ("DE", "+12125550123", "local", "9", "90012125550123"),
    ("DE", "+12125550123", "e164", "*7", "*7+12125550123"),
    ("DE_NO_AREA", "+49301234567", "local", "", "0301234567"),
    ("US", "+12125550123", "local", "9", "95550123"),
    ("US", "+12125550123", "national", "9", "912125550123"),
    ("US", "+16175550123", "local", "", "16175550123"),
    ("US", "+16175550123", "international", "", "01116175550123"),
    ("US", "+18765550123", "national", "", "18765550123"),  # a foreign NANP number is dialled 1+10
    ("US", "+49301234567", "national", "9", "901149301234567"),
    ("UK", "+442079460000", "local", "9", "979460000"),
    ("UK", "+441614960000", "local", "9", "901614960000"),
    ("IT", "+390612345678", "national", "", "0612345678"),
    ("IT", "+49301234567", "national", "", "0049301234567"),
    ("NOWHERE", "+49301234567", "national", "", "0049301234567"),
])
def test_dial_digits(where: str, e164: str, fmt: str, prefix: str, dialled: str) -> None:
    assert dial_digits(e164, _route(fmt, prefix), CONFIGS[where]) == dialled


def test_dialling_abroad_without_an_international_prefix_is_refused() -> None:
    cfg = OutboundConfig(country_code="49", international_prefix="")
    assert dial_digits("+49301234567", _route("national"), cfg) == "0301234567"
    with pytest.raises(NumberRefused) as err:
        dial_digits("+12125550123", _route("national"), cfg)
    assert str(err.value) == "+12125550123 cannot be dialled on route r: outbound.international_prefix is empty"


# -- properties: the one parser holds its contract for any input --------------------------------

_TYPED = st.text(alphabet="0123456789 -.()/+", max_size=30)


@settings(max_examples=400, deadline=None)
@given(where=st.sampled_from(sorted(CONFIGS)), typed=st.one_of(_TYPED, st.text(max_size=50)))
def test_normalise_returns_e164_or_refuses(where: str, typed: str) -> None:
    cfg = CONFIGS[where]
    try:
        e164 = normalise(typed, cfg)
    except NumberRefused as e:
        assert str(e) and "\n" not in str(e) and len(str(e)) < 300
        return
    assert E164.fullmatch(e164), e164
    assert normalise(e164, cfg) == e164
    assert "emergency" not in number_kinds(e164, cfg)


@st.composite
def _numbers_here(draw: st.DrawFn) -> tuple[str, str]:
    """(where, E.164 number) of that country: any national number, or one in its area code."""
    where = draw(st.sampled_from(["US", "DE", "UK", "IT", "BE"]))
    cfg = CONFIGS[where]
    national = draw(st.one_of(st.from_regex(r"[2-9][0-9]{9}", fullmatch=True),
                              st.from_regex(r"[0-9]{5,8}", fullmatch=True).map(lambda s: cfg.area_code + s)))
    return where, "+" + cfg.country_code + national


@settings(max_examples=500, deadline=None)
@given(number=_numbers_here(), fmt=st.sampled_from(["e164", "international", "national", "local"]),
       seps=st.lists(st.sampled_from([" ", "-", ".", "/"]), min_size=16, max_size=16))
def test_what_a_route_dials_reads_back_as_the_same_number(number: tuple[str, str], fmt: str,
                                                         seps: list[str]) -> None:
    """Typed here as a route dials it (with separators anywhere), a number is the same number
    again: the formats and the parser agree, so no format turns a number into another one."""
    where, e164 = number
    cfg = CONFIGS[where]
    try:
        assert normalise(e164, cfg) == e164
    except NumberRefused:
        return  # not a valid number (an NANP number of the wrong length, ...): nothing is dialled
    dialled = dial_digits(e164, _route(fmt), cfg)
    spaced = "".join(c + s for c, s in zip(dialled, seps, strict=False)) + dialled[len(seps):]
    assert normalise(spaced, cfg) == e164, (dialled, spaced)
