"""Call facts -> recipients.

Today: the called number (DID/DNIS) looked up in ``routing.called``, else ``routing.default``.
Numbers arrive in many spellings ("+1 555-1000", "tel:5551000", "sip:5551000@gw;user=phone"),
so keys and the called number are compared by their digits; a key spelled exactly as the
called number still wins, so an owner can pin one spelling when two keys share their digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.config import RoutingConfig


@dataclass(frozen=True)
class RouteDecision:
    recipients: list[str] = field(default_factory=list)
    #: which rule matched, for the log and the web UI: "called 5551000" or "default"
    rule: str = "default"


def number_digits(number: str) -> str:
    """The digits of a number's user part: scheme, host and URI parameters dropped."""
    s = number.strip()
    scheme, sep, rest = s.partition(":")
    if sep and scheme.lower() in ("tel", "sip", "sips"):
        s = rest
    s = s.split("@", 1)[0].split(";", 1)[0]
    return "".join(c for c in s if c.isascii() and c.isdigit())


def route(cfg: RoutingConfig, *, called_number: str = "", caller_number: str = "",
          remote_ident: str = "", line: str = "", um_recipient: str = "") -> RouteDecision:
    """Pick the recipients for one fax; never empty while a default is configured.

    A fax that Exchange UM referred to us names its mailbox (msExchUMFaxRecipient): that wins,
    as the UM mailbox policy is the owner's own routing.
    """
    if um_recipient:
        return RouteDecision([um_recipient], "Exchange UM msExchUMFaxRecipient")
    if called_number:
        if called_number in cfg.called:
            return RouteDecision([cfg.called[called_number]], f"called {called_number}")
        digits = number_digits(called_number)
        if digits:
            for key, addr in cfg.called.items():
                if number_digits(key) == digits:
                    return RouteDecision([addr], f"called {key}")
    return RouteDecision([cfg.default] if cfg.default else [], "default")
