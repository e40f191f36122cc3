"""Who is this modem and which fax classes does it speak?

The same questions HylaFAX's ``probemodem``/``faxaddmodem`` ask, in the same order: reset and
verbose results, the ``ATI`` family (free text, differs per vendor), the service classes
(``AT+FCLASS=?``), then the identification commands in the spelling of each class: Class 2.0
and T.31 say ``+FMI?``/``+FMM?``/``+FMR?``, the older Class 2 (SP-2388) ``+FMFR?``/``+FMDL?``/
``+FREV?`` and only answers them in Class 2.  In Class 1 the modulations it can send and receive
come from ``AT+FTM=?``/``AT+FRM=?``.

Modems answer ERROR to the questions they do not know (an Agere has no ``+FMI?``, spandsp has
no ``ATI3``), so every query but the first reset is optional: its ERROR is recorded and the
probe goes on.  A modem that does not answer ATZ at all is a :class:`ProbeError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from appliance.modem.at import CommandDone
from appliance.modem.fparams import parse_fclass, parse_range_list
from appliance.modem.serial_port import ModemError

#: our own T.30 (spandsp) runs in Class 1, with ECM and a full trace: prefer it
DEFAULT_CLASS_PREFERENCE = ("1.0", "1", "2.0", "2")
FAX_CLASSES = ("1", "1.0", "2", "2.0")


class Commander(Protocol):
    """What the probe needs of a port (``ModemPort`` has it)."""

    async def command(self, cmd: str, timeout: float = 3.0, expect: Iterable[str] = ("OK",)) -> CommandDone: ...


class ProbeError(Exception):
    """The device does not behave like a modem at all (no answer to ATZ, no fax class)."""


@dataclass
class ModemInfo:
    manufacturer: str = ""
    model: str = ""
    revision: str = ""
    classes: list[str] = field(default_factory=list)
    tx_rates: list[int] = field(default_factory=list)  # Class 1 +FTM=? modulation codes
    rx_rates: list[int] = field(default_factory=list)  # Class 1 +FRM=?
    #: every query with what came back: its information lines, or ["ERROR"] / ["timeout ..."]
    raw: dict[str, list[str]] = field(default_factory=dict)
    #: answers that did not parse (the query is then treated as unanswered)
    problems: list[str] = field(default_factory=list)

    @property
    def ident_text(self) -> str:
        """Everything the modem said about itself, for quirk matching."""
        parts = [self.manufacturer, self.model, self.revision]
        for cmd in ("ATI", "ATI3", "ATI4"):
            parts += [line for line in self.raw.get(cmd, []) if line != "ERROR" and not line.startswith("timeout")]
        return " ".join(p for p in parts if p)

    def pick_class(self, preference: Sequence[str] = DEFAULT_CLASS_PREFERENCE) -> str:
        """The first preferred class the modem offers; ProbeError naming both lists if none."""
        for wanted in preference:
            if wanted in self.classes:
                return wanted
        raise ProbeError(
            f"modem {self.describe()!r} offers classes {','.join(self.classes) or 'none'}; "
            f"none of the preferred {','.join(preference)}"
        )

    def describe(self) -> str:
        return " ".join(p for p in (self.manufacturer, self.model, self.revision) if p) or "unknown modem"

    def as_dict(self) -> dict[str, object]:
        return {
            "manufacturer": self.manufacturer,
            "model": self.model,
            "revision": self.revision,
            "classes": list(self.classes),
            "tx_rates": list(self.tx_rates),
            "rx_rates": list(self.rx_rates),
        }


#: ATI text -> manufacturer, when the modem has no +FMI? (or answers it with a chipset code)
_VENDOR_HINTS: tuple[tuple[str, str], ...] = (
    (r"U\.?\s?S\.?\s?Robotics|\bUSR\b|3Com", "USRobotics"),
    (r"MultiTech|Multi-Tech|\bMT\d{4}", "MultiTech"),
    (r"\bZoom\b", "Zoom"),
    (r"Agere|\bLT V\.9[02]|Lucent", "Agere"),
    (r"\bCX9\d{4}|Conexant", "Conexant"),
    (r"Rockwell|AC/K56", "Rockwell"),
    (r"ZyXEL", "ZyXEL"),
    (r"spandsp", "spandsp"),
)


def _value(lines: list[str]) -> str:
    """The answer of a +F identification query: '+FMI: "USR"' or 'USR' -> 'USR'."""
    text = " ".join(lines).strip()
    text = re.sub(r"^\+F[A-Z]+\s*[:=]\s*", "", text, flags=re.IGNORECASE)
    return text.strip().strip('"').strip()


async def _ask(port: Commander, info: ModemInfo, cmd: str, timeout: float) -> list[str] | None:
    """Information lines of ``cmd``, or None when the modem refused or did not answer."""
    try:
        done = await port.command(cmd, timeout=timeout)
    except ModemError as e:
        info.raw[cmd] = [e.result]
        if "device gone" in e.result or "port closed" in e.result:
            raise
        return None
    info.raw[cmd] = list(done.lines)
    return list(done.lines)


async def probe(port: Commander, timeout: float = 3.0, reset_timeout: float = 5.0) -> ModemInfo:
    """Ask the modem who it is; leaves it in Class 0 (data mode idle), like after a reset."""
    info = ModemInfo()
    try:
        await port.command("ATZ", timeout=reset_timeout)
    except ModemError as e:
        raise ProbeError(f"no answer to ATZ ({e.result}): not a modem, or wrong speed or flow control") from e
    # echo off, verbose results, results on: the channel copes with echo, but not with Q1
    await _ask(port, info, "ATE0V1Q0", timeout)
    for cmd in ("ATI", "ATI3", "ATI4"):
        await _ask(port, info, cmd, timeout)
    lines = await _ask(port, info, "AT+FCLASS=?", timeout)
    if lines:
        try:
            info.classes = parse_fclass(lines[0])
        except ValueError as e:
            info.problems.append(f"AT+FCLASS=?: {e}")
    await _identify(port, info, timeout)
    if "1" in info.classes or "1.0" in info.classes:
        cls = "1.0" if "1.0" in info.classes and "1" not in info.classes else "1"
        if await _ask(port, info, f"AT+FCLASS={cls}", timeout) is not None:
            info.tx_rates = await _rates(port, info, "AT+FTM=?", timeout)
            info.rx_rates = await _rates(port, info, "AT+FRM=?", timeout)
    await _ask(port, info, "AT+FCLASS=0", timeout)
    if not info.manufacturer:
        text = info.ident_text
        for pattern, vendor in _VENDOR_HINTS:
            if re.search(pattern, text, re.IGNORECASE):
                info.manufacturer = vendor
                break
    if not info.model:
        for cmd in ("ATI3", "ATI", "ATI4"):
            found = [
                line
                for line in info.raw.get(cmd, [])
                if line not in ("ERROR",) and not line.startswith("timeout") and not line.isdigit()
            ]
            if found:
                info.model = found[0]
                break
    return info


async def _identify(port: Commander, info: ModemInfo, timeout: float) -> None:
    """+FMI?/+FMM?/+FMR? where they work (T.31, Class 2.0), else Class 2's +FMFR?/+FMDL?/+FREV?."""
    spellings = [("", ("AT+FMI?", "AT+FMM?", "AT+FMR?"))]
    if "2.0" in info.classes:
        spellings.append(("AT+FCLASS=2.0", ("AT+FMI?", "AT+FMM?", "AT+FMR?")))
    if "2" in info.classes:
        spellings.append(("AT+FCLASS=2", ("AT+FMFR?", "AT+FMDL?", "AT+FREV?")))
    for select, cmds in spellings:
        if info.manufacturer and info.model:
            return
        if select and await _ask(port, info, select, timeout) is None:
            continue
        values = []
        for cmd in cmds:
            lines = await _ask(port, info, cmd, timeout)
            if select:  # the same query in another class: keep both answers apart
                info.raw[f"{select};{cmd}"] = info.raw.pop(cmd)
            values.append(_value(lines) if lines else "")
        info.manufacturer = info.manufacturer or values[0]
        info.model = info.model or values[1]
        info.revision = info.revision or values[2]


async def _rates(port: Commander, info: ModemInfo, cmd: str, timeout: float) -> list[int]:
    lines = await _ask(port, info, cmd, timeout)
    if not lines:
        return []
    try:
        rates = parse_range_list(lines[0])
    except ValueError as e:
        info.problems.append(f"{cmd}: {e}")
        return []
    if rates and isinstance(rates[0], set):  # "(24,48,...)" in parentheses: one set
        return sorted({rate for s in rates if isinstance(s, set) for rate in s})
    return [rate for rate in rates if isinstance(rate, int)]
