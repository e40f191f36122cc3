"""Probing: the recorded dialogues played by a modem on a real pty, and the real spandsp T.31."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.modem.probe import ModemInfo, ProbeError, probe
from appliance.modem.serial_port import ModemPort
from appliance.modem.virtual import VirtualLine

from .dialogue import DIALOGUES
from .scripted import ScriptedModem, answers_from
from tests.budgets import LOADED


def run(coro, timeout: float = LOADED):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def probe_script(answers: dict[str, list[str]], echo: bool = True) -> tuple[ModemInfo, list[str]]:
    async def main() -> tuple[ModemInfo, list[str]]:
        modem = ScriptedModem(answers, echo=echo)
        port = await ModemPort.open(modem.path, flow="none")
        try:
            return await probe(port, timeout=LOADED), modem.commands
        finally:
            port.close()
            modem.close()
    return run(main())


def test_usr5637_identifies_itself_with_fmi_and_offers_class_1_0() -> None:
    info, sent = probe_script(answers_from(DIALOGUES / "usr5637.txt"))
    assert (info.manufacturer, info.model, info.revision) == ("U.S. Robotics", "56K FAX USB", "V1.2.23")
    assert info.classes == ["0", "1", "1.0", "2", "8"]
    assert info.pick_class() == "1.0"
    # FTM answered after AT+FCLASS=1 is not in the dialogue (only =1.0 was): ERROR, so no rates
    assert sent[:2] == ["ATZ", "ATE0V1Q0"] and sent[-1] == "AT+FCLASS=0"
    assert info.raw["ATI"] == ["ERROR"]  # tolerated


def test_usr_rates_come_from_class_1() -> None:
    answers = answers_from(DIALOGUES / "usr5637.txt")
    answers["AT+FCLASS=1"] = ["OK"]
    answers["AT+FRM=?"] = ["24,48,72,73,74,96,97,98,121,122,145,146", "OK"]
    info, _ = probe_script(answers)
    assert info.tx_rates == [24, 48, 72, 73, 74, 96, 97, 98, 121, 122, 145, 146]
    assert info.rx_rates == info.tx_rates


def test_zoom_conexant_has_no_model_query_so_ati3_names_it() -> None:
    info, sent = probe_script(answers_from(DIALOGUES / "zoom3095_conexant.txt"))
    assert info.manufacturer == "CONEXANT"
    assert info.model == "CX93001-EIS_V0.2013-V92"
    assert "AT+FMFR?" in sent  # Class 2 spelling tried after +FMM? failed
    assert info.pick_class() == "1.0"
    assert info.pick_class(["2", "1"]) == "2"


def test_multitech_class_2_0_only_preference() -> None:
    info, _ = probe_script(answers_from(DIALOGUES / "multitech_mt5634zba.txt"))
    assert info.manufacturer == "MultiTech"  # from "MT5634ZBA" in ATI3
    assert "MT5634ZBA" in info.model
    assert info.pick_class(["2.0"]) == "2.0"


def test_agere_answers_nothing_but_ati3_and_fclass() -> None:
    info, _ = probe_script(answers_from(DIALOGUES / "agere.txt"))
    assert info.manufacturer == "Agere" and info.model == "Agere SoftModem Version 2.1.80"
    assert info.classes == ["0", "1", "8"]
    assert info.tx_rates == [24, 48, 72, 73, 74, 96, 97, 98, 121, 122, 145, 146]
    assert info.pick_class() == "1"
    with pytest.raises(ProbeError, match=r"offers classes 0,1,8; none of the preferred 2.0,2"):
        info.pick_class(["2.0", "2"])


def test_no_answer_to_atz_is_a_probe_error_naming_the_cause() -> None:
    with pytest.raises(ProbeError, match=r"no answer to ATZ \(ERROR\)"):
        probe_script({})


def test_malformed_fclass_answer_is_recorded_not_raised() -> None:
    info, _ = probe_script({"ATZ": ["OK"], "AT+FCLASS=?": ["0,1,banana", "OK"]})
    assert info.classes == [] and "banana" in info.problems[0]
    with pytest.raises(ProbeError, match="offers classes none"):
        info.pick_class()


def test_spandsp_t31_on_the_virtual_line(tmp_path: Path) -> None:
    async def main() -> ModemInfo:
        port = await ModemPort.open(str(tmp_path / "ttyB"), flow="rtscts")
        try:
            return await probe(port, timeout=LOADED)
        finally:
            port.close()

    with VirtualLine(str(tmp_path / "ttyA"), str(tmp_path / "ttyB")):
        info = run(main())
    # spandsp's T.31 offers 0, 1, 1.0; the virtual modem adds its Class 2.0 emulator (and 2)
    assert info.classes == ["0", "1", "1.0", "2", "2.0"]
    # what spandsp 0.0.6 really answers to +FMI?/+FMM?/+FMR? (and ATI4 is ERROR: tolerated)
    assert (info.manufacturer, info.model, info.revision) == ("www.soft-switch.org", "spandsp", "0.0.6")
    assert info.raw["ATI4"] == ["ERROR"]
    assert 146 in info.tx_rates and 146 in info.rx_rates
    assert info.pick_class() == "1.0"
    assert info.pick_class(["2.0", "1"]) == "2.0"


def test_cli_modem_probe_reports_the_virtual_modem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli import main

    with VirtualLine(str(tmp_path / "ttyA"), str(tmp_path / "ttyB")):
        rc = main(["modem-probe", str(tmp_path / "ttyB")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "modem:    www.soft-switch.org spandsp 0.0.6" in out and "class:    1.0" in out
    assert "quirks:   spandsp" in out
    assert main(["modem-probe", str(tmp_path / "nothing")]) == 1
    assert f"cannot open {tmp_path / 'nothing'}" in capsys.readouterr().err
