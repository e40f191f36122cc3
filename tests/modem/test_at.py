"""AtChannel rules one by one, with a fixed clock: results, echo, data phases, timers, junk."""
from __future__ import annotations

import random

import pytest

from appliance.modem.at import (
    AtChannel, ChannelClosed, CommandDone, CommandTimedOut, DataEnd, DataReceived, DataResult,
    DeviceGone, DleCommand, Garbage, Unsolicited, caller_id_item, dle_stuff,
)

from .dialogue import drain


def chan(*cmds: str, now: float = 0.0, timeout: float = 3.0) -> AtChannel:
    c = AtChannel()
    for cmd in cmds:
        c.send(cmd, timeout, now=now)
    return c


def numeric_chan() -> AtChannel:
    """A channel after ATE0V0 was answered "0<CR>"."""
    c = chan("ATE0V0")
    c.receive(b"0\r", 0)  # not a query: a CR-only digit is a result at once
    assert drain(c) == [CommandDone("ATE0V0", "OK", [])] and c.numeric
    return c


def feed_bytes(c: AtChannel, data: bytes, now: float = 0.0) -> None:
    for i in range(len(data)):
        c.receive(data[i:i + 1], now)


# -- verbose and numeric results -------------------------------------------------------------

@pytest.mark.parametrize("wire", [b"\r\nOK\r\n", b"\rOK\r", b"\nOK\n", b"\n\rOK\n\r", b"OK\r\n", b"\r\n\r\nOK\r\n"])
def test_line_ending_variants(wire):
    c = chan("AT")
    feed_bytes(c, wire)
    assert drain(c) == [CommandDone("AT", "OK", [])]


@pytest.mark.parametrize("line,result,detail", [
    ("CONNECT 14400", "CONNECT", "14400"), ("NO DIAL TONE", "NO DIALTONE", ""), ("BUSY", "BUSY", ""),
    ("NO ANSWER", "NO ANSWER", ""), ("+FCERROR", "+FCERROR", ""), ("+CME ERROR: 4", "+CME ERROR: 4", "4"),
    ("no carrier", "NO CARRIER", ""),
])
def test_verbose_final_results(line, result, detail):
    c = chan("ATD5550100")
    c.receive(f"\r\n{line}\r\n".encode(), 0)
    (event,) = [e for e in drain(c) if isinstance(e, CommandDone)]
    assert (event.result, event.detail, event.ok) == (result, detail, False)


def test_expect_decides_ok():
    c = AtChannel()
    c.send("AT+FRH=3", 3, expect=("CONNECT",), now=0)
    c.receive(b"\r\nCONNECT\r\n", 0)
    assert drain(c)[0].ok


def test_numeric_results_after_atv0():
    c = numeric_chan()
    for cmd, wire, result in [("AT+FCLASS=3", b"4\r", "ERROR"), ("ATD1", b"7\r", "BUSY"),
                              ("ATD2", b"6\r", "NO DIALTONE"), ("ATD3", b"8\r", "NO ANSWER"),
                              ("AT+FRH=3", b"3\r", "NO CARRIER"), ("AT+FRM=96", b"+F4\r", "+FCERROR")]:
        c.send(cmd, 3, now=1)
        c.receive(wire, 1)
        c.handle_timer(1.06)  # no LF came: a result
        events = drain(c)
        assert isinstance(events[0], CommandDone) and events[0].result == result, events


def test_numeric_digit_information_text_is_not_a_result():
    """AT+FTH=? answers "3": with CR LF it is text, the CR-only "0" after it is OK."""
    c = numeric_chan()
    c.send("AT+FTH=?", 3, now=0)
    feed_bytes(c, b"3\r\n0\r", 0.1)
    assert drain(c) == []  # "0" waits for a possible LF
    assert c.get_timer() == pytest.approx(0.15)
    c.handle_timer(0.2)
    assert drain(c) == [CommandDone("AT+FTH=?", "OK", ["3"])]


def test_held_query_answer_settles_at_once_when_more_bytes_follow():
    c = numeric_chan()
    c.send("ATS0?", 3, now=1)
    c.send("ATD1", 3, now=1)
    c.receive(b"0\r", 1)  # ATS0? may answer "0" as text: wait
    assert drain(c) == []
    c.receive(b"7\r", 1)  # a byte other than LF: the "0" was OK; ATD1 is no query: 7 is BUSY at once
    assert drain(c) == [CommandDone("ATS0?", "OK", []), CommandDone("ATD1", "BUSY", [], ok=False)]


