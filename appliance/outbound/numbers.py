"""Fax numbers as people type them -> E.164, what kind of number it is, and what a route dials.

Pure: no I/O, no state. Numbers come from mail subjects and addresses, web forms and the API,
so ``normalise`` is the one strict parser for them: bounded input, a fixed alphabet, and a
refusal (`NumberRefused`) that says in plain words what is wrong.

What ``normalise`` accepts (``[outbound]`` country_code, area_code, international_prefix,
national_prefix say how numbers are written here):

- digits with spaces, ``-``, ``.``, ``/`` and parentheses between them; ``+`` only first;
- ``+49 30 2345678`` and ``0049 30 2345678`` (the international prefix): international form;
  ``+44 (0)20 7946 0000`` and ``+49 030 2345678``: a trunk prefix after the country code is
  dropped, as it is meant (for our country and those in the tables below);
- ``030 2345678`` (the national, trunk prefix): a number of our country;
- ``2345678``: a local number, which gets country and area code (needs both configured);
- in the NANP (country code 1) numbers have 10 digits: ``(555) 123-4567`` and
  ``1 555 123 4567`` are national, 7 digits are local.

Refused: letters (``fax=``, ``x123``, vanity numbers), other characters, more than 15 digits
(E.164's limit) or fewer than 7 (we know of no plan with shorter numbers: Niue's, +683 and 4
digits, are among the shortest), an NANP number that has not 10 digits or whose area code is
impossible, a number typed without area code that starts with 1 where that means a short code
(SHORT_CODE_COUNTRIES), and every emergency number in every form (``112``, ``+1 911``,
``0044 999``): a fax must never tie up an emergency line.
"""

from __future__ import annotations

import re

from appliance.config import OUTBOUND_KINDS, OutboundConfig, OutboundRouteConfig

__all__ = [
    "EMERGENCY",
    "KINDS",
    "NumberRefused",
    "PREMIUM",
    "SHORT_CODE_COUNTRIES",
    "dial_digits",
    "kind_words",
    "normalise",
    "number_kind",
    "number_kinds",
]


class NumberRefused(ValueError):
    """A number that cannot be used; str() says why in words fit for a reply to the sender."""


#: every kind of number, most restricted first. Exactly one of local, national and international
#: applies to a number (local: our country and our area code; national: our country, another area,
#: mobile or non-geographic; international: another country); premium and emergency come on top.
KINDS: tuple[str, ...] = OUTBOUND_KINDS

_WORDS = {
    "emergency": "emergency",
    "premium": "premium-rate",
    "international": "international",
    "national": "national (long-distance)",
    "local": "local",
}

#: emergency numbers, refused in every form: a number that is one of these after its country code
#: or trunk prefix, or typed alone. Sources: 3GPP TS 22.101 10.1.1 (112 and 911 on every phone;
#: 000, 08, 110, 118, 119, 999 without a SIM), the EU's 116 numbers (116000 missing children,
#: 116111 child helpline, 116117 on-call doctors, 116123 emotional support), NANP 988 (crisis line)
#: and 933 (911 address test), ARCEP (FR 15, 17, 18, 114, 115, 191, 196, 197), RTR and BAKOM
#: (AT/CH 117, 122, 128, 133, 140, 141, 144, 1414), NHS 111 (UK).
EMERGENCY: frozenset[str] = frozenset(
    {
        *("112", "911", "000", "08", "110", "118", "119", "999"),  # 3GPP
        *("116000", "116111", "116117", "116123"),  # EU 116
        *("988", "933"),  # NANP
        *("15", "17", "18", "114", "115", "191", "196", "197"),  # FR
        *("117", "122", "128", "133", "140", "141", "144", "1414"),  # AT, CH
        "111",  # UK
    }
)

