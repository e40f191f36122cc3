"""Call facts -> recipients and how to deliver.

Order: an Exchange UM referral claimed by a rule that matches ``um_recipient``; else the UM
recipient itself (the UM mailbox policy is the owner's own routing); else the first
``[[routing.rules]]`` entry whose match fields all match; else the called number (DID/DNIS)
looked up in ``routing.called``; else ``routing.default``.
A UM recipient outside ``routing.accepted_domains`` is refused: the fax is routed as if the
referral named no one, and the refusal is part of the decision (the fax record keeps it).
Numbers arrive in many spellings ("+1 555-1000", "tel:5551000", "sip:5551000@gw;user=phone"),
so keys and the called number are compared by their digits; a key spelled exactly as the
called number still wins, so an owner can pin one spelling when two keys share their digits.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from appliance.config import SUBJECT_FIELDS, RouteRuleConfig, RoutingConfig


@dataclass(frozen=True)
class RouteDecision:
    """Who gets the fax and in which form; ``as_extra()`` is what the spool keeps for delivery."""

    #: ``to`` then ``cc``, each address once, order kept: one delivery job each
    recipients: list[str] = field(default_factory=list)
    #: which rule matched, for the log and the web UI: a rule's name, "called 5551000" or "default"
    rule: str = "default"
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    #: "tiff" | "pdf" | "both"
    format: str = "tiff"
    #: "tiff-f" | "profile-s"
    tiff: str = "tiff-f"
    #: "" = delivery's own subject, else a template (render_subject)
    subject: str = ""
    #: why an address was not used (outside routing.accepted_domains), one message each
    refused: tuple[str, ...] = ()
    #: the Exchange UM recipient that was refused ("" = none): the fax is not a UM partner message
    um_refused: str = ""

    def __post_init__(self) -> None:
        # RouteDecision(["a@x"], "default"): recipients given alone are all "to"
        if self.recipients and not self.to and not self.cc:
            object.__setattr__(self, "to", list(self.recipients))

    def as_extra(self) -> dict[str, Any]:
        """The ``fax.extra["route"]`` record delivery reads (JSON-safe)."""
        out: dict[str, Any] = {
            "to": list(self.to),
            "cc": list(self.cc),
            "format": self.format,
            "tiff": self.tiff,
            "subject": self.subject,
            "rule": self.rule,
        }
        if self.refused:
            out["refused"] = list(self.refused)
        if self.um_refused:
            out["um_refused"] = self.um_refused
        return out


def render_subject(template: str, **facts: object) -> str:
    """Fill a validated subject template; a fact not given renders empty, never raises."""
    values = {k: str(facts.get(k, "") if facts.get(k) is not None else "") for k in SUBJECT_FIELDS}
    try:
        text = template.format_map(values)
    except (KeyError, ValueError, IndexError, AttributeError):
        text = template  # not validated (hand-built config): better the raw text than no mail
    return " ".join(text.split())  # no header breaks from a TSI


def _decision(
    to: list[str], cc: list[str], rule: str, r: RouteRuleConfig | None = None, *, um: bool = False
) -> RouteDecision:
    """``um``: an Exchange UM referral, whose partner mode wants Profile S unless a rule says otherwise
    (delivery honours an explicit ``tiff`` even for UM, so the default must be chosen here)."""
    recipients = list(dict.fromkeys([*to, *cc]))
    to_u = list(dict.fromkeys(to))
    cc_u = [a for a in dict.fromkeys(cc) if a not in to_u]
    tiff = (r.tiff if r is not None and r.tiff else "") or ("profile-s" if um else "tiff-f")
    if r is None:
        return RouteDecision(recipients, rule, to_u, cc_u, tiff=tiff)
    return RouteDecision(recipients, rule, to_u, cc_u, r.format, tiff, r.subject)


def _rule_matches(r: RouteRuleConfig, called: str, caller: str, tsi: str, line: str, um: str) -> bool:
    """All match fields given must match; numbers compare by their digits."""
    if r.called and number_digits(called) != number_digits(r.called):
        return False
    if r.called_prefix and not number_digits(called).startswith(number_digits(r.called_prefix)):
        return False
    if r.called_pattern and not re.search(r.called_pattern, number_digits(called)):
        return False
    if r.line and not (line == r.line or fnmatch.fnmatchcase(line, r.line)):
        return False
    if r.caller and number_digits(caller) != number_digits(r.caller):
        return False
    if r.caller_prefix and not number_digits(caller).startswith(number_digits(r.caller_prefix)):
        return False
    if r.tsi and not re.search(r.tsi, tsi.strip(), re.IGNORECASE):
        return False
    if r.um_recipient is True and not um:
        return False
    if r.um_recipient is False and um:
        return False
    # one condition per line like those above, not folded into the return (SIM103)
    if isinstance(r.um_recipient, str) and not (um and re.search(r.um_recipient, um, re.IGNORECASE)):  # noqa: SIM103
        return False
    return True


def _rule_name(index: int, r: RouteRuleConfig) -> str:
    return r.name or f"rule {index + 1}"


def number_digits(number: str) -> str:
    """The digits of a number's user part: scheme, host and URI parameters dropped."""
    s = number.strip()
    scheme, sep, rest = s.partition(":")
    if sep and scheme.lower() in ("tel", "sip", "sips"):
        s = rest
    s = s.split("@", 1)[0].split(";", 1)[0]
    return "".join(c for c in s if c.isascii() and c.isdigit())


