"""The [modem] section: defaults, a full example, and every bad value named by its key."""
from __future__ import annotations

import pytest

from appliance.config import Config, ConfigError


def test_defaults_prefer_class_1_and_answer_after_two_rings() -> None:
    m = Config.from_dict({}).modem
    assert m.devices == [] and m.class_preference == ["1.0", "1", "2.0", "2"]
    assert (m.rings, m.speed, m.flow_control, m.caller_id, m.auto_adopt, m.ecm) == (
        2, 115200, "rtscts", True, False, True)
    assert m.ident == "" and m.init == []


def test_full_example_loads(tmp_path) -> None:
    f = tmp_path / "faxbridge.toml"
    f.write_text("""
[fax]
ident = "+1 555 0100"
[modem]
devices = ["/dev/serial/by-id/usb-USRobotics_USB_Modem-if00", "/dev/ttyUSB1"]
class_preference = ["2.0", "1"]
rings = 4
init = ["ATM0", "AT&K3"]
ident = "+1 555 0199"
caller_id = false
speed = 38400
flow_control = "xonxoff"
auto_adopt = true
ecm = false
""")
    m = Config.load(f).modem
    assert m.devices[0].endswith("if00") and m.class_preference == ["2.0", "1"]
    assert (m.rings, m.init, m.ident, m.caller_id, m.speed, m.flow_control, m.auto_adopt, m.ecm) == (
        4, ["ATM0", "AT&K3"], "+1 555 0199", False, 38400, "xonxoff", True, False)


@pytest.mark.parametrize("modem, expected", [
    ({"device": "/dev/ttyUSB0"}, "modem.device: unknown key"),
    ({"devices": "/dev/ttyUSB0"}, "modem.devices: expected a list of a string"),
    ({"devices": ["ttyUSB0"]}, "modem.devices[0]: 'ttyUSB0' is not an absolute device path"),
    ({"devices": ["/dev/ttyUSB0", "/dev/ttyUSB0"]}, "modem.devices[1]: '/dev/ttyUSB0' is listed twice"),
    ({"class_preference": ["1", "3"]}, "modem.class_preference: each entry one of 1, 1.0, 2, 2.0, not '3'"),
    ({"class_preference": [1.0]}, "modem.class_preference: expected a list of a string"),
    ({"class_preference": []}, "modem.class_preference"),
    ({"class_preference": ["1", "1"]}, "modem.class_preference: a class is listed twice"),
    ({"rings": 0}, "modem.rings: must be between 1 and 10"),
    ({"rings": 11}, "modem.rings: must be between 1 and 10"),
    ({"rings": "2"}, "modem.rings: expected an integer"),
    ({"init": ["M0"]}, "modem.init[0]"),
    ({"init": ["ATM0\rATH"]}, "modem.init[0]"),
    ({"ident": "FAXBRIDGE"}, "modem.ident"),
    ({"caller_id": "yes"}, "modem.caller_id: expected true or false"),
    ({"speed": 12345}, "modem.speed: must be one of"),
    ({"flow_control": "hardware"}, "modem.flow_control: must be rtscts, xonxoff or none"),
    ({"auto_adopt": 1}, "modem.auto_adopt: expected true or false"),
])
def test_bad_values_name_the_key(modem: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"modem": modem})
    assert any(expected in e for e in err.value.errors), err.value.errors


def test_the_readme_modem_example_loads() -> None:
    import re
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if b.startswith("[modem]")]
    m = Config.from_dict(tomllib.loads(block)).modem
    assert m.devices[0].startswith("/dev/serial/by-id/") and m.rings == 2
