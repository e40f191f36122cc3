"""The quirks table: the probed dialogues land on the HylaFAX prototype they belong to."""
from __future__ import annotations

import pytest

from appliance.modem.probe import ModemInfo
from appliance.modem.quirks import KNOWN_FLAGS, RULES, QuirkRule, Quirks, quirks_for


def info(manufacturer: str = "", model: str = "", ati3: str = "") -> ModemInfo:
    return ModemInfo(manufacturer=manufacturer, model=model, raw={"ATI3": [ati3]} if ati3 else {})


@pytest.mark.parametrize("modem, name", [
    (info("U.S. Robotics", "56K FAX USB"), "usr"),
    (info("3Com U. S. Robotics", "3CP5610"), "usr"),
    (info("MultiTech", "LT V.92 1.0 MT5634ZBAV92 Serial Data/Fax Modem Version 1.25q"), "lucent"),
    (info("Agere", "Agere SoftModem Version 2.1.80"), "lucent"),
    (info("CONEXANT", "CX93001-EIS_V0.2013-V92"), "conexant"),
    (info("ROCKWELL", "AC/K56"), "rockwell"),
    (info("Multi-Tech", "MT1432BA"), "multitech-class2"),
    (info("www.soft-switch.org", "spandsp", ), "spandsp"),
    (info("", "", ati3="Some Unknown Modem 1.0"), "generic"),
])
def test_each_modem_gets_its_prototype(modem: ModemInfo, name: str) -> None:
    assert quirks_for(modem).name == name


def test_usr_sets_hardware_flow_again_and_avoids_frs() -> None:
    q = quirks_for(info("U.S. Robotics", "56K FAX USB"))
    assert q.flow_command("rtscts") == "AT&H1" and q.flow_command("xonxoff") == "AT&H2"
    assert {"no_frs", "reassert_flow_after_fclass"} <= q.flags
    assert q.caller_id == "AT+VCID=1" and "usr-rts" in q.source


def test_rockwell_caller_id_and_bit_order() -> None:
    q = quirks_for(info("ROCKWELL", "AC/K56"))
    assert q.caller_id == "AT#CID=1"
    assert "class2_bit_order_reversed" in q.flags and q.flow_command("rtscts") == "AT&K3"


def test_generic_sends_no_vendor_commands() -> None:
    q = quirks_for(info())
    assert q.init == () and q.flow_command("rtscts") is None and q.answer_command == "ATA"


def test_every_rule_uses_known_flags_and_at_commands() -> None:
    for rule in RULES:
        assert rule.quirks.flags <= KNOWN_FLAGS, rule.quirks.name
        for cmd in (*rule.quirks.init, rule.quirks.caller_id, *rule.quirks.flow.values()):
            assert cmd.upper().startswith("AT") and "\r" not in cmd, (rule.quirks.name, cmd)
        assert rule.quirks.source


def test_a_new_rule_with_a_typo_in_a_flag_is_refused() -> None:
    rules = [QuirkRule(Quirks("typo", flags=frozenset({"needs_ftm_dealy"})))]
    with pytest.raises(ValueError, match="needs_ftm_dealy"):
        quirks_for(info(), rules)


def test_extending_the_table_first_match_wins() -> None:
    mine = QuirkRule(Quirks("mine", init=("AT&F1",)), manufacturer="U.S. Robotics")
    assert quirks_for(info("U.S. Robotics"), [mine, *RULES]).name == "mine"
