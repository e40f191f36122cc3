"""Choosing the way out (appliance/outbound/routes.py): the first route that matches and allows
the number's kind; emergency numbers never; every refusal names the number, the route and why."""
from __future__ import annotations

import pytest

from appliance.config import Config, OutboundConfig
from appliance.outbound.numbers import NumberRefused, normalise
from appliance.outbound.routes import RouteChoice, choose_route


def _cfg(country: str, area: str, routes: list[dict], **numbering: str) -> OutboundConfig:
    """A checked configuration, built the way the daemon loads it."""
    section = {"enabled": True, "country_code": country, "area_code": area, "routes": routes, **numbering}
    return Config.from_dict({"outbound": section, "modem": {"devices": ["/dev/ttyUSB0"]}}).outbound


#: a Berlin office: local and national calls through the PBX (outside line 0), the rest (but no
#: premium) over a modem; nothing international from the PBX
BERLIN = _cfg("49", "30", [
    {"name": "pbx", "match": r"^\+49", "via": "sip:{number}@pbx.example.com", "number_format": "national",
     "dial_prefix": "0", "forbid": ["premium"]},
    {"name": "modem", "match": r"^\+", "via": "modem:any", "number_format": "international",
     "forbid": ["premium", "national", "local"]},
])
#: a New York office: one trunk for everything, international and premium forbidden
NEW_YORK = _cfg("1", "212", [
    {"name": "trunk", "match": "^\\+1", "via": "sip:{number}@trunk.example.net;transport=tcp", "number_format": "e164",
     "forbid": ["premium", "international"], "t38": "request"},
], international_prefix="011", national_prefix="1")
#: a London office: local calls on a modem line, national ones on SIP, nothing else
LONDON = _cfg("44", "20", [
    {"name": "local-line", "match": r"^\+44", "via": "modem:/dev/ttyUSB0", "number_format": "local",
     "dial_prefix": "9,", "forbid": ["national", "international", "premium"]},
    {"name": "sip", "match": r"^\+44[1-8]", "via": "sip:{number}@sip.example.co.uk", "number_format": "national",
     "forbid": ["international"]},
])
OFFICES = {"BERLIN": BERLIN, "NEW_YORK": NEW_YORK, "LONDON": LONDON}


@pytest.mark.parametrize("office, typed, route, e164, dial, kind", [
    ("BERLIN", "030 2345678", "pbx", "+49302345678", "00302345678", "local"),
    ("BERLIN", "2345678", "pbx", "+49302345678", "00302345678", "local"),
    ("BERLIN", "089 1234567", "pbx", "+49891234567", "00891234567", "national"),
    ("BERLIN", "0151 12345678", "pbx", "+4915112345678", "0015112345678", "national"),
    ("BERLIN", "+44 20 7946 0000", "modem", "+442079460000", "00442079460000", "international"),
    ("BERLIN", "001 212 555 0123", "modem", "+12125550123", "0012125550123", "international"),
    ("NEW_YORK", "(212) 555-0123", "trunk", "+12125550123", "+12125550123", "local"),
    ("NEW_YORK", "1 617 555 0123", "trunk", "+16175550123", "+16175550123", "national"),
    ("NEW_YORK", "416-555-0123", "trunk", "+14165550123", "+14165550123", "national"),
    ("LONDON", "020 7946 0000", "local-line", "+442079460000", "9,79460000", "local"),
    ("LONDON", "7946 0000", "local-line", "+442079460000", "9,79460000", "local"),
    ("LONDON", "0161 496 0000", "sip", "+441614960000", "01614960000", "national"),
])
def test_the_first_route_that_matches_and_allows_the_number(office: str, typed: str, route: str, e164: str,
                                                            dial: str, kind: str) -> None:
    cfg = OFFICES[office]
    choice = choose_route(normalise(typed, cfg), cfg)
    assert choice == RouteChoice(cfg.route(route), e164, dial, kind)  # type: ignore[arg-type]


def test_the_sip_target_of_a_choice() -> None:
    choice = choose_route("+12125550123", NEW_YORK)
    assert choice.route.sip_uri(choice.dial) == "sip:+12125550123@trunk.example.net;transport=tcp"
    assert (choice.route.kind, choice.route.t38, choice.route.retries) == ("sip", "request", [120, 300, 600])
    modem = choose_route("+442079460000", LONDON).route
    assert (modem.kind, modem.target) == ("modem", "/dev/ttyUSB0")


#: anything goes (a test box): still never an emergency number
ANYTHING = _cfg("49", "30", [{"name": "all", "match": ".", "via": "modem:any", "number_format": "international"}])
OFFICES["ANYTHING"] = ANYTHING