def route(
    cfg: RoutingConfig,
    *,
    called_number: str = "",
    caller_number: str = "",
    remote_ident: str = "",
    line: str = "",
    um_recipient: str = "",
) -> RouteDecision:
    """Pick the recipients and delivery form for one fax; never empty while a default is set.

    A fax that Exchange UM referred to us names its mailbox (msExchUMFaxRecipient): that wins
    over every rule that does not itself match ``um_recipient``, as the UM mailbox policy is the
    owner's own routing.  A UM recipient outside ``cfg.accepted_domains`` is refused and the fax
    routed as if there were none; any other address outside them (possible only in a hand-built,
    unvalidated config) is left out.  Pure: the same facts always give the same decision.
    """
    um = um_recipient.strip()
    refused = cfg.refusal(um) if um else None
    decision = _route(cfg, called_number, caller_number, remote_ident, line, "" if refused else um)
    left_out = [why for why in (cfg.refusal(a) for a in decision.recipients) if why]
    if not refused and not left_out:
        return decision
    keep = [a for a in decision.recipients if cfg.refusal(a) is None]
    return dataclasses.replace(
        decision,
        recipients=keep,
        to=[a for a in decision.to if a in keep],
        cc=[a for a in decision.cc if a in keep],
        refused=tuple(([refused] if refused else []) + left_out),
        um_refused=um if refused else "",
    )


def _route(
    cfg: RoutingConfig, called_number: str, caller_number: str, remote_ident: str, line: str, um: str
) -> RouteDecision:
    for i, r in enumerate(cfg.rules):
        if um and r.um_recipient is None:
            continue  # UM's recipient wins over rules that do not mention UM
        if _rule_matches(r, called_number, caller_number, remote_ident, line, um):
            to = ([um] if r.use_um_recipient and um else []) + list(r.to)
            return _decision(to, list(r.cc), _rule_name(i, r), r, um=bool(um))
    if um:
        return _decision([um], [], "Exchange UM msExchUMFaxRecipient", um=True)
    if called_number:
        if called_number in cfg.called:
            return _decision([cfg.called[called_number]], [], f"called {called_number}")
        digits = number_digits(called_number)
        if digits:
            for key, addr in cfg.called.items():
                if number_digits(key) == digits:
                    return _decision([addr], [], f"called {key}")
    return _decision([cfg.default] if cfg.default else [], [], "default")