def test_numeric_ring_and_connect_into_data_mode():
    c = numeric_chan()
    c.receive(b"2\r", 1)
    c.handle_timer(2)
    assert drain(c) == [Unsolicited("RING")]
    c.send("AT+FRH=3", 3, expect=("CONNECT",), now=2)
    c.receive(b"1\r\n\xff\x13\x10\x03", 2)  # data that starts with an LF
    assert drain(c) == [CommandDone("AT+FRH=3", "CONNECT", []), DataReceived(b"\n\xff\x13"), DataEnd()]


def test_atz_and_atv1_return_to_verbose():
    c = numeric_chan()
    c.send("ATZ", 3, now=0)
    assert not c.numeric
    c.send("AT&V", 3, now=0)  # &V is "show profile", not V0
    assert not c.numeric


# -- echo --------------------------------------------------------------------------------------

def test_echo_is_dropped_and_counted():
    c = chan("AT+FCLASS=?")
    feed_bytes(c, b"AT+FCLASS=?\r\r\n0,1,1.0\r\n\r\nOK\r\n")
    assert drain(c) == [CommandDone("AT+FCLASS=?", "OK", ["0,1,1.0"])]
    assert c.stats["echo"] == 1


def test_ate0_leftover_echo_then_quiet():
    c = chan("ATE0", "ATI")
    c.receive(b"ATE0\r\r\nOK\r\n", 0)
    c.receive(b"\r\nspandsp\r\n\r\nOK\r\n", 0)
    assert drain(c) == [CommandDone("ATE0", "OK", []), CommandDone("ATI", "OK", ["spandsp"])]


def test_late_echo_after_timeout_is_not_unsolicited():
    c = chan("AT")
    c.handle_timer(3)
    c.receive(b"AT\r", 4)
    assert drain(c) == [CommandTimedOut("AT", [])]


# -- unsolicited -------------------------------------------------------------------------------

def test_ring_and_caller_id_during_a_command_stay_out_of_its_lines():
    c = chan("AT+FCLASS?")
    c.receive(b"\r\nRING\r\n\r\nNMBR = 5550100\r\n\r\n1\r\n\r\nOK\r\n", 0)
    assert drain(c) == [Unsolicited("RING"), Unsolicited("NMBR = 5550100"),
                        CommandDone("AT+FCLASS?", "OK", ["1"])]


def test_class2_reports_with_and_without_a_command():
    c = chan("AT+FDR")
    c.receive(b"\r\n+FHNG:0\r\n\r\nOK\r\n\r\n+FHNG:2\r\n\r\nNO CARRIER\r\n", 0)
    assert drain(c) == [CommandDone("AT+FDR", "OK", ["+FHNG:0"]), Unsolicited("+FHNG:2"),
                        Unsolicited("NO CARRIER")]
    assert c.stats["unsolicited"] == 2


# -- FIFO and timeouts -------------------------------------------------------------------------

def test_commands_leave_in_fifo_order_one_at_a_time():
    cmds = [f"ATS{n}?" for n in range(6)]
    c = chan(*cmds)
    written = []
    for n in range(6):
        written.append(c.data_to_send())
        assert c.data_to_send() == b""  # nothing more until the answer
        c.receive(f"\r\n{n:03d}\r\nOK\r\n".encode(), n)
    assert written == [f"{cmd}\r".encode() for cmd in cmds]
    assert [(e.cmd, e.lines) for e in drain(c)] == [(cmd, [f"{n:03d}"]) for n, cmd in enumerate(cmds)]
    assert not c.busy


def test_timeout_with_a_fake_clock_then_the_next_command_runs():
    c = AtChannel()
    c.send("AT+FRH=3", 3.0, now=10.0)
    c.send("AT", 1.0, now=10.5)
    assert c.get_timer() == 13.0
    c.receive(b"\r\npartial\r\n", 12.0)
    c.handle_timer(12.999)
    assert drain(c) == [] and c.data_to_send() == b"AT+FRH=3\r"
    c.handle_timer(13.0)
    assert drain(c) == [CommandTimedOut("AT+FRH=3", ["partial"])]
    assert c.data_to_send() == b"AT\r" and c.get_timer() == 14.0
    c.receive(b"\r\nOK\r\n", 13.5)
    assert drain(c) == [CommandDone("AT", "OK", [])] and c.get_timer() is None


# -- data phases and DLE -----------------------------------------------------------------------

BLOCK = bytes([0x00, 0x10, 0x10, 0xFF, 0x10, 0x41, 0x10]) + bytes(range(0x0E, 0x14)) + b"\r\nOK\r\n"


