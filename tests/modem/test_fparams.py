"""+F response values and DLE stuffing helpers."""
from __future__ import annotations

import random

import pytest

from appliance.modem.at import dle_stuff, dle_unstuff, parse_fclass, parse_fparams, parse_range_list


@pytest.mark.parametrize("text,values", [
    ("+FCS:1,5,0,2,0,0,0,0", [1, 5, 0, 2, 0, 0, 0, 0]),
    ("+FDCS: 1, 3, 0, 2, 0, 0, 0, 0", [1, 3, 0, 2, 0, 0, 0, 0]),
    ("1,5,0,2", [1, 5, 0, 2]),
    ('+FCI:"    5550100"', ["    5550100"]),
    ('+FTSI:"+1 555, 0100"', ["+1 555, 0100"]),
    ("+FPTS:1,2376,0,0", [1, 2376, 0, 0]),
    ("+FHNG:0", [0]),
    ("+FDCS:1,,0", [1, "", 0]),
])
def test_parse_fparams(text, values):
    assert parse_fparams(text) == values


def test_parse_fparams_hex_for_class20():
    assert parse_fparams("+FCS:0,5,0,2,0,0,0,0,0A", base=16)[-1] == 10


@pytest.mark.parametrize("text", ["+FCS:1,x,0", "+FCS:1;2", "+FPTS:1.5"])
def test_parse_fparams_rejects_junk(text):
    with pytest.raises(ValueError, match="not a"):
        parse_fparams(text)


def test_parse_range_list_plain_and_sets():
    assert parse_range_list("24,48,72,73,74,96,97,98,121,122,145,146") == [24, 48, 72, 73, 74, 96, 97, 98, 121, 122, 145, 146]
    assert parse_range_list("146,24,48") == [24, 48, 146]
    assert parse_range_list("(0-1),(0-5)") == [{0, 1}, {0, 1, 2, 3, 4, 5}]
    assert parse_range_list("+FCC:(0,1),(0-5),(0-2),(0),(0-7)") == [{0, 1}, set(range(6)), {0, 1, 2}, {0}, set(range(8))]
    assert parse_range_list("(0-3)") == [{0, 1, 2, 3}]
    assert parse_range_list("(0-2,5)") == [{0, 1, 2, 5}]


@pytest.mark.parametrize("text", ["(5-1)", "24,4x", "(a-b)z"])
def test_parse_range_list_rejects_junk(text):
    with pytest.raises(ValueError):
        parse_range_list(text)


def test_parse_fclass():
    assert parse_fclass("0,1,1.0,2,2.0") == ["0", "1", "1.0", "2", "2.0"]
    assert parse_fclass("(0,1,2,8)") == ["0", "1", "2", "8"]
    assert parse_fclass("+FCLASS: 0, 1, 1.0") == ["0", "1", "1.0"]
    assert "1.0" in parse_fclass("0,1,1.0") and "2" not in parse_fclass("0,1,1.0")
    with pytest.raises(ValueError):
        parse_fclass("0,1,X")


def test_dle_stuff_and_unstuff():
    assert dle_stuff(b"\x00\x10\x03") == b"\x00\x10\x10\x03"
    assert dle_stuff(b"\x10\x10", sub=True) == b"\x10\x1a"
    assert dle_unstuff(b"a\x10\x10b\x10\x1ac") == b"a\x10b\x10\x10c"
    assert dle_unstuff(b"a\x10!b") == b"ab"  # a command pair is not data
    rng = random.Random(7)
    for _ in range(200):
        data = bytes(rng.choice([0x10, 0x03, 0x1A, 0xFF, 0x00]) for _ in range(rng.randint(0, 40)))
        for sub in (False, True):
            stuffed = dle_stuff(data, sub=sub)
            assert dle_unstuff(stuffed) == data
            assert b"\x10\x03" not in stuffed.replace(b"\x10\x10", b"")  # no false end of block


# Found by the fuzz target modem_fparams: int() took signs, "1_0" and other scripts' digits, and a
# range was expanded whatever its width ("(0-99999999)" from a modem would take gigabytes).
@pytest.mark.parametrize("text,base", [
    ("+FCS:1,-5,0", 10), (",-80,,A", 16), ("+FPS:+1", 10), ("1_0", 10), ("\u0663", 10), ("+FPS:1,86C,0,0,0", 10),
])
def test_parse_fparams_takes_unsigned_ascii_digits_only(text, base):
    with pytest.raises(ValueError, match="not a"):
        parse_fparams(text, base)


@pytest.mark.parametrize("text", ["(0-100000)", "(0-256)", "0-300", "(000111,,1111,,1,,-5),(0,0,1)", "(\u0661-3)"])
def test_parse_range_list_refuses_negative_foreign_or_too_wide_ranges(text):
    with pytest.raises(ValueError, match="not a value range"):
        parse_range_list(text)


def test_parse_range_list_keeps_ranges_up_to_256_values():
    assert parse_range_list("(0-255)") == [set(range(256))]


def test_parse_fclass_takes_ascii_digits_only():
    with pytest.raises(ValueError, match="not a service class"):
        parse_fclass("0,1,\u0663")
