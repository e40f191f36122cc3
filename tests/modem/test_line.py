"""ModemLine: rings, caller ID, answering through the class driver, the spool hooks, errors, removal.

Fast tests play the modem from a script on a real pty (RING and caller ID injected by the test);
the ``slow`` ones run on the real virtual line: spandsp T.31 on both ends, port A dialled by the
test through its own ModemPort, port B served by the ModemLine under test.  The driver here is a
small collaborator implementing the driver contract (answer with ATA, report a result); the real
Class 1/2 drivers have their own end-to-end tests.
"""
from __future__ import annotations

import asyncio
import importlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.calls import modem_line as line_mod
from appliance.calls.facts import CallFacts
from appliance.modem.driver import ModemCallResult
from appliance.calls.modem_line import (MOVES, DriverUnavailable, LineSettings, LineState, ModemLine,
                                        check_move, clean_caller_field, load_driver, short_name)
from appliance.sip.errors import LocalProtocolError
from appliance.modem.serial_port import ModemPort
from appliance.modem.virtual import LineOptions, VirtualLine

from .lines import MODEM, AnsweringDriver, Spool, dial, run, until
from .scripted import ScriptedModem
from tests.budgets import LOADED


def make_line(path: str, spool: Spool, driver: Any, **settings: Any) -> ModemLine:
    s = LineSettings(**{"flow_control": "none", "command_timeout": LOADED, **settings})
    drivers = driver if callable(driver) and not hasattr(driver, "receive") else (lambda cls: driver)
    return ModemLine(path, s, spool.begin, spool.finish, drivers=drivers)


# -- the state table ----------------------------------------------------------------------------

def test_line_states_move_as_the_theory_of_operation_says() -> None:
    S = LineState
    told = [(S.DOWN, S.PROBING), (S.PROBING, S.IDLE), (S.IDLE, S.RINGING), (S.RINGING, S.RECEIVING),
            (S.RECEIVING, S.IDLE), (S.RINGING, S.IDLE), (S.ERROR, S.PROBING)]
    told += [(s, S.DOWN) for s in S if s is not S.DOWN] + [(s, S.ERROR) for s in S if s not in (S.DOWN, S.ERROR)]
    assert set(told) <= MOVES
    for s in S:
        check_move(s, s)  # a new reason in the same state
    for bad in [(S.DOWN, S.IDLE), (S.IDLE, S.RECEIVING), (S.DOWN, S.RECEIVING), (S.RECEIVING, S.RINGING),
                (S.IDLE, S.PROBING)]:
        with pytest.raises(LocalProtocolError):
            check_move(*bad)
    assert str(S.RINGING) == "ringing"  # what status() and the dashboard show


def test_a_line_refuses_to_answer_from_down(tmp_path: Path) -> None:
    line = make_line(str(tmp_path / "none"), Spool(tmp_path), object())
    with pytest.raises(LocalProtocolError, match="down -> receiving"):
        line._set(LineState.RECEIVING, "a bug")
    assert line.state is LineState.DOWN and line.status()["state"] == "down"


# -- fast: a scripted modem on a pty ------------------------------------------------------------


def test_counts_rings_collects_caller_id_answers_and_reinitialises(tmp_path: Path) -> None:
    spool, driver = Spool(tmp_path), AnsweringDriver()

    async def main() -> None:
        modem = ScriptedModem(MODEM)
        line = make_line(modem.path, spool, driver, rings=3, ident="+1 555 0199")
        line.start()
        await until(lambda: line.state == "idle", LOADED, "idle")
        assert line.fax_class == "1.0" and line.quirks is not None and line.quirks.name == "spandsp"
        assert "AT+VCID=1" in modem.commands and modem.commands[-1] == "AT+FCLASS=1.0"
        modem.unsolicited("RING")
        modem.unsolicited("DATE = 1127", "TIME = 1646", "NMBR = 5550100", 'NAME = "ACME \';rm -rf /"',
                          "NDID=5551000", "RING")
        await until(lambda: line.rings == 2, LOADED, "two rings")
        assert line.state == "ringing" and not driver.calls
        n_before = modem.commands.count("ATZ")
        modem.unsolicited("RING")
        await until(lambda: spool.finished, LOADED, "finish")
        await until(lambda: line.state == "idle" and modem.commands.count("ATZ") > n_before, LOADED, "re-init")
        await line.stop()
        modem.close()
        assert line.state == "down" and line.port is None

    run(main())
    (caller,) = spool.begun
    assert (caller.caller_number, caller.caller_name, caller.called_number, caller.rings) == (
        "5550100", "ACME ';rm -rf /", "5551000", 3)
    assert caller.line == f"modem:{short_name(caller.device)}" and caller.raw["DATE"] == "1127"
    (call,) = driver.calls
    assert (call.caller_number, call.ident, call.tiff_path) == ("5550100", "+1 555 0199", tmp_path / "fax1.tif")
    assert spool.finished == [(1, ModemCallResult(True, CallFacts(pages=0, result_text="test driver done")))]


