"""A Class 2 / 2.0 receive (appliance/modem/class2.py) against a modem that says anything.

A synchronous copy of Class2Receiver's loop drives a real Class2Session (which writes a real
TIFF through spandsp) over a real AtChannel.  Input: a flags byte (bit 0: Class 2.0, bit 1: ECM,
bit 2: the bit-order quirk), then records of a length byte and the modem's bytes; each time the
driver waits, the modem sends the next record; with none left, time passes to the next timer.
Contract: nothing raises, the call always ends (a command that waits with no timer and no input
is a stall), and the facts recorded for the call are plain JSON with a sensible result.
"""
from __future__ import annotations

import json

from appliance.modem.at import AtChannel, CommandDone, CommandTimedOut, DeviceGone, Event, Garbage, Unsolicited
from appliance.modem.class2 import Class2Receiver, Class2Session
from appliance.modem.class2_codes import ALL_RESULTS, CAN, DC2
from appliance.modem.driver import ModemCall
from tests.fuzz.targets import scratch

MAX_LEN = 4096
DICTS = ("modem",)
_DIR = scratch("fuzz-class2-")


class _Modem:
    """The channel plus the records still to come from the fuzzed modem."""

    def __init__(self, records: list[bytes]) -> None:
        self.ch = AtChannel()
        self.records = records
        self.now = 0.0
        self.pending: list[Event] = []

    def step(self) -> bool:
        """Let the modem speak once, or time pass to the next timer; False when neither can happen."""
        if self.records:
            self.ch.receive(self.records.pop(0), self.now)
        else:
            timer = self.ch.get_timer()
            if timer is None:
                return False
            self.now = max(self.now, timer)
            self.ch.handle_timer(self.now)
        self.ch.data_to_send()
        while (ev := self.ch.next_event()) is not None:
            self.pending.append(ev)
        return True


def _command(modem: _Modem, session: Class2Session, text: str, timeout: float) -> Event:
    modem.ch.send(text, timeout, expect=ALL_RESULTS, now=modem.now)
    while True:
        for i, ev in enumerate(modem.pending):
            if isinstance(ev, (CommandDone, CommandTimedOut, DeviceGone)):
                del modem.pending[i]
                return ev
        for ev in [e for e in modem.pending if isinstance(e, (Unsolicited, Garbage))]:
            modem.pending.remove(ev)
            Class2Receiver._dispatch(ev, session)
        assert modem.step(), f"stalled: {text} waits for the modem with no timer running"


def _page(modem: _Modem, session: Class2Session) -> None:
    modem.ch.send_data(DC2, modem.now)
    while not session.done:
        while modem.pending:
            if Class2Receiver._dispatch(modem.pending.pop(0), session):
                return
        if not modem.records:
            session.data_timeout(Class2Receiver.data_timeout)
            break
        modem.step()
    modem.ch.end_data_phase(modem.now)
    modem.ch.send_data(CAN, modem.now)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    flags, records, i = data[0], [], 1
    while i < len(data):
        records.append(data[i + 1:i + 1 + data[i]])
        i += 1 + data[i]
    call = ModemCall(device="/dev/fuzz", line="modem:fuzz", tiff_path=_DIR / "rx.tif", ident="+1 555 0100",
                     ecm=bool(flags & 2), quirks=frozenset({"class2_bit_order_reversed"} if flags & 4 else ()))
    session = Class2Session(call, "2.0" if flags & 1 else "2")
    modem = _Modem(records)
    session.start()
    try:
        while not session.done:
            if modem.now >= call.max_call_duration:
                session.call_timeout()
                break
            cmd = session.next_command()
            if cmd is None:
                session.stuck()
                break
            ev = _command(modem, session, cmd.text, cmd.timeout)
            if isinstance(ev, CommandTimedOut):
                session.command_failed(cmd, f"timeout after {cmd.timeout:g} s")
            elif isinstance(ev, DeviceGone):
                session.device_gone(ev.reason)
            elif not ev.ok:
                session.command_failed(cmd, ev.result)
            else:
                session.command_done(cmd, ev.result, list(ev.lines))
                if session.in_data:
                    _page(modem, session)
                elif session.unwanted_data_phase(ev.result):
                    modem.ch.end_data_phase(modem.now)
                    while modem.pending:
                        Class2Receiver.abandoned(modem.pending.pop(0), session)
    finally:
        session.close()
    if session.off_hook and not session.device_lost:
        modem.ch.end_data_phase(modem.now)
        _command(modem, session, "ATH", 5.0)  # the receiver's hang-up must go out too
    facts = session.facts(modem.now)
    json.dumps(facts.columns())
    assert isinstance(facts.result_code, int) and isinstance(facts.result_text, str)
    assert facts.pages == len(session.pages)
    assert not session.complete or (session.hangup == "00" and facts.pages > 0)