#: premium-rate number ranges by country code: a regex matched at the start of the national
#: number (E.164 without country code). Only countries listed here are ever called premium; a
#: number elsewhere is never guessed to be one (forbid "international" to be safe there).
#: Sources: NANPA (NPA 900; NXX 976 in any area code), Bundesnetzagentur Nummernplan (0900
#: Premium-Dienste, 0137 Massenverkehrsdienste), RTR KEM-V (AT 0900, 0901, 0930, 0931, 0939),
#: BAKOM/OFCOM CH (0900, 0901, 0906), Ofcom National Telephone Numbering Plan (09 premium rate,
#: 0871-0873 service charge), ARCEP (08 9x), ACM NL (0900, 0906, 0909). Directory enquiries
#: (118..) are short codes there, typed without area code: see SHORT_CODE_COUNTRIES.
PREMIUM: dict[str, str] = {
    "1": r"900|[2-9]\d\d976",
    "49": r"900|137",
    "43": r"90[01]|93[019]",
    "41": r"90[016]",
    "44": r"9|87[1-3]",
    "33": r"89",
    "31": r"90[069]",
}
#: countries whose subscriber numbers never start with 1: there a number typed without area code
#: that starts with 1 is a short code (emergency 110/112, directory enquiries 118xy, 116xxx, ...),
#: refused rather than taken for a local number (numbering plans as for PREMIUM)
SHORT_CODE_COUNTRIES: frozenset[str] = frozenset({"49", "43", "41", "44", "33", "31"})
_PREMIUM_RE = {cc: re.compile(rf"(?:{pattern})") for cc, pattern in PREMIUM.items()}

#: NANP area codes of countries other than the US and Canada (NANPA, "NANP countries"): calls to
#: them cost what international calls do (and the "one ring" scams use them), so from an NANP
#: box they count as international although they share country code 1.
NANP_FOREIGN: frozenset[str] = frozenset(
    {
        *("242", "246", "264", "268", "284", "345", "441", "473", "649", "658", "664"),
        *("721", "758", "767", "784", "809", "829", "849", "868", "869", "876"),
    }
)

#: characters allowed between the digits: what people (and mail clients, and Outlook) put there
_SEPARATORS = " \t-./()"
_ALLOWED = frozenset("0123456789+" + _SEPARATORS)
#: longer input is refused before it is looked at (a fax number with separators fits easily)
MAX_INPUT = 40
MIN_DIGITS = 7
MAX_DIGITS = 15
#: "+44 (0)20 ...": a "(0)" right after a country code (1-3 digits), meaning "dial 0 only at home"
_TRUNK_ZERO = re.compile(r"\+[\s.-]*(?:[0-9][\s.-]*){1,3}(\(\s*0\s*\))")


def _shown(raw: str) -> str:
    """The input as a refusal quotes it: bounded, control characters escaped by repr."""
    return repr(raw if len(raw) <= MAX_INPUT else raw[:MAX_INPUT] + "...")


def _emergency_refusal(number: str) -> NumberRefused:
    return NumberRefused(f"{number} is an emergency number: faxes are never sent to emergency numbers")


def _country_split(digits: str, cfg: OutboundConfig) -> tuple[str, str] | None:
    """(country code, national number) when the country code is ours or one of the tables'."""
    for cc in (cfg.country_code, *PREMIUM):
        if cc and digits.startswith(cc):
            return cc, digits[len(cc) :]
    return None


def _is_emergency(digits: str, cfg: OutboundConfig) -> bool:
    """E.164 digits that are an emergency number after some country code (1 to 3 digits)."""
    split = _country_split(digits, cfg)
    if split is not None:
        return split[1] in EMERGENCY
    return any(digits[k:] in EMERGENCY for k in (1, 2, 3))


def normalise(raw: str, cfg: OutboundConfig) -> str:
    """``raw`` as a person typed it -> "+<digits>" (E.164); NumberRefused naming the problem."""
    if not isinstance(raw, str):
        raise NumberRefused("the fax number must be text")
    text = raw.strip()
    if not text:
        raise NumberRefused("no fax number was given")
    if len(text) > MAX_INPUT:
        raise NumberRefused(f"{_shown(text)} is too long for a fax number (at most {MAX_INPUT} characters)")
    bad = next((c for c in text if c not in _ALLOWED), None)
    if bad is not None:
        what = "letters are" if bad.isalpha() else f"{bad!r} is"
        raise NumberRefused(
            f"{_shown(text)} is not a fax number: {what} not allowed in one (only digits, spaces and + - . / ( ))"
        )
    if "+" in text[1:]:
        raise NumberRefused(f"{_shown(text)} is not a fax number: a '+' may only come first")
    international = text.startswith("+")
    if international and (m := _TRUNK_ZERO.match(text)):
        text = text[: m.start(1)] + text[m.end(1) :]
    digits = "".join(c for c in text if c.isdigit())
    if not digits:
        raise NumberRefused(f"{_shown(text)} is not a fax number: it has no digits")
    if len(digits) > MAX_DIGITS + 4:  # room for the prefixes; E.164's own limit is checked below
        raise NumberRefused(f"{_shown(text)} has too many digits for a fax number (at most {MAX_DIGITS})")
    e164 = "+" + _e164_digits(digits, international, text, cfg)
    return _checked(e164, cfg)