def test_caller_giving_up_resets_the_ring_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(line_mod, "RING_GAP", 0.3)
    spool, driver = Spool(tmp_path), AnsweringDriver()

    async def main() -> None:
        modem = ScriptedModem(MODEM)
        line = make_line(modem.path, spool, driver, rings=2)
        line.start()
        await until(lambda: line.state == "idle", LOADED)
        modem.unsolicited("NMBR=5550100", "RING")
        await until(lambda: line.state == "ringing", LOADED)
        await until(lambda: line.state == "idle" and line.rings == 0, LOADED, "caller gave up")
        modem.unsolicited("RING")  # a new call: one ring is not enough
        await until(lambda: line.rings == 1, LOADED, "the new call's ring counted")
        await asyncio.sleep(0.1)
        assert line.rings == 1 and not driver.calls
        await line.stop()
        modem.close()

    run(main())
    assert spool.begun == []


def test_driver_that_cannot_be_loaded_leaves_the_call_unanswered(tmp_path: Path) -> None:
    spool = Spool(tmp_path)

    def no_driver(cls: str) -> Any:
        raise DriverUnavailable(f"class {cls} driver appliance.modem.class1:Class1Receiver cannot be loaded")

    async def main() -> ModemLine:
        modem = ScriptedModem(MODEM)
        line = make_line(modem.path, spool, no_driver, rings=1)
        line.start()
        await until(lambda: line.state == "idle", LOADED)
        modem.unsolicited("RING")
        await until(lambda: line.state == "error", LOADED)
        status = line.status()
        await line.stop()
        modem.close()
        assert "ATA" not in modem.commands
        return status

    status = run(main())
    assert "class 1.0 driver" in status["reason"] and spool.begun == []


def test_spool_that_cannot_record_refuses_by_not_answering(tmp_path: Path) -> None:
    spool, driver = Spool(tmp_path, fail=True), AnsweringDriver()

    async def main() -> str:
        modem = ScriptedModem(MODEM)
        line = make_line(modem.path, spool, driver, rings=1)
        line.start()
        await until(lambda: line.state == "idle", LOADED)
        modem.unsolicited("RING")
        await until(lambda: line.state == "error", LOADED)
        reason = line.reason
        await line.stop()
        modem.close()
        assert "ATA" not in modem.commands
        return reason

    assert "cannot record it" in run(main()) and "No space left" in run(main())
    assert driver.calls == []


def test_a_driver_that_raises_still_reaches_finish_with_the_history(tmp_path: Path) -> None:
    spool, driver = Spool(tmp_path), AnsweringDriver(fail=True)

    async def main() -> None:
        modem = ScriptedModem(MODEM)
        line = make_line(modem.path, spool, driver, rings=1)
        line.start()
        await until(lambda: line.state == "idle", LOADED)
        modem.unsolicited("RING")
        await until(lambda: spool.finished, LOADED)
        await until(lambda: line.state == "idle", LOADED, "back to idle after the failed call")
        await line.stop()
        modem.close()

    run(main())
    ((fax_id, result),) = spool.finished
    assert fax_id == 1 and not result.complete
    assert "driver bug" in result.facts.result_text and "> ATA" in result.facts.modem_history


@pytest.mark.parametrize("answers, state, reason", [
    ({}, "error", "no answer to ATZ (ERROR)"),
    ({**MODEM, "AT+FCLASS=?": ["0,8", "OK"]}, "error", "offers classes 0,8; none of the preferred"),
    ({**MODEM, "ATM0": ["ERROR"]}, "error", "ATM0: ERROR"),
])
def test_modem_errors_are_states_with_a_reason(tmp_path: Path, answers: dict, state: str, reason: str) -> None:
    async def main() -> dict:
        modem = ScriptedModem(answers)
        line = make_line(modem.path, Spool(tmp_path), AnsweringDriver(), init=("ATM0",))
        line.start()
        await until(lambda: line.state == state, LOADED, state)
        status = line.status()
        await line.stop()
        modem.close()
        return status

    status = run(main())
    assert reason in status["reason"], status


