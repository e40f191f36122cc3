"""Class1FrontEnd, sans-I/O, on a fake clock: no real time passes in any test here.

Two kinds.  The recorded dialogues (the same recordings test_class1_dialogues.py plays on a pty)
are replayed in-process by ``class1_sim.Sim``: every byte the front-end writes must equal the
recording, the call must end the same way, and the simulated times of the writes show the timing
rules.  The rules one by one run against a fake T.30 terminal, answering the front-end's commands
by hand and stepping the clock to each timer.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from appliance.fax.pages import STANDARD, read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.modem.at import CommandDone, DataReceived, DataResult, DeviceGone, ModemError, Unsolicited
from appliance.modem.class1_frontend import (ABORT, TICK, Class1FrontEnd, Command, CommandEnded,
                                             EndDataPhase, SendCommand, Stage, TimePassed, WriteData,
                                             WriteEnded)
from appliance.modem.dle import DLE, ETX
from appliance.sip.errors import LocalProtocolError
from appliance.spandsp.frontend import FrontEndTerminal, Modem, SendHdlc, SetRx, SetTx, Signal

from .class1_sim import Sim
from .record_class1 import ECM_PAGES, RX_IDENT, SETUP, TX_IDENT
from .replay import Chunk, load, merge

DIALOGUES = Path(__file__).parent / "dialogues"


# -- recorded dialogues on the fake clock ---------------------------------------------------

def _receive(tmp_path: Path, script: list[Chunk], quirks: frozenset[str] = frozenset()) -> tuple[Sim, Class1FrontEnd, FrontEndTerminal]:
    sim = Sim(script)
    for cmd in SETUP:
        sim.command(cmd)
    sim.wait_for("RING", 2)
    term = FrontEndTerminal(calling=False, ident=RX_IDENT, ecm=True, rx_file=str(tmp_path / "rx.tif"))
    fe = Class1FrontEnd(term, "ATA", sim.now, max_duration=120, quirks=quirks)
    sim.run(fe)
    term.close()
    fe.hang_up(sim.now, data_phase_open=sim.channel.busy)
    sim.run(fe)
    return sim, fe, term


@pytest.mark.parametrize("name,pages,ecm", [("class1_receive_ecm.json.gz", 2, True),
                                             ("class1_receive_efax.json.gz", 1, False)])
def test_receiver_replays_a_recorded_call_on_a_fake_clock(tmp_path: Path, name: str, pages: int, ecm: bool) -> None:
    t0 = time.perf_counter()
    sim, fe, term = _receive(tmp_path, load(DIALOGUES / name))
    real = time.perf_counter() - t0
    assert sim.modem.finished, f"stopped at chunk {sim.modem.position} of {len(sim.modem.script)}"
    assert term.finished is not None and term.finished.ok, term.finished
    assert fe.end_reason == "fax session ended" and fe.stage is Stage.DONE
    stats = term.stats()
    assert stats.pages_rx == pages and bool(stats.ecm) is ecm
    assert len(read_pages(tmp_path / "rx.tif")) == pages
    assert real < 10.0, f"{real:.2f} s of real time for {sim.now:.1f} simulated seconds"


def test_sender_replays_a_recorded_ecm_call_on_a_fake_clock(tmp_path: Path) -> None:
    src = tmp_path / "send.tif"
    write_fax_tiff(demo_pages(ECM_PAGES["count"], ECM_PAGES["dpi"], seed=ECM_PAGES["seed"]), src, STANDARD)
    sim = Sim(load(DIALOGUES / "class1_send_ecm.json.gz"))
    for cmd in SETUP:
        sim.command(cmd)
    term = FrontEndTerminal(calling=True, ident=TX_IDENT, ecm=True, tx_file=str(src))
    fe = Class1FrontEnd(term, "ATDT5551000", sim.now, max_duration=120)
    sim.run(fe)
    term.close()
    fe.hang_up(sim.now, data_phase_open=sim.channel.busy)
    sim.run(fe)
    assert sim.modem.finished
    assert term.finished is not None and term.finished.ok
    assert term.stats().pages_tx == 2 and fe.stats["frames_tx"] > 0


def test_no_frs_quirk_waits_75_ms_of_its_own_where_the_modem_waited(tmp_path: Path) -> None:
    """Without the quirk the command after a reception is +FRS=7 at once; with it (USR), each
    +FRS=7 and its OK are gone from the recording and the next command leaves 75 ms later."""
    chunks = merge(load(DIALOGUES / "class1_receive_ecm.json.gz"))
    frs = [i for i, c in enumerate(chunks) if c == (">", b"AT+FRS=7\r")]
    script = [c for i, c in enumerate(chunks) if not any(i in (k, k + 1) for k in frs)]
    after = [k - 2 * n for n, k in enumerate(frs)]  # where the command that followed sits in ``script``
    assert frs and all(chunks[k + 2] == script[a] for k, a in zip(frs, after))
    (tmp_path / "plain").mkdir()
    plain, _, _ = _receive(tmp_path / "plain", chunks)
    assert plain.modem.finished
    assert all(plain.modem.times[k] - plain.modem.times[k - 1] < 0.002 for k in frs)  # at once

    sim, _, term = _receive(tmp_path, script, frozenset({"no_frs"}))
    assert sim.modem.finished and term.finished is not None and term.finished.ok
    gaps = [sim.modem.times[a] - sim.modem.times[a - 1] for a in after]
    assert all(g == pytest.approx(0.075) for g in gaps), gaps  # T.30 5.3.2.2


def test_fcerror_on_the_image_carrier_asks_for_the_v21_frame(tmp_path: Path) -> None:
    chunks = load(DIALOGUES / "class1_receive_ecm.json.gz")
    at = next(i for i, (d, b) in enumerate(chunks) if d == ">" and b.startswith(b"AT+FRM="))
    script = chunks[:at + 1] + [("<", b"\r\n+FCERROR\r\n"), (">", b"AT+FRH=3\r")]
    sim = Sim(script)
    for cmd in SETUP:
        sim.command(cmd)
    sim.wait_for("RING", 2)
    term = FrontEndTerminal(calling=False, ident=RX_IDENT, ecm=True, rx_file=str(tmp_path / "rx.tif"))
    sim.fe = fe = Class1FrontEnd(term, "ATA", sim.now, max_duration=120)
    sim.until(lambda: sim.modem.finished)
    assert fe.stats["fcerror"] == 1
    assert sim.modem.dte_writes[-1][1] == b"AT+FRH=3\r"
    term.close()


# -- the rules one by one, against a fake T.30 -----------------------------------------------

class FakeTerm:
    """What the front-end uses of FrontEndTerminal; records what it is told."""

    def __init__(self) -> None:
        self.requests: deque[Any] = deque()
        self.finished: Any = None
        self.told: list[tuple[Any, ...]] = []
        self.samples = 0
        self.tx_data = b""

    def send_step_complete(self) -> None:
        self.told.append(("step",))

    def hdlc_received(self, frame: bytes, ok: bool) -> None:
        self.told.append(("frame", frame, ok))

    def hdlc_status(self, status: Signal) -> None:
        self.told.append(("hdlc", status))

    def data_status(self, status: Signal) -> None:
        self.told.append(("data", status))

    def data_received(self, data: bytes) -> None:
        self.told.append(("rx", data))

    def data_to_send(self, n: int) -> bytes:
        chunk, self.tx_data = self.tx_data[:n], self.tx_data[n:]
        return chunk

    def ecm_rx_start(self) -> None:
        self.told.append(("ecm",))

    def ecm_rx_data(self, data: bytes) -> None:
        self.told.append(("ecm rx", data))

    def advance(self, samples: int) -> None:
        self.samples += samples


class Bench:
    """A front-end whose modem is the test: commands answered by hand, the clock stepped."""

    def __init__(self, connect: str = "ATDT1", **kw: Any) -> None:
        self.term = FakeTerm()
        self.now = 0.0
        self.fe = Class1FrontEnd(self.term, connect, 0.0, **kw)  # type: ignore[arg-type]
        self.sent: list[tuple[float, Command]] = []
        self._commands: deque[SendCommand] = deque()
        self._writes: deque[WriteData] = deque()
        self._collect()

    def _collect(self) -> None:
        for c in self.fe.commands_to_send():
            self.sent.append((self.now, c))
            if isinstance(c, SendCommand):
                self._commands.append(c)
            elif isinstance(c, WriteData):
                self._writes.append(c)

    def feed(self, event: Any) -> None:
        self.fe.receive(event, self.now)
        self._collect()

    def answer(self, result: str) -> SendCommand:
        c = self._commands.popleft()
        self.feed(CommandEnded(c.tag, CommandDone(c.cmd, result, [], "", result in c.expect)))
        return c

    def took(self) -> WriteData:
        w = self._writes.popleft()
        self.feed(WriteEnded(w.tag))
        return w

    def advance(self, seconds: float) -> None:
        """Step the clock to each timer up to ``now + seconds``."""
        end = self.now + seconds
        while (t := self.fe.next_timer()) is not None and t <= end + 1e-9:
            self.now = max(self.now, t)
            self.feed(TimePassed())
        self.now = end

    def commands(self) -> list[str]:
        return [c.cmd for _, c in self.sent if isinstance(c, SendCommand)]

    def when(self, cmd: str) -> float:
        return next(t for t, c in self.sent if isinstance(c, SendCommand) and c.cmd == cmd)

    def pending(self) -> str:
        return self._commands[0].cmd if self._commands else ""


V21_RX = SetRx(Modem.V21, 300, False, True)
#: T.30 answering a frame: the frame at once, its modem type queued behind it (see _send_hdlc)
T30_ANSWERS = (SendHdlc(b"\xff\x13\x83"), SetTx(Modem.V21, 300, 0, True))
FINAL_FRAME = b"\xff\x13\x80"  # control 0x13: the final frame of a burst (DIS)
FCS = b"\x00\x00"


def _calling_heard_a_final_frame(**kw: Any) -> Bench:
    """ATD connected (V.21 carrier up), one final frame received: T.30 has the line next."""
    b = Bench("ATDT1", **kw)
    b.answer("CONNECT")
    b.term.requests.append(V21_RX)
    b.advance(TICK)  # T.30 is looked at on its tick
    b.feed(DataReceived(FINAL_FRAME + FCS))
    b.term.requests.append(SetRx(Modem.NONE, 0, False, False))  # what T.30 asks on the frame
    b.feed(DataResult("OK"))
    return b


def test_dial_answered_busy_ends_the_call() -> None:
    b = Bench("ATDT1")
    assert b.commands() == ["ATDT1"]
    b.answer("BUSY")
    assert not b.fe.running and b.fe.end_reason == "dialling: BUSY" and b.fe.stage is Stage.ENDED


def test_the_first_frame_after_atd_needs_no_frh_and_a_final_frame_drops_the_carrier() -> None:
    b = _calling_heard_a_final_frame()
    assert b.commands() == ["ATDT1"]  # ATD's CONNECT stands for the first +FRH=3's
    assert b.term.told == [("hdlc", Signal.CARRIER_UP), ("frame", FINAL_FRAME, True), ("hdlc", Signal.CARRIER_DOWN)]


def test_after_receiving_the_gap_is_frs_and_after_transmitting_fts() -> None:
    b = _calling_heard_a_final_frame()
    b.term.requests.extend(T30_ANSWERS)
    b.advance(TICK)
    assert b.pending() == "AT+FRS=7"  # silence on the line first: T.30 5.3.2.2
    b.answer("OK")
    assert b.pending() == "AT+FTH=3"
    b.answer("CONNECT")
    w = b.took()
    assert w.data == b"\xff\x13\x83" + bytes([DLE, ETX])
    b.feed(DataResult("OK"))  # final frame sent: the carrier is off
    b.term.tx_data = b"\x00" * 100
    b.term.requests.append(SetTx(Modem.V29, 9600, 0, False))  # TCF
    b.advance(TICK)
    assert b.pending() == "AT+FTS=7"  # after our own carrier: send silence
    b.answer("OK")
    assert b.pending() == "AT+FTM=96"


def test_no_frs_waits_75_ms_locally() -> None:
    b = _calling_heard_a_final_frame(quirks=frozenset({"no_frs"}))
    heard = b.now
    b.term.requests.extend(T30_ANSWERS)
    b.advance(1.0)
    assert "AT+FRS=7" not in b.commands()
    assert b.when("AT+FTH=3") - heard == pytest.approx(TICK + 0.075)  # looked at on the tick, then 75 ms


def _to_tcf(**kw: Any) -> Bench:
    b = _calling_heard_a_final_frame(**kw)
    b.term.tx_data = b"\x00" * 1200
    b.term.requests.append(SetTx(Modem.V29, 9600, 0, False))
    b.advance(TICK)
    b.answer("OK")  # +FRS=7
    assert b.pending() == "AT+FTM=96"
    b.answer("CONNECT")
    return b


@pytest.mark.parametrize("quirks,delay", [(frozenset(), 0.0), (frozenset({"needs_ftm_delay"}), 0.4)])
def test_image_data_follows_ftm_connect_at_once_or_after_400_ms(quirks: frozenset[str], delay: float) -> None:
    b = _to_tcf(quirks=quirks)
    connected = b.now
    b.advance(1.0)
    writes = [t for t, c in b.sent if isinstance(c, WriteData)]
    assert writes and writes[0] - connected == pytest.approx(delay)


def test_image_data_goes_in_chunks_each_after_the_last_was_taken() -> None:
    b = _to_tcf()
    assert len(b._writes) == 1  # one at a time: the port's flow control paces them
    first = b.took()
    assert len(first.data) == 512 and len(b._writes) == 1
    b.took()
    last = b.took()
    assert last.data.endswith(bytes([DLE, ETX])) and len(last.data) < 512 + 2
    assert ("step",) not in b.term.told[-1:]
    b.feed(DataResult("OK"))
    assert b.term.told[-1] == ("step",) and b.fe.stats["data_tx"] == 1200


def test_a_pause_is_waited_locally_for_its_milliseconds() -> None:
    b = _calling_heard_a_final_frame()
    n = len(b.term.told)
    b.term.requests.append(SetTx(Modem.PAUSE, 0, 75, False))
    b.advance(TICK)
    asked = b.now
    b.advance(0.074)
    assert b.term.told[n:] == []
    b.advance(0.002)
    assert b.term.told[n:] == [("step",)] and b.now - asked > 0.075 > b.now - asked - 0.002


def test_ecm_burst_starts_with_200_ms_of_flags() -> None:
    b = _calling_heard_a_final_frame()
    b.term.requests.extend([SetTx(Modem.V17, 14400, 0, True), SendHdlc(b"\xff\x03\x06\x00" + b"\x55" * 64)])
    b.advance(TICK)
    b.answer("OK")  # +FRS=7
    assert b.answer("CONNECT").cmd == "AT+FTM=145"
    data = b.took().data
    flags = len(data) - len(data.lstrip(b"\x7e"))
    assert flags == 14400 * 0.2 / 8  # 360 flags: 200 ms at 14400 bit/s


def test_frh_silence_gives_up_the_frame_after_10_s() -> None:
    b = Bench("ATA")
    b.answer("CONNECT")  # answering: V.21 transmission open
    b.term.requests.append(V21_RX)
    b.advance(TICK)
    # the open V.21 transmission is not closed by a receive mode; T.30 would send first
    assert b.pending() == "AT+FRH=3"
    b.answer("CONNECT")
    start = b.now
    b.feed(DataReceived(b"\xff\x03"))
    b.advance(9.99)
    assert not any(isinstance(c, EndDataPhase) for _, c in b.sent)
    b.advance(0.02)
    ends = [t for t, c in b.sent if isinstance(c, EndDataPhase)]
    assert len(ends) == 1 and ends[0] - start == pytest.approx(10.0, abs=TICK)


def test_received_data_silence_gives_up_after_30_s() -> None:
    b = Bench("ATDT1")
    b.answer("CONNECT")
    b.term.requests.append(SetRx(Modem.V29, 9600, False, False))
    b.advance(TICK)
    b.feed(DataResult("NO CARRIER"))  # the V.21 that ATD connected to ends
    assert b.pending() == "AT+FRM=96"
    b.answer("CONNECT")
    start = b.now
    b.feed(DataReceived(b"\x00" * 10))
    b.advance(29.9)
    assert not any(isinstance(c, EndDataPhase) for _, c in b.sent)
    b.advance(0.2)
    assert [t for t, c in b.sent if isinstance(c, EndDataPhase)] == [pytest.approx(start + 30.0, abs=TICK)]
    assert b.term.told[-1] == ("data", Signal.CARRIER_DOWN)


def _listening() -> Bench:
    b = Bench("ATDT1")
    b.answer("CONNECT")
    b.term.requests.append(V21_RX)
    b.advance(TICK)
    b.feed(DataReceived(b"\xff\x03\x80" + FCS))  # a non-final frame
    b.feed(DataResult("OK"))
    assert b.pending() == "AT+FRH=3"
    return b


def test_carrier_loss_mid_burst_is_carrier_down_at_once() -> None:
    b = _listening()
    b.answer("NO CARRIER")
    assert b.term.told[-1] == ("hdlc", Signal.CARRIER_DOWN)
    b.advance(TICK)
    assert b.pending() == "AT+FRH=3" and b.when("AT+FRH=3") < b.now


def test_nothing_heard_waits_50_ms_before_listening_again() -> None:
    b = Bench("ATA")
    b.answer("CONNECT")
    b.term.requests.append(V21_RX)
    b.advance(TICK)
    b.answer("NO CARRIER")
    heard = b.now
    assert b.term.told == []  # no burst began: no carrier to report
    b.advance(1.0)
    frh = [t for t, c in b.sent if isinstance(c, SendCommand) and c.cmd == "AT+FRH=3"]
    assert len(frh) == 2 and frh[1] - heard == pytest.approx(0.05)


def test_fcerror_on_frm_listens_for_v21_next() -> None:
    b = Bench("ATDT1")
    b.answer("CONNECT")
    b.term.requests.append(SetRx(Modem.V29, 9600, False, False))
    b.advance(TICK)
    b.feed(DataResult("NO CARRIER"))
    b.answer("+FCERROR")
    assert b.fe.stats["fcerror"] == 1 and b.pending() == "AT+FRH=3"
    b.answer("CONNECT")
    b.feed(DataReceived(FINAL_FRAME + FCS))
    b.feed(DataResult("OK"))
    assert ("frame", FINAL_FRAME, True) in b.term.told
    assert b.pending() == "AT+FRM=96"  # then the image carrier again


def test_a_waiting_receive_is_aborted_when_t30_wants_to_send() -> None:
    b = _listening()
    b.term.requests.append(SendHdlc(b"\xff\x13\x83"))  # T.30's timer: repeat the command
    b.advance(TICK)
    assert b.took().data == ABORT and b.fe.stats["aborts"] == 1
    b.answer("OK")
    assert b.pending() == "AT+FRS=7"


def test_an_abort_nobody_answers_is_given_up_after_5_s_and_its_late_answer_ignored() -> None:
    b = _listening()
    frh = b._commands.popleft()  # the modem will not answer it in time
    b.term.requests.append(SendHdlc(b"\xff\x13\x83"))
    b.advance(TICK)
    b.took()
    aborted = b.now
    b.advance(4.9)
    assert b.pending() == ""
    b.advance(0.2)
    assert b.pending() == "AT+FRS=7" and b.when("AT+FRS=7") - aborted == pytest.approx(5.0, abs=TICK)
    b.feed(CommandEnded(frh.tag, CommandDone(frh.cmd, "OK", [], "", True)))  # too late: ignored
    assert b.answer("OK").cmd == "AT+FRS=7" and b.pending() == "AT+FTH=3"


def test_device_gone_while_listening_ends_the_call() -> None:
    b = _listening()
    b.answer("CONNECT")
    b.feed(DeviceGone("Input/output error"))
    assert not b.fe.running and b.fe.end_reason == "modem gone (Input/output error)"


def test_fhng_while_listening_ends_the_call() -> None:
    b = _listening()
    b.answer("CONNECT")
    b.feed(Unsolicited("+FHNG: 0"))
    assert b.fe.end_reason == "modem hung up (+FHNG: 0)"


def test_an_unexpected_answer_to_fth_is_a_modem_error() -> None:
    b = _calling_heard_a_final_frame()
    b.term.requests.extend(T30_ANSWERS)
    b.advance(TICK)
    b.answer("OK")
    b.answer("ERROR")  # AT+FTH=3
    assert not b.fe.running and b.fe.end_reason == "modem error: AT+FTH=3: ERROR"
    assert isinstance(b.fe.error, ModemError)


def test_the_call_ends_at_its_maximum_duration() -> None:
    b = Bench("ATDT1", max_duration=3.0)
    b.answer("CONNECT")
    b.advance(2.9)
    assert b.fe.running
    b.advance(0.7)
    assert not b.fe.running and b.fe.end_reason == "call exceeded the maximum duration"


def test_t30_time_is_the_clock_given_in_8_khz_samples() -> None:
    b = Bench("ATDT1")
    b.answer("CONNECT")
    b.advance(1.0)
    assert b.term.samples == pytest.approx(8000, abs=160)
    b.now += 3.0  # a late wake-up still gives T.30 all the time that passed
    b.feed(TimePassed())
    assert b.term.samples == pytest.approx(32000, abs=160)


def test_t30_finishing_ends_the_call_and_a_hang_up_aborts_an_open_data_phase() -> None:
    b = _listening()
    b.term.finished = object()
    b.advance(TICK)
    assert b.took().data == ABORT  # the receive command waiting for carrier
    b.answer("OK")
    assert not b.fe.running and b.fe.end_reason == "fax session ended" and b.fe.stage is Stage.ENDED
    b.fe.hang_up(b.now, data_phase_open=True)
    b._collect()
    start = b.now
    assert b.took().data == ABORT
    b.advance(0.19)
    assert b.pending() == ""
    b.advance(0.02)
    kinds = [type(c) for t, c in b.sent if t > start]
    assert kinds == [EndDataPhase, SendCommand] and b.pending() == "ATH0"
    assert b.sent[-1][0] - start == pytest.approx(0.2)
    b.answer("NO CARRIER")
    assert not b.fe.running and b.fe.stage is Stage.DONE


def test_hang_up_without_a_data_phase_is_ath0_at_once_and_a_failure_is_no_error() -> None:
    b = Bench("ATDT1")
    b.answer("NO DIALTONE")
    b.fe.hang_up(b.now, data_phase_open=False)
    b._collect()
    c = b._commands.popleft()
    assert c.cmd == "ATH0"
    b.feed(CommandEnded(c.tag, error=ModemError("ATH0", "timeout after 5 s")))
    assert b.fe.stage is Stage.DONE


def test_hanging_up_during_the_call_is_our_bug() -> None:
    b = Bench("ATDT1")
    with pytest.raises(LocalProtocolError):
        b.fe.hang_up(0.0, data_phase_open=False)
