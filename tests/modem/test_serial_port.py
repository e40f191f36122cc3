"""ModemPort on real pseudo-terminals (the test plays the modem on the master) and on loop://."""
from __future__ import annotations

import asyncio
import os
import pty
import tty

import pytest

from appliance.modem.at import DataEnd, DataReceived, DataResult, DeviceGone, Unsolicited, dle_stuff
from appliance.modem.serial_port import ModemError, ModemPort
from tests.budgets import LOADED


class FakeModem:
    """The master side of a pty: answers each command line from a script."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        tty.setraw(self.master)
        self.path = os.ttyname(slave)
        os.close(slave)  # pyserial opens its own; a hang-up must not be masked by ours
        os.set_blocking(self.master, False)
        self.answers = answers
        self.received = bytearray()
        self.commands: list[str] = []
        self._buf = bytearray()
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        self.received += data
        self._buf += data
        while b"\r" in self._buf:
            line, _, rest = bytes(self._buf).partition(b"\r")
            self._buf = bytearray(rest)
            cmd = line.decode("ascii", "replace")
            if cmd.upper().startswith("AT"):
                self.commands.append(cmd)
                if cmd in self.answers:
                    self.write(self.answers[cmd])

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def hang_up(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


def run(coro, timeout: float = LOADED):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def next_event(port: ModemPort, timeout: float = LOADED):
    return await asyncio.wait_for(port.events.get(), timeout)


def test_command_answer_over_a_pty():
    async def main():
        modem = FakeModem({"AT+FCLASS=?": b"AT+FCLASS=?\r\r\n0,1,1.0\r\n\r\nOK\r\n"})
        port = await ModemPort.open(modem.path, flow="none")
        done = await port.command("AT+FCLASS=?", timeout=LOADED)
        assert (done.result, done.lines) == ("OK", ["0,1,1.0"])
        assert "> AT+FCLASS=?" in port.history() and "< 0,1,1.0" in port.history()
        port.close()
        port.close()  # idempotent
        modem.hang_up()
    run(main())


def test_error_and_timeout_raise_modem_error_naming_command_and_result():
    async def main():
        modem = FakeModem({"AT+FCLASS=2": b"\r\nERROR\r\n"})
        port = await ModemPort.open(modem.path, flow="none")
        with pytest.raises(ModemError, match=r"AT\+FCLASS=2: ERROR") as err:
            await port.command("AT+FCLASS=2")
        assert err.value.result == "ERROR"
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(ModemError, match=r"AT\+FRH=3: timeout after 0.3 s"):
            await port.command("AT+FRH=3", timeout=0.3, expect=("CONNECT",))
        assert 0.25 <= asyncio.get_running_loop().time() - t0 < 2
        dump = port.history()  # what a failed call writes to the log
        assert "> AT+FCLASS=2" in dump and "< ERROR" in dump and "timeout after 0.3 s: AT+FRH=3" in dump
        modem.answers["AT"] = b"\r\nOK\r\n"
        assert (await port.command("AT")).result == "OK"  # the port still works after both
        port.close()
        modem.hang_up()
    run(main())


def test_concurrent_commands_go_out_one_at_a_time_in_fifo_order():
    async def main():
        cmds = [f"ATS{n}?" for n in range(5)]
        modem = FakeModem({c: f"\r\n{n:03d}\r\n\r\nOK\r\n".encode() for n, c in enumerate(cmds)})
        port = await ModemPort.open(modem.path, flow="none")
        results = await asyncio.gather(*(port.command(c) for c in cmds))
        assert [r.lines for r in results] == [[f"{n:03d}"] for n in range(5)]
        assert modem.commands == cmds
        port.close()
        modem.hang_up()
    run(main())


def test_unsolicited_ring_and_a_received_data_block():
    async def main():
        block = b"\xff\x03\x10\x10\x13"
        modem = FakeModem({"AT+FRH=3": b"\r\nCONNECT\r\n" + dle_stuff(block) + b"\x10\x03\r\nOK\r\n"})
        port = await ModemPort.open(modem.path, flow="none")
        modem.write(b"\r\nRING\r\n")
        assert await next_event(port) == Unsolicited("RING")
        done = await port.command("AT+FRH=3", expect=("CONNECT",))
        assert done.result == "CONNECT"
        data = b""
        while not isinstance(event := await next_event(port), DataEnd):
            assert isinstance(event, DataReceived)
            data += event.data
        assert data == block
        assert await next_event(port) == DataResult("OK", [])
        port.close()
        modem.hang_up()
    run(main())


def test_write_data_reaches_the_modem_in_order():
    async def main():
        modem = FakeModem({"AT+FTH=3": b"\r\nCONNECT\r\n"})
        port = await ModemPort.open(modem.path, flow="none")
        await port.command("AT+FTH=3", expect=("CONNECT",))
        chunks = [bytes([n]) * 3000 for n in range(1, 6)]
        await asyncio.gather(*(port.write_data(c) for c in chunks))
        frame = dle_stuff(b"".join(chunks)) + b"\x10\x03"
        await port.write_data(frame[-2:])
        deadline = asyncio.get_running_loop().time() + LOADED
        while not modem.received.endswith(b"\x10\x03") and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert modem.received == b"AT+FTH=3\r" + b"".join(chunks) + b"\x10\x03"
        port.close()
        modem.hang_up()
    run(main())


def test_device_disappearing_is_an_event_not_an_exception():
    async def main():
        modem = FakeModem({})
        port = await ModemPort.open(modem.path, flow="none")
        pending = asyncio.ensure_future(port.command("AT+FRH=3", timeout=LOADED, expect=("CONNECT",)))
        await asyncio.sleep(0.05)
        modem.hang_up()
        event = await next_event(port)
        assert isinstance(event, DeviceGone) and event.pending == ["AT+FRH=3"]
        with pytest.raises(ModemError, match="device gone"):
            await pending
        assert not port.is_open
        with pytest.raises(ModemError, match="closed"):
            await port.command("AT")
        with pytest.raises(ModemError, match="closed"):
            await port.write_data(b"\x00")
        assert "device gone" in port.history()
    run(main())


def test_flow_control_from_config():
    async def main():
        modem = FakeModem({})
        for flow, xonxoff, rtscts in [("xonxoff", True, False), ("rtscts", False, True), ("none", False, False)]:
            port = await ModemPort.open(modem.path, flow=flow)
            assert (port.ser.xonxoff, port.ser.rtscts) == (xonxoff, rtscts)
            port.close()
        with pytest.raises(ValueError, match="flow control"):
            await ModemPort.open(modem.path, flow="dtrdsr")
        modem.hang_up()
    run(main())


def test_loop_url_without_a_file_descriptor():
    async def main():
        port = await ModemPort.open("loop://", flow="none")
        await port.write_data(b"\r\nRING\r\n")
        assert await next_event(port) == Unsolicited("RING")
        with pytest.raises(ModemError, match="timeout"):  # the echo comes back, no OK does
            await port.command("AT", timeout=0.2)
        assert port.channel.stats["echo"] == 1
        port.close()
    run(main())