def _e164_digits(digits: str, international: bool, text: str, cfg: OutboundConfig) -> str:
    """The digits of the E.164 form, by the prefix rules (see the module docstring)."""
    intl, trunk, cc, area = cfg.international_prefix, cfg.national_prefix, cfg.country_code, cfg.area_code
    if international:
        return _without_trunk(digits, cfg)
    if intl and digits.startswith(intl):
        return _without_trunk(digits[len(intl) :], cfg)
    if digits in EMERGENCY:
        raise _emergency_refusal(digits)
    if not cc:
        raise NumberRefused(
            f"{_shown(text)}: write the number in international form (+49 30 1234567): "
            "the country this box dials from is not configured (outbound.country_code)"
        )
    if cc == "1":
        return cc + _nanp_national(digits, text, cfg)
    if trunk and digits.startswith(trunk):
        national = digits[len(trunk) :]
        if national in EMERGENCY:
            raise _emergency_refusal(digits)
        return cc + national
    if not trunk:  # countries without a trunk prefix (Italy, Spain, ...): numbers are written whole
        return cc + digits
    if digits.startswith("1") and cc in SHORT_CODE_COUNTRIES:
        raise NumberRefused(
            f"{_shown(text)} is a service number (short codes start with 1 here: emergency, directory "
            f"enquiries, ...), not a fax number; write a fax number with its area code ({trunk}...)"
        )
    if not area:
        raise NumberRefused(
            f"{_shown(text)}: write the number with its area code ({trunk}...): "
            "no area code is configured for local numbers (outbound.area_code)"
        )
    return cc + area + digits


def _trunk_of(cc: str, cfg: OutboundConfig) -> str:
    """The trunk prefix of a country when known: ours as configured, "0" where the tables know it."""
    if cc == cfg.country_code:
        return cfg.national_prefix
    return "0" if cc in SHORT_CODE_COUNTRIES else ""


def _without_trunk(digits: str, cfg: OutboundConfig) -> str:
    """ "+49 030 1234567" means +49 30 1234567: a trunk prefix written after the country code is
    dropped (once) where it is known, as "(0)" is; national numbers there never start with it."""
    split = _country_split(digits, cfg)
    if split is None or split[0] == "1":  # the NANP's own checks refuse +1 1...
        return digits
    cc, national = split
    trunk = _trunk_of(cc, cfg)
    return cc + national[len(trunk) :] if trunk and national.startswith(trunk) else digits


def _nanp_national(digits: str, text: str, cfg: OutboundConfig) -> str:
    """The 10-digit national number of an NANP number written without the country code."""
    trunk = cfg.national_prefix
    if len(digits) == 11 and trunk and digits.startswith(trunk):
        digits = digits[len(trunk) :]
    if trunk and digits.startswith(trunk) and digits[len(trunk) :] in EMERGENCY:
        raise _emergency_refusal(digits)
    if len(digits) == 10:
        return digits
    if len(digits) == 7:
        if not cfg.area_code:
            raise NumberRefused(
                f"{_shown(text)}: write the number with its area code ((555) 123-4567): "
                "no area code is configured for local numbers (outbound.area_code)"
            )
        return cfg.area_code + digits
    raise NumberRefused(
        f"{_shown(text)} is not a valid number: numbers in the NANP have 10 digits "
        f"(or 7 within the area code), not {len(digits)}"
    )


