"""Which route a fax goes out by: the first ``[[outbound.routes]]`` entry whose ``match`` is found
in the E.164 number and which does not forbid the number's kind. Pure.

Emergency numbers are refused before any route is looked at, whatever the routes say. A
refusal names the number and, for each route that matched but forbids it, the route and why,
so the sender's reply and the web page can say it in plain words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.config import OutboundConfig, OutboundRouteConfig
from appliance.outbound.numbers import KINDS, NumberRefused, dial_digits, kind_words, number_kinds

__all__ = ["RouteChoice", "choose_route"]


@dataclass(frozen=True)
class RouteChoice:
    """The way out for one number: the route, the number (E.164) and what the route dials or puts
    in {number} (``dial_digits``); ``kind`` is the number's kind (numbers.number_kind)."""

    route: OutboundRouteConfig
    e164: str
    dial: str
    kind: str = ""


def choose_route(e164: str, cfg: OutboundConfig) -> RouteChoice:
    """The first route that matches ``e164`` and allows it; NumberRefused saying why none does."""
    kinds = number_kinds(e164, cfg)
    if "emergency" in kinds:
        raise NumberRefused(f"{e164} is an emergency number: faxes are never sent to emergency numbers")
    kind = next(k for k in KINDS if k in kinds)
    if not cfg.routes:
        raise NumberRefused(f"no route for {e164}: no way out is configured ([[outbound.routes]])")
    refused: list[str] = []
    for route in cfg.routes:
        if not re.search(route.match, e164):
            continue
        forbidden = next((k for k in KINDS if k in kinds and k in route.forbid), None)
        if forbidden is not None:
            refused.append(f"{kind_words(forbidden)} numbers are not allowed on route {route.name}")
            continue
        return RouteChoice(route, e164, dial_digits(e164, route, cfg), kind)
    if refused:
        raise NumberRefused(f"{e164} cannot be sent: " + "; ".join(refused))
    names = ", ".join(r.name for r in cfg.routes)
    raise NumberRefused(f"no route for {e164}: it matches none of the routes ({names})")