def test_a_missing_device_is_down_until_it_appears(tmp_path: Path) -> None:
    link = tmp_path / "ttyModem"

    async def main() -> None:
        line = make_line(str(link), Spool(tmp_path), AnsweringDriver())
        line.start()
        await until(lambda: line.reason.startswith("device not present"), LOADED)
        assert line.state == "down" and line.reason == f"device not present: {link}"
        assert line.line == "modem:ttyModem"
        modem = ScriptedModem(MODEM)
        os.symlink(modem.path, link)
        line.device_added()
        await until(lambda: line.state == "idle", LOADED, "idle once the device is there")
        line.device_removed("unplugged (udev remove)")
        await until(lambda: line.state == "down", LOADED)
        assert "unplugged" in line.reason and line.port is None
        line.device_added()
        await until(lambda: line.state == "idle", LOADED, "idle again")
        await line.stop()
        modem.close()

    run(main())


def test_caller_fields_are_cleaned_and_names_safe() -> None:
    assert clean_caller_field('"O"') == "O"
    assert clean_caller_field("x" * 100) == "x" * 64
    assert clean_caller_field("A\x1b[2JB\x00") == "A[2JB"
    assert short_name("/dev/serial/by-id/usb-U.S._Robotics USB Modem_00000001-if00") == (
        "usb-U.S._Robotics_USB_Modem_00000001-if00")
    assert short_name("/dev/../etc/passwd") == "passwd"


def test_driver_registry_imports_lazily_and_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(line_mod.DRIVERS, "2", ("appliance.modem.no_such_driver", "Class2Receiver", {"variant": "2"}))
    with pytest.raises(DriverUnavailable, match=r"class 2 driver appliance.modem.no_such_driver:Class2Receiver"):
        load_driver("2")
    with pytest.raises(DriverUnavailable, match="no driver for class 8"):
        load_driver("8")


# -- slow: the real virtual line (spandsp T.31 on both ends) -------------------------------------


@pytest.mark.slow
@pytest.mark.xdist_group("modem-line")
def test_virtual_line_rings_twice_with_caller_id_then_answers(tmp_path: Path) -> None:
    spool, driver = Spool(tmp_path), AnsweringDriver()

    async def main() -> tuple[float, list[str]]:
        line = make_line(str(tmp_path / "ttyB"), spool, driver, rings=2, flow_control="rtscts")
        line.start()
        await until(lambda: line.state == "idle", LOADED, "idle")
        a, dialling = await dial(tmp_path / "ttyA")
        t0 = time.monotonic()
        await until(lambda: line.state == "ringing", LOADED, "first ring")
        await until(lambda: bool(spool.finished), LOADED, "answered and finished")
        answered_after = time.monotonic() - t0
        connect = await asyncio.wait_for(dialling, LOADED)
        assert connect.result == "CONNECT"
        await until(lambda: line.state == "idle", LOADED, "idle after the call")
        states = [line.state]
        a.close()
        await line.stop()
        return answered_after, states

    with VirtualLine(str(tmp_path / "ttyA"), str(tmp_path / "ttyB")) as vl:
        answered_after, _ = run(main(), 60)
        record = vl.calls[-1]
    assert record.answered and record.rings == 2, record  # answered on the 2nd ring, not the 1st
    assert 4.0 < answered_after < 9.0, answered_after  # rings 5 s apart
    (caller,) = spool.begun
    assert (caller.caller_number, caller.caller_name, caller.called_number) == ("5550100", "Virtual A", "5551000")
    assert caller.line == "modem:ttyB"
    assert driver.calls[0].caller_number == "5550100" and spool.finished[0][1].complete


