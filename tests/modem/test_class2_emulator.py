"""The virtual Class 2.0 modem: its AT subset, a whole call in memory against a spandsp sender
(pages decoded back pixel for pixel), and the class switch on a real virtual-line pty."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.fax.pages import read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.modem.at import AtChannel, CommandDone, DataEnd, DataReceived, DataResult
from appliance.modem.class2_emulator import Class2Modem, Phase, dcs_coding
from appliance.sip.errors import LocalProtocolError
from appliance.modem.virtual import LineOptions, VirtualLine
from appliance.spandsp.audio import AudioFaxTerminal
from appliance.spandsp.t31 import CallEvent, Control, ModemLine, T31Modem
from appliance.spandsp.t4 import T4Receiver, reverse_bits

from .test_virtual_line import Dte
from tests.budgets import LOADED


def _cmd(m: Class2Modem, line: str) -> bytes:
    m.at_rx(line.encode() + b"\r")
    return m.take_output()


def test_at_subset_answers() -> None:
    m = Class2Modem()
    try:
        assert _cmd(m, "ATE0") == b"ATE0\r\r\nOK\r\n"  # echo is on until ATE0
        assert _cmd(m, "AT+FCLASS=?") == b"\r\n0,1,1.0,2,2.0\r\n\r\nOK\r\n"
        assert _cmd(m, "AT+FCLASS=2.0") == b"\r\nOK\r\n"
        assert _cmd(m, "AT+FCLASS?") == b"\r\n2.0\r\n\r\nOK\r\n"
        assert _cmd(m, 'AT+FLI="ME 1"') == b"\r\nOK\r\n" and b'"ME 1"' in _cmd(m, "AT+FLI?")
        assert _cmd(m, "AT+FCC=1,5,0,2,0,1,0,0") == b"\r\nOK\r\n"
        assert b"1,5,0,2,0,1,0,0" in _cmd(m, "AT+FCC?")
        assert _cmd(m, "AT+FBO=1;+FCR=1;+FAA=0;+FNR=1,1,1,0;+FIE=0;+FPS=1") == b"\r\nOK\r\n"
        assert b"spandsp" in _cmd(m, "AT+FMI?") and b"Class 2.0" in _cmd(m, "ATI")
        assert _cmd(m, "AT+FOO=1") == b"\r\nERROR\r\n"
        assert _cmd(m, "ATD") == b"\r\nERROR\r\n"  # nothing to dial
        assert _cmd(m, "ATDT555 1234") == b""  # the line rings the far end; the result waits
        ev = m.next_event()
        assert ev is not None and ev.op is Control.CALL and ev.number == "5551234"
        m.call_event(CallEvent.BUSY)
        assert m.take_output() == b"\r\nBUSY\r\n" and m.phase is Phase.IDLE
        assert _cmd(m, "AT+FDT") == b"\r\nERROR\r\n"  # no call
        assert _cmd(m, "AT+FDR") == b"\r\nERROR\r\n"  # no call
        assert _cmd(m, "ATV0") == b"0\r" and _cmd(m, "AT+FOO") == b"4\r"
        m.at_rx(b"\x12\x18garbage\rATV1\r")  # control bytes and a non-AT line are ignored
        assert m.take_output() == b"\r\nOK\r\n"
        assert m.handoff is None
        m.at_rx(b"AT+FCLASS=1\r")  # leaving Class 2: the T.31 modem must execute it
        assert m.handoff == "AT+FCLASS=1" and m.take_output() == b""
        m.call_event(CallEvent.ALERTING)
        assert m.take_output() == b"\r\nRING\r\n"
    finally:
        m.close()


def test_ata_before_ring_waits_and_an_illegal_phase_move_is_our_bug() -> None:
    m = Class2Modem()
    try:
        _cmd(m, "ATE0")
        _cmd(m, "AT+FCLASS=2.0")
        m.at_rx(b"ATA\r")
        assert m.phase is Phase.WAITING and m.take_output() == b""  # answered when it rings
        m.call_event(CallEvent.ALERTING)
        assert m.phase is Phase.ANSWERING
        with pytest.raises(LocalProtocolError, match="answering -> waiting"):
            m._move(Phase.WAITING)
        assert m.phase is Phase.ANSWERING
    finally:
        m.close()


def test_forced_port_offers_only_class2() -> None:
    m = Class2Modem(forced=True)
    try:
        assert b"\r\n2,2.0\r\n" in _cmd(m, "AT+FCLASS=?")
        assert _cmd(m, "AT+FCLASS=1").endswith(b"ERROR\r\n")
        assert _cmd(m, "ATZ").endswith(b"OK\r\n") and m.handoff is None
    finally:
        m.close()


def test_dcs_coding() -> None:
    assert dcs_coding(bytes.fromhex("ff1383006200")) == 0
    assert dcs_coding(bytes.fromhex("ff138300e2")) == 1
    assert dcs_coding(bytes.fromhex("ff13830062f844")) == 3


def _in_memory_call(tmp_path: Path, variant: str, fbo: int, ecm: bool):
    """A spandsp sender against the emulator; the DTE side is an AtChannel (what our driver uses)."""
    pages = demo_pages(2)
    write_fax_tiff(pages, tmp_path / "src.tif")
    sender = AudioFaxTerminal(calling=True, tx_file=tmp_path / "src.tif", ident="SENDER 9", ecm=ecm)
    m = Class2Modem(name="b")
    dte = AtChannel()
    a_t31, b_t31 = T31Modem(), T31Modem()
    events: list = []
    line: ModemLine | None = None

    def run(cmd: str, seconds: float = 60.0) -> list:
        dte.send(cmd, 5.0, now=0.0)
        m.at_rx(dte.data_to_send())
        got: list = []
        for _ in range(int(seconds / 0.02)):
            dte.receive(m.take_output(), 0.0)
            while (ev := dte.next_event()) is not None:
                got.append(ev)
            if any(isinstance(e, (CommandDone, DataResult)) and e.result != "CONNECT" for e in got):
                return got
            if line is not None:
                line.step(160)
        raise AssertionError(f"{cmd}: no final result; {got}")

    try:
        for c in ("ATE0", f"AT+FCLASS={variant}", f"AT+FCC=1,5,0,2,0,{int(ecm)},0,0" if variant == "2.0"
                  else f"AT+FDCC=1,5,0,2,0,{int(ecm)},0,0", f"AT+FBO={fbo}" if variant == "2.0" else f"AT+FBOR={fbo}"):
            assert run(c)[-1].result == "OK", c
        m.call_event(CallEvent.ALERTING)
        m.take_output()
        dte.send("ATA", 60.0, now=0.0)
        m.at_rx(dte.data_to_send())
        assert m.next_event().op is Control.ANSWER and m.fax_state is not None
        line = ModemLine(a_t31, b_t31)
        line.set_fax_end(0, sender._fax)
        line.set_fax_end(1, m.fax_state)
        got: list = []
        for _ in range(3000):
            line.step(160)
            dte.receive(m.take_output(), 0.0)
            while (ev := dte.next_event()) is not None:
                got.append(ev)
            if got:
                break
        events.append(got)
        data_pages = []
        while True:
            evs = run("AT+FDR")
            events.append(evs)
            if evs[0].result != "CONNECT":
                break
            data_pages.append(b"".join(e.data for e in evs if isinstance(e, DataReceived)))
            assert any(isinstance(e, DataEnd) for e in evs)
        return pages, events, data_pages, sender
    finally:
        if line is not None:
            line.close()
        m.close()


@pytest.mark.parametrize("variant,fbo,ecm", [("2.0", 0, False), ("2", 1, False), ("2.0", 0, True)],
                         ids=["class2.0", "class2-reversed", "class2.0-ecm"])
def test_whole_call_in_memory_pages_pixel_for_pixel(tmp_path: Path, variant: str, fbo: int, ecm: bool) -> None:
    pages, events, data_pages, sender = _in_memory_call(tmp_path, variant, fbo, ecm)
    ata = events[0][0]
    names = ("+FCO", "+FTI", "+FCS") if variant == "2.0" else ("+FCON", "+FTSI", "+FDCS")
    assert ata.result == "OK" and ata.lines[0] == names[0] and ata.lines[1] == f'{names[1]}:"SENDER 9"'
    fcs = [int(x) for x in ata.lines[2].split(":")[1].split(",")]
    assert fcs[0] == 1 and fcs[1] == 5 and fcs[5] == int(ecm)
    fet = [re.search(r"\+FET:(\d)", " ".join(e.lines)).group(1) for evs in events[1:-1] for e in evs
           if isinstance(e, DataResult)]
    assert fet == ["0", "2"]
    final = events[-1][0]
    assert final.lines == [("+FHS:00" if variant == "2.0" else "+FHNG:0")] and final.result == "OK"
    assert len(data_pages) == 2
    encoding = {0: 1, 1: 2, 3: 3}[fcs[4]]
    with T4Receiver(tmp_path / "out.tif") as rx:
        for data in data_pages:
            rx.start_page(encoding)
            rx.put(reverse_bits(data) if fbo else data)
            assert rx.end_page().bad_rows == 0
    for sent, got in zip(pages, read_pages(tmp_path / "out.tif")):
        assert sent.convert("L").tobytes() == got.tobytes()
    assert sender.stats().pages_tx == 2


def test_fclass_switch_on_a_virtual_port(tmp_path: Path) -> None:
    with VirtualLine(str(tmp_path / "A"), str(tmp_path / "B")) as ln:
        d = Dte(tmp_path / "B")
        try:
            assert ln.wait_for(lambda l: l.b.present, LOADED)
            assert d.command("ATE0").endswith(b"OK\r\n")
            assert b"0,1,1.0,2,2.0" in d.command("AT+FCLASS=?")
            assert d.command("AT+FCLASS=2.0") == b"\r\nOK\r\n"
            assert ln.b.modem is ln.b.class2
            assert b"Class 2.0" in d.command("ATI")
            assert b"2.0" in d.command("AT+FCLASS?")
            assert d.command("AT+FCLASS=1").endswith(b"OK\r\n")
            assert ln.b.modem is ln.b.t31
            assert b"spandsp" in d.command("ATI") and b"24,48" in d.command("AT+FTM=?")
            assert d.command("AT+FCLASS=2").endswith(b"OK\r\n") and ln.b.modem is ln.b.class2
            assert d.command("ATZ").endswith(b"OK\r\n") and ln.b.modem is ln.b.t31
        finally:
            d.close()


def test_forced_class2_port_and_cli_flag(tmp_path: Path) -> None:
    with VirtualLine(str(tmp_path / "A"), str(tmp_path / "B"), options=LineOptions(class2="B")) as ln:
        d = Dte(tmp_path / "B")
        try:
            assert b"2,2.0" in d.command("AT+FCLASS=?") and ln.b.modem is ln.b.class2
        finally:
            d.close()
    with pytest.raises(ValueError):
        LineOptions(class2="C")
    proc = subprocess.run([sys.executable, "-m", "appliance", "virtual-modem", "--help"], capture_output=True,
                          text=True, timeout=30)
    assert "--class2" in proc.stdout