def test_received_block_split_at_every_boundary():
    wire = b"\r\nCONNECT\r\n" + dle_stuff(BLOCK) + b"\x10\x03" + b"\r\nOK\r\n"
    for split in range(len(wire) + 1):
        c = AtChannel()
        c.send("AT+FRM=96", 3, expect=("CONNECT",), now=0)
        c.receive(wire[:split], 0)
        c.receive(wire[split:], 0)
        events = drain(c)
        data = b"".join(e.data for e in events if isinstance(e, DataReceived))
        assert data == BLOCK, split
        tail = [e for e in events if not isinstance(e, DataReceived)]
        assert tail == [CommandDone("AT+FRM=96", "CONNECT", []), DataEnd(), DataResult("OK", [])], split
        assert not c.in_data_mode and not c.busy


def test_dle_sub_and_other_dle_pairs():
    c = AtChannel()
    c.send("AT+FDR", 3, expect=("CONNECT",), now=0)
    c.receive(b"\r\nCONNECT\r\n" + b"a\x10\x1ab\x10!c\x10\x10\x10\x03", 0)
    assert drain(c)[1:] == [DataReceived(b"a\x10\x10b"), DleCommand(0x21), DataReceived(b"c\x10"), DataEnd()]


def test_queued_command_waits_for_the_end_of_the_data_phase():
    c = AtChannel()
    c.send("AT+FRH=3", 3, expect=("CONNECT",), now=0)
    c.send("AT+FRH=3", 3, expect=("CONNECT",), now=0)
    assert c.data_to_send() == b"AT+FRH=3\r"
    c.receive(b"\r\nCONNECT\r\n\xff\x03\x10\x03", 0)
    assert c.data_to_send() == b""  # a command now would abort the carrier
    c.receive(b"\r\n+FPTS:1\r\n\r\nERROR\r\n", 0.5)  # bad FCS
    assert drain(c)[-1] == DataResult("ERROR", ["+FPTS:1"])
    assert c.data_to_send() == b"AT+FRH=3\r"


def test_transmit_phase_stays_in_line_mode_and_continues_on_connect():
    c = AtChannel()
    c.send("AT+FTH=3", 3, expect=("CONNECT",), now=0)
    c.send("AT+FRH=3", 3, expect=("CONNECT",), now=0)
    c.data_to_send()
    c.receive(b"\r\nCONNECT\r\n", 0)
    assert not c.in_data_mode
    c.send_data(dle_stuff(b"\xff\x03\x10") + b"\x10\x03", now=0.1)
    assert c.data_to_send() == b"\xff\x03\x10\x10\x10\x03"
    c.receive(b"\r\nCONNECT\r\n", 0.5)  # ready for the next frame
    assert c.data_to_send() == b""
    c.receive(b"\r\nOK\r\n", 1.0)  # final frame sent, carrier off
    assert drain(c)[1:] == [DataResult("CONNECT", []), DataResult("OK", [])]
    assert c.data_to_send() == b"AT+FRH=3\r"


def test_end_data_phase_releases_the_queue():
    c = AtChannel()
    c.send("AT+FRM=96", 3, expect=("CONNECT",), now=0)
    c.send("AT", 3, now=0)
    c.data_to_send()
    c.receive(b"\r\nCONNECT\r\n\x00\x00", 0)
    c.end_data_phase(now=5)
    assert c.data_to_send() == b"AT\r" and not c.in_data_mode and c.get_timer() == 8


def test_a_command_queued_behind_a_phase_that_never_ends_times_out():
    """Found by fuzzing (class2_session): after CONNECT the modem goes quiet mid-page; the next
    command waited for the phase's end with no timer at all, so the line hung for ever."""
    c = AtChannel()
    c.send("AT+FDR", 60, expect=("CONNECT",), now=0)
    c.data_to_send()
    c.receive(b"\r\nCONNECT\r\n\x00\x01", 1.0)
    c.send("AT+FDR", 60, expect=("CONNECT",), now=2.0)
    assert c.data_to_send() == b"" and c.get_timer() == 62.0
    c.handle_timer(61.999)
    assert [e for e in drain(c) if not isinstance(e, (CommandDone, DataReceived))] == []
    c.handle_timer(62.0)
    assert drain(c) == [CommandTimedOut("AT+FDR", [])]
    assert c.data_to_send() == b"" and c.get_timer() is None  # never written: it would abort the carrier
    assert "not sent: the data phase never ended" in c.history_text()