@pytest.mark.slow
@pytest.mark.xdist_group("modem-line")
def test_device_gone_mid_call_finishes_with_the_pages_and_line_comes_back(tmp_path: Path) -> None:
    spool, driver = Spool(tmp_path), AnsweringDriver(hold=True)
    links = (str(tmp_path / "ttyA"), str(tmp_path / "ttyB"))

    async def main() -> None:
        vl = VirtualLine(*links, options=LineOptions(hangup_linger=0.5)).start_thread()
        line = make_line(links[1], spool, driver, rings=1, flow_control="rtscts")
        line.start()
        await until(lambda: line.state == "idle", LOADED, "idle")
        a, dialling = await dial(tmp_path / "ttyA")
        await until(lambda: line.state == "receiving", LOADED, "receiving")
        await until(lambda: driver.answered is not None and driver.answered.is_set(), LOADED, "ATA CONNECT")
        await asyncio.to_thread(vl.close)  # the USB modem is pulled: EIO on our side
        await until(lambda: bool(spool.finished), LOADED, "finish after the device went")
        await until(lambda: line.state == "down", LOADED, "down")
        a.close()
        dialling.cancel()
        assert not os.path.exists(links[1])
        vl2 = VirtualLine(*links).start_thread()  # plugged in again
        try:
            await until(lambda: line.state == "idle", LOADED, "idle on the returned device")
        finally:
            await line.stop()
            await asyncio.to_thread(vl2.close)

    run(main(), 60)
    ((fax_id, result),) = spool.finished
    assert fax_id == 1 and not result.complete and result.facts.pages == 1
    assert "device gone" in result.facts.result_text


def test_stop_mid_call_ends_it_through_device_gone_and_keeps_the_pages(tmp_path: Path) -> None:
    spool, driver = Spool(tmp_path), AnsweringDriver(hold=True)

    async def main() -> None:
        modem = ScriptedModem(MODEM)
        line = make_line(modem.path, spool, driver, rings=1)
        line.start()
        await until(lambda: line.state == "idle", LOADED)
        modem.unsolicited("RING")
        await until(lambda: driver.answered is not None and driver.answered.is_set(), LOADED, "answered")
        await line.stop()
        modem.close()
        assert line.state == "down" and line.reason == "stopped"

    run(main())
    ((_, result),) = spool.finished
    assert result.facts == CallFacts(pages=1, result_text="device gone: appliance shutting down")


def test_an_idle_modem_that_goes_silent_is_found_and_reinitialised(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(line_mod, "IDLE_CHECK", 0.2)

    async def main() -> None:
        modem = ScriptedModem(MODEM)
        # the AT timeout is what this test is about: short, and only a silent modem reaches it
        line = make_line(modem.path, Spool(tmp_path), AnsweringDriver(), command_timeout=1.0)
        line.start()
        await until(lambda: line.state == "idle", LOADED)
        await until(lambda: "AT" in modem.commands, LOADED, "health check")
        modem.answers["AT"] = []  # the modem stops answering
        await until(lambda: line.state == "error", LOADED, "error")
        assert "AT: timeout" in line.reason
        modem.answers["AT"] = ["OK"]
        await until(lambda: line.state == "idle", LOADED, "re-initialised")
        await line.stop()
        modem.close()

    run(main())


def test_a_failing_modem_is_retried_with_growing_backoff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(line_mod, "BACKOFF_MIN", 0.05)
    monkeypatch.setattr(line_mod, "BACKOFF_MAX", 0.2)
    opened: list[float] = []

    async def opener(path: str, speed: int, flow: Any) -> ModemPort:
        opened.append(time.monotonic())
        return await ModemPort.open(path, baudrate=speed, flow=flow)

    async def main() -> None:
        modem = ScriptedModem({**MODEM, "AT+FCLASS=1.0": ["ERROR"]})  # init fails every time
        line = ModemLine(modem.path, LineSettings(flow_control="none", command_timeout=LOADED),
                         Spool(tmp_path).begin, Spool(tmp_path).finish, opener=opener)
        line.start()
        await until(lambda: len(opened) >= 5, LOADED, "five attempts")
        assert line.state in ("error", "probing") and line.status()["class"] == "1.0"
        modem.answers["AT+FCLASS=1.0"] = ["OK"]  # fixed (a firmware hiccup)
        await until(lambda: line.state == "idle", LOADED, "idle once it works")
        await line.stop()
        modem.close()

    run(main())
    gaps = [b - a for a, b in zip(opened, opened[1:])]
    assert gaps[0] < gaps[2] and all(g < 1.0 for g in gaps), gaps  # 0.05, 0.1, 0.2, 0.2 ...


@pytest.mark.parametrize("fax_class, module, variant", [
    ("1", "appliance.modem.class1", None), ("1.0", "appliance.modem.class1", None),
    ("2", "appliance.modem.class2", "2"), ("2.0", "appliance.modem.class2", "2.0"),
])
def test_registry_builds_the_real_drivers_where_they_exist(fax_class: str, module: str, variant: str | None) -> None:
    importlib.import_module(module)  # in the tree: failing to import is a bug, not a reason to skip
    driver = load_driver(fax_class)
    assert callable(getattr(driver, "receive", None))
    if variant is not None:
        assert driver.variant == variant  # type: ignore[attr-defined]
