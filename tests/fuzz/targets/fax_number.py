"""Fax numbers as senders type them (appliance/outbound/numbers.py, routes.py).

Input: the first byte chooses the numbering (a box in the NANP, Germany, the UK, Italy, Belgium
or one with no country set); the rest is the number as typed (UTF-8, bad bytes replaced), as a
mail subject, an address's local part, a web form or the API hand it over.
Contract: ``normalise`` returns "+" and 7-15 digits, not starting with 0, or raises
NumberRefused whose message is one printable line of bounded length, never anything else. A
number it returns reads the same again, is no emergency number, has exactly one of local,
national and international among its kinds, and every number_format dials it as digits (and
"+" for e164 only) that read back as the same number; ``choose_route`` returns a route whose
match fits and whose dial is dial_digits', or refuses with NumberRefused.
"""
from __future__ import annotations

import re

from appliance.config import Config, OutboundRouteConfig
from appliance.outbound.numbers import KINDS, NumberRefused, dial_digits, normalise, number_kinds
from appliance.outbound.routes import choose_route

MAX_LEN = 64
DICTS = ("numbers", "_text")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_ROUTES = [
    {"name": "no-premium", "match": r"^\+(1|49)", "via": "sip:{number}@pbx.example.com", "number_format": "e164",
     "forbid": ["premium", "international"]},
    {"name": "modem", "match": "[02468]$", "via": "modem:any", "number_format": "local", "dial_prefix": "0,"},
]
_BOXES = [
    Config.from_dict({"outbound": {"routes": _ROUTES} | section, "modem": {"auto_adopt": True}}).outbound
    for section in (
        {"country_code": "1", "area_code": "212", "international_prefix": "011", "national_prefix": "1"},
        {"country_code": "49", "area_code": "30"},
        {"country_code": "44", "area_code": "20"},
        {"country_code": "39", "national_prefix": ""},
        {"country_code": "32", "area_code": "2"},
        {"country_code": "", "routes": [_ROUTES[0] | {"forbid": ["premium"]}]},
    )
]
_FORMATS = ("e164", "international", "national", "local")


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    cfg = _BOXES[data[0] % len(_BOXES)]
    typed = data[1:].decode("utf-8", "replace")
    try:
        e164 = normalise(typed, cfg)
    except NumberRefused as e:
        text = str(e)
        assert text and text.isprintable() and len(text) <= 300, text
        return
    assert _E164.fullmatch(e164), (typed, e164)
    assert normalise(e164, cfg) == e164, (typed, e164)
    kinds = number_kinds(e164, cfg)
    assert kinds <= set(KINDS) and "emergency" not in kinds, kinds
    assert len(kinds & {"local", "national", "international"}) == 1, kinds
    for fmt in _FORMATS:
        if fmt != "e164" and not cfg.country_code:
            continue
        dialled = dial_digits(e164, OutboundRouteConfig(name="r", number_format=fmt), cfg)
        assert re.fullmatch(r"\+?[0-9]+" if fmt == "e164" else r"[0-9]+", dialled), (fmt, dialled)
        assert normalise(dialled, cfg) == e164, (typed, e164, fmt, dialled)
    try:
        choice = choose_route(e164, cfg)
    except NumberRefused as e:
        assert str(e).isprintable() and e164 in str(e), str(e)
        return
    assert re.search(choice.route.match, e164) and choice.e164 == e164
    assert choice.dial == dial_digits(e164, choice.route, cfg)
    assert not set(choice.route.forbid) & kinds, (choice.route.name, kinds)
