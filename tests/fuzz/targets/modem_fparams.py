"""Values in +F responses and Class 2 reports (appliance/modem/fparams.py, class2_codes.py).

Input: one response line (Latin-1, as any byte may come from a serial line; AtChannel only
passes printable ASCII, but the parsers are also handed lines by probes and tests).  Contract:
each parser returns its typed result or raises ValueError, never anything else; numbers are
non-negative and written in ASCII digits; a range list holds at most 256 values per item written
(so "(0-99999999)" cannot take the memory); session parameters are within their tables; a hang-up
key has a text.
"""
from __future__ import annotations

from appliance.modem.class2_codes import SessionParams, hangup_key, hangup_text, parse_dcs
from appliance.modem.fparams import parse_fclass, parse_fparams, parse_range_list

MAX_LEN = 512
DICTS = ("modem", "_text")
_HEX = set("0123456789abcdefABCDEF")


def _check_fparams(text: str, base: int) -> None:
    try:
        values = parse_fparams(text, base)
    except ValueError:
        return
    for v in values:
        assert isinstance(v, str) or v >= 0, (text, values)


def TestOneInput(data: bytes) -> None:
    text = data.decode("latin-1")
    for base in (10, 16):
        _check_fparams(text, base)
    try:
        ranges = parse_range_list(text)
    except ValueError:
        pass
    else:
        count = sum(len(r) if isinstance(r, set) else 1 for r in ranges)
        assert count <= 256 * (text.count(",") + 1), count
        for r in ranges:
            assert all(v >= 0 for v in (r if isinstance(r, set) else [r])), ranges
    try:
        classes = parse_fclass(text)
    except ValueError:
        pass
    else:
        assert all(c and set(c) <= set("0123456789.") for c in classes), classes
    for hex_reports in (False, True):
        try:
            p = parse_dcs(text, hex_reports)
        except ValueError:
            pass
        else:
            assert isinstance(p, SessionParams) and 0 <= p.br <= 15
            p.bit_rate, p.encoding, p.width, p.resolution  # noqa: B018 - must not raise
        try:
            key = hangup_key(text, hex_reports)
        except ValueError:
            pass
        else:
            assert key and set(key) <= _HEX, key
            assert hangup_text(key)
