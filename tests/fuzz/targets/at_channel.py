"""The AT command channel (appliance/modem/at.py AtChannel): whatever a modem may send back.

Input: records, each an op byte and its operand.  op & 3 == 0: send a command (the operand
indexes COMMANDS; with bit 7 set, the next byte is a length and the command is that much
printable text); 1: the modem sends a length byte's worth of bytes; 2: time passes (operand x
10 ms) and due timers run; 3: the driver gives up on a data phase (operand even) or writes a
data block (odd).  Contract: nothing raises; lines in events are printable ASCII of at most
MAX_LINE characters; data events never carry more bytes than the modem sent; the line buffer and
the traffic history stay bounded; and once the data phase is abandoned and every timeout has
passed, each command sent has ended exactly once (a final result or a timeout): nothing stalls.
"""
from __future__ import annotations

from appliance.modem.at import (MAX_LINE, AtChannel, CommandDone, CommandTimedOut, DataEnd, DataReceived,
                                DataResult, DeviceGone, DleCommand, Garbage, Unsolicited)

MAX_LEN = 4096
DICTS = ("modem", "_text")
COMMANDS = (
    "ATZ", "ATE0V1Q0", "ATE0V0Q0", "ATV1", "ATI", "ATI3", "AT+FCLASS=?", "AT+FCLASS=1", "AT+FCLASS=1.0",
    "AT+FCLASS=2", "AT+FCLASS=2.0", "AT+FTM=?", "AT+FRM=?", "AT+FTH=?", "AT+FRH=?", "AT+FTH=3", "AT+FRH=3",
    "AT+FTM=96", "AT+FRM=96", "AT+FTS=8", "AT+FRS=7", "ATA", "ATH0", "AT+FDR", "AT+FCC?", "AT+FCC=?",
    "AT+FMI?", "AT+FMM?", "AT+FMR?", "AT+FPS=1", "AT+VCID=1", "AT&F", "AT",
)
_EVENTS = (CommandDone, CommandTimedOut, Unsolicited, DataReceived, DataEnd, DleCommand, DataResult, Garbage,
           DeviceGone)


def _line_ok(line: str) -> bool:
    return len(line) <= MAX_LINE and all(0x20 <= ord(c) <= 0x7E or c == "\t" for c in line)


def _drain(ch: AtChannel, tally: dict[str, int]) -> None:
    while (ev := ch.next_event()) is not None:
        assert isinstance(ev, _EVENTS), ev
        if isinstance(ev, (CommandDone, CommandTimedOut)):
            tally["ended"] += 1
            assert all(_line_ok(line) for line in ev.lines), ev
        elif isinstance(ev, DataResult):
            assert all(_line_ok(line) for line in ev.lines), ev
        elif isinstance(ev, Unsolicited):
            assert _line_ok(ev.line), ev
        elif isinstance(ev, DataReceived):
            tally["data"] += len(ev.data)
        elif isinstance(ev, DeviceGone):
            tally["ended"] += len(ev.pending)
    assert len(ch._buf) <= MAX_LINE and len(ch.history.entries()) <= 200
    assert tally["data"] <= tally["fed"]


def TestOneInput(data: bytes) -> None:
    ch = AtChannel()
    tally = {"sent": 0, "ended": 0, "data": 0, "fed": 0}
    now, i = 0.0, 0
    while i + 1 < len(data):
        op, arg = data[i], data[i + 1]
        i += 2
        kind = op & 3
        if kind == 0:
            if op & 0x80:
                text = bytes(b for b in data[i:i + arg % 64] if 0x20 <= b <= 0x7E).decode("ascii")
                i += arg % 64
                cmd = text or "AT"
            else:
                cmd = COMMANDS[arg % len(COMMANDS)]
            ch.send(cmd, 1.0 + (op >> 2 & 7), now=now)
            tally["sent"] += 1
        elif kind == 1:
            chunk = data[i:i + arg]
            i += arg
            ch.receive(chunk, now)
            tally["fed"] += len(chunk)
        elif kind == 2:
            now += arg * 0.01
            timer = ch.get_timer()
            if timer is not None and timer <= now:
                ch.handle_timer(now)
        elif arg & 1:
            ch.send_data(b"\x10\x10\xff\x10\x03", now)
        else:
            ch.end_data_phase(now)
        ch.data_to_send()
        _drain(ch, tally)
    ch.end_data_phase(now)
    for _ in range(tally["sent"] + 2):
        timer = ch.get_timer()
        if timer is None:
            break
        now = max(now, timer)
        ch.handle_timer(now)
        _drain(ch, tally)
        ch.end_data_phase(now)
    _drain(ch, tally)
    assert tally["ended"] == tally["sent"], tally
