"""The one strict number reader: ASCII digits only, bounded, in range."""
import pytest

from appliance.strictnum import NumberError, ascii_digits, is_uint, parse_uint


@pytest.mark.parametrize("text", ["²", "٣", "1²", " 1", "1 ", "+1", "-1", "1_0", "", "0x10", "1.0", "１"])
def test_refuses_anything_but_ascii_digits(text):
    with pytest.raises(NumberError):
        parse_uint(text, 1000)
    assert not is_uint(text, 1000)


def test_range_and_name_in_message():
    assert parse_uint("0060", 255) == 60
    assert parse_uint(b"65535", 65535) == 65535
    with pytest.raises(NumberError, match=r"Max-Forwards: 256 is out of range 0\.\.255"):
        parse_uint("256", 255, name="Max-Forwards")
    with pytest.raises(NumberError, match="port"):
        parse_uint("0", 65535, name="port", min_value=1)


def test_length_is_bounded_before_int():
    assert not ascii_digits("0" * 100)
    with pytest.raises(NumberError):
        parse_uint("0" * 100 + "1", 10)
    assert parse_uint("0" * 20 + "1", 10, max_digits=30) == 1