@pytest.mark.parametrize("office, e164, message", [
    ("BERLIN", "+499001234567", "+499001234567 cannot be sent: premium-rate numbers are not allowed on route pbx; "
                                "premium-rate numbers are not allowed on route modem"),
    ("BERLIN", "+19005550123", "+19005550123 cannot be sent: premium-rate numbers are not allowed on route modem"),
    ("NEW_YORK", "+19005550123", "+19005550123 cannot be sent: premium-rate numbers are not allowed on route trunk"),
    ("NEW_YORK", "+12129760123", "+12129760123 cannot be sent: premium-rate numbers are not allowed on route trunk"),
    ("NEW_YORK", "+18765550123", "+18765550123 cannot be sent: international numbers are not allowed on route trunk"),
    ("NEW_YORK", "+49301234567", "no route for +49301234567: it matches none of the routes (trunk)"),
    ("LONDON", "+449123456789", "+449123456789 cannot be sent: premium-rate numbers are not allowed on route "
                                "local-line"),
    ("LONDON", "+33123456789", "no route for +33123456789: it matches none of the routes (local-line, sip)"),
    ("BERLIN", "+49112", "+49112 is an emergency number: faxes are never sent to emergency numbers"),
    ("NEW_YORK", "+1911", "+1911 is an emergency number: faxes are never sent to emergency numbers"),
    ("LONDON", "+44999", "+44999 is an emergency number: faxes are never sent to emergency numbers"),
    ("ANYTHING", "+49110", "+49110 is an emergency number: faxes are never sent to emergency numbers"),
    ("ANYTHING", "+61000", "+61000 is an emergency number: faxes are never sent to emergency numbers"),
    ("ANYTHING", "4930", "'4930' is not a number in E.164 form (+ and digits)"),
])
def test_refusals_name_the_number_and_the_routes(office: str, e164: str, message: str) -> None:
    with pytest.raises(NumberRefused) as err:
        choose_route(e164, OFFICES[office])
    assert str(err.value) == message


def test_a_route_that_forbids_a_kind_lets_the_next_route_take_it() -> None:
    """London's local line matches every UK number but forbids national ones: SIP takes those."""
    assert choose_route("+441614960000", LONDON).route.name == "sip"
    assert choose_route("+442079460000", LONDON).route.name == "local-line"


def test_without_routes_nothing_goes_out() -> None:
    with pytest.raises(NumberRefused) as err:
        choose_route("+49301234567", OutboundConfig(country_code="49"))
    assert str(err.value) == "no route for +49301234567: no way out is configured ([[outbound.routes]])"


def test_anything_goes_means_every_kind_but_emergency() -> None:
    for e164, kind in [("+499001234567", "premium"), ("+12125550123", "international"),
                       ("+49891234567", "national"), ("+49302345678", "local")]:
        choice = choose_route(e164, ANYTHING)
        assert (choice.route.name, choice.kind, choice.dial) == ("all", kind, "00" + e164[1:])


def test_forbidding_emergency_is_allowed_and_changes_nothing() -> None:
    cfg = _cfg("1", "212", [{"name": "t", "match": ".", "via": "sip:{number}@t.example", "forbid": ["emergency"]}],
               international_prefix="011", national_prefix="1")
    assert choose_route("+12125550123", cfg).dial == "+12125550123"
    with pytest.raises(NumberRefused, match=r"^\+1911 is an emergency number"):
        choose_route("+1911", cfg)


def test_the_route_regex_is_searched_not_fullmatched() -> None:
    cfg = _cfg("49", "30", [{"name": "berlin", "match": "4930", "via": "modem:any", "number_format": "local"}])
    assert choose_route("+49302345678", cfg).dial == "2345678"
    with pytest.raises(NumberRefused, match="it matches none of the routes"):
        choose_route("+49892345678", cfg)


def test_the_readme_example_routes_as_it_says() -> None:
    import re
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if b.startswith("[outbound]")]
    cfg = Config.from_dict(tomllib.loads(block)).outbound

    def way(typed: str) -> tuple[str, str]:
        choice = choose_route(normalise(typed, cfg), cfg)
        return choice.route.name, choice.dial

    assert way("030 2345678") == ("pbx", "00302345678")
    assert way("2345678") == ("pbx", "00302345678")
    assert way("+49 89 1234567") == ("pbx", "00891234567")
    assert way("+44 20 7946 0000") == ("modem", "00442079460000")
    with pytest.raises(NumberRefused, match=r"^\+499001234567 cannot be sent: premium-rate numbers are not allowed "
                                            r"on route pbx; premium-rate numbers are not allowed on route modem$"):
        way("0900 1234567")