def _checked(e164: str, cfg: OutboundConfig) -> str:
    """The bounds every E.164 number must meet, whichever way it was written."""
    digits = e164[1:]
    if _is_emergency(digits, cfg):
        raise _emergency_refusal(e164)
    if digits.startswith("0"):
        raise NumberRefused(
            f"{e164} is not a valid number: no country code starts with 0 (write +49 30 ... or 030 ..., not +030 ...)"
        )
    if len(digits) > MAX_DIGITS:
        raise NumberRefused(
            f"{e164} is too long: an international number has at most {MAX_DIGITS} digits (E.164), "
            f"this one {len(digits)}"
        )
    if len(digits) < MIN_DIGITS:
        raise NumberRefused(f"{e164} is too short: a fax number has at least {MIN_DIGITS} digits with its country code")
    if digits.startswith("1") and len(digits) != 11:
        raise NumberRefused(
            f"{e164} is not a valid number: numbers in the NANP (+1) have 10 digits after the 1, "
            f"this one {len(digits) - 1}"
        )
    if digits.startswith("1") and digits[1] in "01":
        raise NumberRefused(f"{e164} is not a valid number: no area code in the NANP (+1) starts with {digits[1]}")
    if digits.startswith("1") and digits[2:4] == "11":
        raise NumberRefused(
            f"{e164} is not a valid number: {digits[1:4]} is a service code in the NANP, not an area code"
        )
    split = _country_split(digits, cfg)
    if split is not None:
        cc, national = split
        for prefix in (_trunk_of(cc, cfg), cfg.international_prefix if cc == cfg.country_code else ""):
            if prefix and national.startswith(prefix):
                raise NumberRefused(
                    f"{e164} is not a valid number: numbers of +{cc} do not start with {prefix} after the country code"
                )
    return e164


def number_kinds(e164: str, cfg: OutboundConfig) -> frozenset[str]:
    """Every kind in KINDS that fits an E.164 number: one of local, national and international,
    plus premium (by the PREMIUM table) and emergency (by EMERGENCY)."""
    if not re.fullmatch(r"\+[0-9]{1,20}", e164):
        raise NumberRefused(f"{_shown(e164)} is not a number in E.164 form (+ and digits)")
    digits = e164[1:]
    kinds: set[str] = set()
    split = _country_split(digits, cfg)
    if _is_emergency(digits, cfg):
        kinds.add("emergency")
    elif split is not None and (pattern := _PREMIUM_RE.get(split[0])) and pattern.match(split[1]):
        kinds.add("premium")
    cc, area = cfg.country_code, cfg.area_code
    if not cc or not digits.startswith(cc) or (cc == "1" and digits[1:4] in NANP_FOREIGN):
        kinds.add("international")
    elif area and digits[len(cc) :].startswith(area) and len(digits) > len(cc) + len(area):
        kinds.add("local")
    else:
        kinds.add("national")
    return frozenset(kinds)


def number_kind(e164: str, cfg: OutboundConfig) -> str:
    """The most restricted kind of a number (the first of KINDS that fits): what a report calls it."""
    kinds = number_kinds(e164, cfg)
    return next(k for k in KINDS if k in kinds)


def kind_words(kind: str) -> str:
    """A kind as a sentence says it: "premium-rate", "national (long-distance)"."""
    return _WORDS.get(kind, kind)


def _dials_alone(subscriber: str, cfg: OutboundConfig) -> bool:
    """Whether a subscriber number can be dialled without its area code and still mean itself: not
    when it starts like a prefix or a short code (an exchange connects "112..." at the third digit),
    nor an NANP number of other than 7 digits; those are dialled in national form instead."""
    cc = cfg.country_code
    if len(subscriber) < 3 or (cc == "1" and len(subscriber) != 7):
        return False
    if any(p and subscriber.startswith(p) for p in (cfg.national_prefix, cfg.international_prefix)):
        return False
    if cc in SHORT_CODE_COUNTRIES and subscriber.startswith("1"):
        return False
    return not any(subscriber.startswith(code) for code in EMERGENCY)


def dial_digits(e164: str, route: OutboundRouteConfig, cfg: OutboundConfig) -> str:
    """What the route dials (a modem) or puts in {number} (SIP): the route's number_format, with
    its dial_prefix (an outside line) in front.

    e164: "+4930223456"; international: "004930223456"; national: "030223456" (a number of
    another country: international); local: "223456" within our area code (else national, also
    for a subscriber number that could be misread alone: see _dials_alone).
    """
    digits = e164[1:]
    fmt = route.number_format
    if fmt == "e164":
        return route.dial_prefix + e164
    cc, intl = cfg.country_code, cfg.international_prefix
    if fmt != "international" and cc and digits.startswith(cc):
        national = digits[len(cc) :]
        area = cfg.area_code
        if fmt == "local" and area and national.startswith(area) and _dials_alone(national[len(area) :], cfg):
            return route.dial_prefix + national[len(area) :]
        return route.dial_prefix + cfg.national_prefix + national
    if not intl:
        raise NumberRefused(f"{e164} cannot be dialled on route {route.name}: outbound.international_prefix is empty")
    return route.dial_prefix + intl + digits
