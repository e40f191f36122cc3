"""What particular modems need beyond the standard, as a table that is easy to extend.

Each rule matches the probe's manufacturer/model (and the ATI text) with regular expressions; the
first rule that matches wins, the last one matches everything.  The contents come from HylaFAX's
modem config prototypes, the accumulated field knowledge of thirty years (sjaeckel/hylafax,
``trunk/config/<file>``; the file is named in each rule's ``source``):

- ``usr-rts``: USR Courier/Sportster.  ``ATS13=1&D2`` (DTR drop resets), ``AT&C1``, flow control
  with ``&H1``/``&H2``/``&H0``; "when AT+FCLASS=1 is issued the modem automatically switches to
  software flow control", so hardware flow is asserted again after the class is set; ``AT+FRS``
  makes them reset mid-session, so a plain delay replaces it (``Class1SwitchingCmd``).
- ``conexant-1.0``: Rockwell/Conexant K56 Class 1.0: ``AT&K3``/``&K4``/``&K0`` flow control,
  ``AT&D2``, ``AT&C1``; ``AT+FAR=1`` adaptive receive.
- ``rockwell-k56`` (Class 2): receive fill order is MSB2LSB, "opposite of what makes sense", and
  DC2 (``\\022``) starts a Class 2 receive.  Caller ID there is ``AT#CID=1``.
- ``lucent``: Lucent/Agere and the MultiTech MT5634 family built on it: ``AT&D3``; a 400 ms delay
  after +FTM's CONNECT (``Class1TMConnectDelay``) and +FRH=3 CONNECT errors to cope with
  (``Class1HasRHConnectBug``); caller ID with ``AT+VCID=1``.
- ``mt-1432``: older MultiTech Class 2: ``AT&E4``/``&E5`` flow control, ``AT&D3``.
- ``iaxmodem``: spandsp's T.31 (our virtual modem, iaxmodem) needs nothing special.

Flags are plain strings handed to the drivers in ``ModemCall.quirks``: a driver that does not
know a flag ignores it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from appliance.modem.probe import ModemInfo

#: flags a rule may set; the drivers read them from ModemCall.quirks
KNOWN_FLAGS = frozenset(
    {
        "needs_ftm_delay",  # wait ~400 ms after +FTM CONNECT before data (lucent)
        "rh_connect_bug",  # +FRH=3 may answer CONNECT then fail (lucent)
        "no_frs",  # never use AT+FRS=n: the modem resets; wait instead (usr-rts)
        "reassert_flow_after_fclass",  # +FCLASS=1 switches to XON/XOFF: send the flow command again
        "no_adaptive_answer",  # no +FAA / +FAE: answer fax-only
        "adaptive_receive",  # AT+FAR=1 works (conexant-1.0)
        "class2_bit_order_reversed",  # Class 2 receive data is MSB first (rockwell-k56)
        "class2_dc2_trigger",  # send DC2 to start a Class 2 receive (rockwell-k56, mt-1432)
    }
)


@dataclass(frozen=True)
class Quirks:
    """What the line sends and tells the driver for one modem."""

    name: str
    init: tuple[str, ...] = ()
    #: flow-control command per [modem] flow_control; absent: the modem's default is left alone
    flow: dict[str, str] = field(default_factory=dict)
    caller_id: str = "AT+VCID=1"
    answer_command: str = "ATA"
    flags: frozenset[str] = frozenset()
    source: str = ""

    def flow_command(self, flow: str) -> str | None:
        return self.flow.get(flow)


@dataclass(frozen=True)
class QuirkRule:
    quirks: Quirks
    manufacturer: str = ".*"  # regex, searched case-insensitively
    model: str = ".*"  # regex against model and the ATI text

    def matches(self, info: ModemInfo) -> bool:
        model_text = f"{info.model} {info.ident_text}"
        return bool(
            re.search(self.manufacturer, info.manufacturer or "", re.IGNORECASE)
            and re.search(self.model, model_text, re.IGNORECASE)
        )


_K_FLOW = {"rtscts": "AT&K3", "xonxoff": "AT&K4", "none": "AT&K0"}

#: first match wins; add new modems above the generic rule
RULES: list[QuirkRule] = [
    QuirkRule(
        Quirks(
            "usr",
            init=("ATS13=1&D2", "AT&C1", "ATQ0X4"),
            flow={"rtscts": "AT&H1", "xonxoff": "AT&H2", "none": "AT&H0"},
            flags=frozenset({"no_frs", "reassert_flow_after_fclass"}),
            source="hylafax config/usr-rts",
        ),
        manufacturer=r"U\.?\s?S\.?\s?Robotics|USRobotics|3Com",
    ),
    QuirkRule(
        Quirks(
            "lucent",
            init=("AT&D3",),
            flags=frozenset({"needs_ftm_delay", "rh_connect_bug"}),
            source="hylafax config/lucent",
        ),
        model=r"\bLT V\.9[02]|Agere|Lucent|MT5634",
    ),
    QuirkRule(
        Quirks(
            "multitech-class2",
            init=("AT&D3",),
            flow={"rtscts": "AT&E4", "xonxoff": "AT&E5"},
            flags=frozenset({"class2_dc2_trigger"}),
            source="hylafax config/mt-1432",
        ),
        manufacturer=r"Multi-?Tech",
        model=r"MT1432|MT224|MT1932|MT2834",
    ),
    QuirkRule(
        Quirks(
            "rockwell",
            init=("AT&D3", "AT&C1"),
            flow=_K_FLOW,
            caller_id="AT#CID=1",
            flags=frozenset({"class2_bit_order_reversed", "class2_dc2_trigger"}),
            source="hylafax config/rockwell-k56",
        ),
        manufacturer=r"Rockwell",
        model=r".*",
    ),
    QuirkRule(
        Quirks(
            "conexant",
            init=("AT&D2", "AT&C1"),
            flow=_K_FLOW,
            flags=frozenset({"adaptive_receive"}),
            source="hylafax config/conexant-1.0",
        ),
        manufacturer=r"Conexant|Zoom",
        model=r".*",
    ),
    QuirkRule(Quirks("spandsp", source="hylafax config/iaxmodem"), manufacturer=r"soft-switch|spandsp", model=r".*"),
    QuirkRule(Quirks("generic", source="T.31/T.32 only")),
]


def quirks_for(info: ModemInfo, rules: list[QuirkRule] | None = None) -> Quirks:
    """The first rule that matches the probed modem."""
    for rule in RULES if rules is None else rules:
        if rule.matches(info):
            unknown = rule.quirks.flags - KNOWN_FLAGS
            if unknown:  # a typo in the table is our bug, loudly
                raise ValueError(f"quirk rule {rule.quirks.name!r}: unknown flags {sorted(unknown)}")
            return rule.quirks
    return Quirks("generic")