def test_the_phase_wait_passes_to_the_next_queued_command_and_ends_with_the_phase():
    c = AtChannel()
    c.send("AT+FRM=96", 3, expect=("CONNECT",), now=0)
    c.data_to_send()
    c.receive(b"\r\nCONNECT\r\n", 0)
    c.send("AT", 1, now=0.5)  # waits until 1.5
    c.send("ATH", 5, now=0.6)
    assert c.get_timer() == 1.5
    c.handle_timer(1.5)
    assert drain(c)[-1] == CommandTimedOut("AT", []) and c.get_timer() == 6.5
    c.receive(b"\x10\x03\r\nOK\r\n", 2.0)  # the phase ends in time: ATH goes out with its own timeout
    assert c.data_to_send() == b"ATH\r" and c.get_timer() == 7.0


# -- junk --------------------------------------------------------------------------------------

def test_garbage_and_overlong_lines_are_reported_not_raised():
    c = chan("AT")
    c.receive(b"\r\n\xff\xfe\x80noise\r\n" + b"x" * 600 + b"\r\n\x11\x13\x00OK\r\n", 0)
    events = drain(c)
    assert [type(e) for e in events] == [Garbage, Garbage, CommandDone]
    assert events[0].reason == "not printable ASCII"
    assert "512" in events[1].reason and len(events[1].data) <= 64
    assert c.stats == {"garbage": 2, "overlong": 1, "echo": 0, "flow": 2, "unsolicited": 0}


def test_a_line_of_exactly_512_bytes_is_kept():
    c = chan("ATI")
    c.receive(b"\r\n" + b"y" * 512 + b"\r\nOK\r\n", 0)
    assert drain(c) == [CommandDone("ATI", "OK", ["y" * 512])]


@pytest.mark.parametrize("seed", range(30))
def test_random_bytes_never_raise(seed):
    rng = random.Random(seed)
    c = AtChannel()
    now = 0.0
    for _ in range(40):
        if rng.random() < 0.2:
            c.send(rng.choice(["AT", "AT+FRH=3", "ATV0", "ATV1", "AT+FTH=3"]), 1, now=now)
        c.receive(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))), now)
        now += rng.random()
        c.handle_timer(now)
        c.data_to_send()
        drain(c)
    assert len(c.history.entries()) <= 200


# -- history and the device going away ------------------------------------------------------

def test_history_keeps_the_last_n_entries_in_both_directions():
    c = AtChannel(history_size=5)
    for n in range(4):
        c.send(f"ATS{n}?", 1, now=float(n))
        c.receive(b"\r\nOK\r\n", n + 0.25)
    c.send("AT+FRH=3", 1, expect=("CONNECT",), now=10)
    c.receive(b"\r\nCONNECT\r\n\x01\x02\x10\x03", 10.5)
    c.handle_timer(20)
    text = c.history_text()
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[0].split() == ["3.250", "<", "OK"]
    assert lines[1].split() == ["10.000", ">", "AT+FRH=3"]
    assert "[2 bytes] 01 02" in text and "<DLE><ETX>" in text


def test_history_records_timeouts_and_garbage():
    c = chan("AT", timeout=2)
    c.receive(b"\xfe\r", 1)
    c.handle_timer(2)
    text = c.history_text()
    assert "garbage" in text and "timeout after 2 s: AT" in text


def test_device_gone_fails_pending_and_closes():
    c = chan("AT", "ATI")
    c.device_gone("Input/output error", now=1)
    c.device_gone("again", now=2)
    assert drain(c) == [DeviceGone("Input/output error", ["AT", "ATI"])]
    with pytest.raises(ChannelClosed):
        c.send("AT", 1, now=2)
    c.receive(b"\r\nOK\r\n", 3)  # late bytes are ignored
    assert drain(c) == []


def test_caller_id_items_are_one_rule_for_the_channel_and_the_line() -> None:
    assert caller_id_item("NMBR = 5550100") == ("NMBR", "5550100")
    assert caller_id_item("  ddn_nmbr=1000  ") == ("DDN_NMBR", "1000")
    assert caller_id_item('NAME = "ACME FAX"') == ("NAME", '"ACME FAX"')  # the line cleans quotes
    assert caller_id_item("NMBRX = 1") is None and caller_id_item("RING") is None
    c = AtChannel()
    c.send("AT+VCID=1", 3, now=0)
    c.receive(b"\r\nNDID=200\r\nNUMBER=1\r\nOK\r\n", 0)
    # caller ID is unsolicited even while a command runs; other text is the command's
    assert drain(c) == [Unsolicited("NDID=200"), CommandDone("AT+VCID=1", "OK", ["NUMBER=1"])]
